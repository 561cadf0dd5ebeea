"""Is an answer supported by the passages? The evidence behind declining, citing and stopping.

A small model answers from memory when the passages say nothing ("What is the capital of
France?" → "Paris"), cites rarely, and repeats itself. The gateway does not trust it to do any
of that right; it checks, from the words themselves:

- **Question support**, before the LLM runs: how many of the question's content words the
  retrieved passages contain. A question the documents do not touch is declined at once, which
  is also the fastest answer there is.
- **Sentence support**, for each sentence the LLM produces, before it is shown or spoken: the
  share of its content words found in the passages (or in the question, which it may restate);
  the first sentence must also share a word with the question, if it has three or more.
  An unsupported first sentence turns the answer into a decline; a later one ends the answer.
- **Citations**: each sentence is given the `[n]` of the passage that supports it best; a
  citation the model made up (a passage that does not exist, or one that shares nothing with
  the sentence) is replaced.
- **Repetition**: a sentence that says again what an earlier one said ends the answer.

Words are compared after a light normalisation (lower case, identifiers split into their parts,
a crude suffix strip), so `--amend`, "amend" and "amending" match, and `core.autocrlf` matches
"core autocrlf". Thresholds are module constants, tuned on the tuning half of `make eval-answers`
(docs/quality.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

# Of the question's content words, the share the passages must hold for the LLM to be asked: more
# than a third. On the tuning half of the eval, 6 of 12 unanswerable questions scored a third or
# less and 1 of 48 answerable ones (docs/quality.md); spoken questions lose words to the ASR
# ("locals tack", "it slugs"), so the rest is left to the sentence check.
MIN_QUESTION_SUPPORT = 0.34
# Of a sentence's content words, the share that must come from the passages or the question.
MIN_SENTENCE_SUPPORT = 0.6
# A question with this many content words says what it is about: the answer's first sentence must
# share one of them ("How do I start it?" may be answered "Run make up.", in other words).
MIN_TOPIC_TERMS = 3
# Two sentences sharing this share of their content words say the same thing.
REPEAT_OVERLAP = 0.8

_WORD = re.compile(r"[a-z0-9]+")
_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

# Function words and the words every question is made of: they say nothing about the topic.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "done",
        "down",
        "during",
        "each",
        "either",
        "else",
        "etc",
        "ever",
        "every",
        "few",
        "for",
        "from",
        "further",
        "get",
        "gets",
        "got",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "however",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "let",
        "like",
        "me",
        "might",
        "mine",
        "more",
        "most",
        "much",
        "must",
        "my",
        "myself",
        "need",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "one",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "per",
        "please",
        "rather",
        "really",
        "same",
        "say",
        "says",
        "shall",
        "she",
        "should",
        "so",
        "some",
        "such",
        "tell",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "thus",
        "to",
        "too",
        "under",
        "until",
        "up",
        "upon",
        "us",
        "use",
        "used",
        "uses",
        "using",
        "very",
        "via",
        "want",
        "was",
        "way",
        "we",
        "were",
        "what",
        "when",
        "where",
        "whether",
        "which",
        "while",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "within",
        "without",
        "would",
        "yes",
        "yet",
        "you",
        "your",
        "yours",
        "yourself",
    ]
)


class DeclineReason(StrEnum):
    """Why an answer was declined (recorded on the turn and sent with `answer.done`)."""

    NO_PASSAGES = "no_passages"  # nothing was retrieved
    NOT_IN_DOCUMENTS = "not_in_documents"  # the passages do not mention what was asked
    MODEL_DECLINED = "model_declined"  # the model said the passages do not answer
    UNSUPPORTED = "unsupported"  # the model's answer is not backed by the passages


_DOUBLED = re.compile(r"([bdfgklmnprtz])\1$")


def _stem(word: str) -> str:
    """A crude, consistent suffix strip: "commits", "committed", "committing" → "commit";
    "changes", "changed", "change" → "chang". Both sides go through it, so it need not be English."""
    if len(word) <= 4 or word.isdigit():
        return word
    if word.endswith("ies"):
        word = word[:-3] + "y"
    elif word.endswith("ing") and len(word) > 5:
        word = word[:-3]
    elif word.endswith("ed"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    word = _DOUBLED.sub(r"\1", word)
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def terms(text: str) -> list[str]:
    """Content words of `text`, normalised (identifiers split, stop words dropped), in order."""
    text = _CITATION.sub(" ", text)
    text = _CAMEL.sub(" ", text).lower()
    return [_stem(w) for w in _WORD.findall(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def support(words: Iterable[str], vocabulary: set[str]) -> float:
    """The share of `words` found in `vocabulary` (1.0 when there are no words to check)."""
    unique = set(words)
    if not unique:
        return 1.0
    return len(unique & vocabulary) / len(unique)


_YES_NO = re.compile(r"\s*(yes|no)\b", re.IGNORECASE)  # a yes/no answer may restate the question


def cited_numbers(sentence: str) -> list[int]:
    return [int(n) for group in _CITATION.findall(sentence) for n in group.split(",")]


def only_citations(sentence: str) -> bool:
    """`sentence` is citation markers and nothing else ("[1]", "[2] [3]")."""
    return bool(_CITATION.search(sentence)) and not _CITATION.sub("", sentence).strip(" \t\n.,;:")


def strip_citations(sentence: str) -> str:
    return re.sub(r"\s+([.!?,;:])", r"\1", _CITATION.sub("", sentence)).strip()


@dataclass(frozen=True)
class Verdict:
    """What the gate decided about one sentence."""

    keep: bool
    text: str  # the sentence as shown: its citations checked (and added where missing)
    citations: tuple[int, ...] = ()
    reason: DeclineReason | None = None  # why it was not kept, when it is the first sentence
    repeated: bool = False
    skip: bool = False  # nothing to say (a copied header or table): go on to the next sentence


class Evidence:
    """The passages of one answer, indexed for the checks above. Passage n is `passages[n-1]`:
    its text together with its title and headings, which the LLM reads with it."""

    def __init__(self, question: str, passages: Sequence[str]) -> None:
        self.question_terms = set(terms(question))
        self.passage_terms = [set(terms(p)) for p in passages]
        self.vocabulary: set[str] = set().union(*self.passage_terms) if self.passage_terms else set()
        self._said: list[set[str]] = []

    def question_support(self) -> float:
        return support(self.question_terms, self.vocabulary)

    def before_generation(self) -> DeclineReason | None:
        """A reason to decline without asking the LLM, or None."""
        if not self.passage_terms:
            return DeclineReason.NO_PASSAGES
        if self.question_support() < MIN_QUESTION_SUPPORT:
            return DeclineReason.NOT_IN_DOCUMENTS
        return None

    def best_passage(self, words: set[str]) -> int | None:
        """The passage (1-based) sharing the most of `words`; None when none shares any."""
        best, best_n = 0, None
        for n, vocabulary in enumerate(self.passage_terms, start=1):
            shared = len(words & vocabulary)
            if shared > best:
                best, best_n = shared, n
        return best_n

    def check(self, sentence: str) -> Verdict:
        """Keep, cite or refuse one sentence of the answer."""
        sentence = without_copied_markup(sentence)
        if not terms(sentence):
            return Verdict(keep=False, text="", skip=True)
        words = set(terms(sentence))
        if (
            words
            and self._said
            and any(len(words & said) / len(words | said) >= REPEAT_OVERLAP for said in self._said)
        ):
            return Verdict(keep=False, text="", repeated=True)
        grounded = support(words, self.vocabulary | self.question_terms)
        if grounded < MIN_SENTENCE_SUPPORT:
            return Verdict(keep=False, text="", reason=DeclineReason.UNSUPPORTED)
        if not self._said and len(self.question_terms) >= MIN_TOPIC_TERMS and not words & self.question_terms:
            # A first sentence that shares no word with a question that says what it is about
            # answers something else: a passage's opening copied, or what the ASR misheard. On the
            # tuning half no right answer began so, while wrong ones did (docs/quality.md).
            return Verdict(keep=False, text="", reason=DeclineReason.UNSUPPORTED)
        if not self._said and words <= self.question_terms and not _YES_NO.match(sentence):
            # A first sentence that only says the question back ("The hybrid search ranks the
            # passage of it, finds…") answers nothing: a small model echoes a question it cannot
            # answer, most often a misheard one. No answer of the eval runs began so.
            return Verdict(keep=False, text="", reason=DeclineReason.UNSUPPORTED)
        self._said.append(words)
        cited = [
            n
            for n in cited_numbers(sentence)
            if 1 <= n <= len(self.passage_terms) and words & self.passage_terms[n - 1]
        ]
        if not cited:
            best = self.best_passage(words - self.question_terms) or self.best_passage(words)
            cited = [best] if best is not None else []
        citations = tuple(dict.fromkeys(cited))
        text = strip_citations(sentence)
        if citations:
            text = _attach(text, citations)
        return Verdict(keep=True, text=text, citations=citations)


def _attach(sentence: str, citations: Sequence[int]) -> str:
    """`sentence` with its citation marker before the final punctuation: "… branch [1]."."""
    marker = "[" + ", ".join(str(n) for n in citations) + "]"
    match = re.search(r"[.!?…]+[\"')\]]*$", sentence)
    if match:
        return f"{sentence[: match.start()].rstrip()} {marker}{sentence[match.start() :]}"
    return f"{sentence} {marker}"


# What small models say when the passages do not answer, besides the sentence they were given:
# a refusal phrase about the passages themselves ("the documents do not mention…"), so an answer
# that merely contains "does not include" is not taken for one.
_MODEL_DECLINES = re.compile(
    r"\b(could not find|couldn't find|can ?not find|cannot answer|can't answer|do(?:es)? not (?:contain|"
    r"mention|say|provide|include|specify)|don't (?:contain|mention|say|know|have)|no information|"
    r"not (?:mentioned|provided|specified|covered|found) in)\b",
    re.IGNORECASE,
)
_ABOUT_THE_SOURCES = re.compile(
    r"\b(passages?|documents?|documentation|context|information|provided|given text|sources?)\b",
    re.IGNORECASE,
)
# Not prose to speak, which small models copy from the prompt: the "[n] title › section" line above
# each passage, table rows and rules, markdown headings.
_HEADER_LINE = re.compile(r"^\s*(\[\d+\]\s*)?[^\n]*›[^\n]*$", re.MULTILINE)
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}[-|: ]*$", re.MULTILINE)
_TABLE_ROW = re.compile(r"^\s*\|(.*)\|\s*$", re.MULTILINE)
_HEADING_LINE = re.compile(r"^\s*#{1,6}\s+[^\n]*$", re.MULTILINE)
_PASSAGE_MARK = re.compile(r"^\s*\[\d+\]\s+", re.MULTILINE)
_CELL_BARS = re.compile(r"\s*(?:\|\s*)+")


def is_model_decline(sentence: str) -> bool:
    """The model says, in its own words, that the passages do not answer."""
    return bool(_MODEL_DECLINES.search(sentence)) and bool(_ABOUT_THE_SOURCES.search(sentence))


def _row_as_words(cells: str) -> str:
    return ", ".join(c.strip() for c in cells.split("|") if c.strip()).rstrip(".") + "."


def without_copied_markup(sentence: str) -> str:
    """`sentence` less what is not prose: copied passage headers and headings dropped, a table's
    header and rule dropped and its rows said as their cells ("VOICEBOT_PORT, int, 8080, Port …")."""
    text = _HEADER_LINE.sub("", sentence)
    # A table: its header row (the line above the rule) and the rule go; a row is said as its cells.
    text = (
        re.sub(r"^[^\n]*\n(?=\s*\|?\s*:?-{3,})", "", text, flags=re.MULTILINE)
        if _TABLE_RULE.search(text)
        else text
    )
    text = _TABLE_RULE.sub("", text)
    text = _TABLE_ROW.sub(lambda m: _row_as_words(m.group(1)), text)
    text = _HEADING_LINE.sub("", text)
    text = _PASSAGE_MARK.sub("", text)
    # A piece of a row (the sentence splitter cut it at a full stop inside a cell): cells too.
    text = _CELL_BARS.sub(", ", text)
    text = re.sub(r"^[,\s]+|[,\s]+$", "", re.sub(r"\s*\n\s*", " ", text))
    return text
