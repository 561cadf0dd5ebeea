"""The part of a passage that a question is about, put first.

A retrieved chunk is a section of a document (about 220 tokens) and the prompt gives the LLM its
first `passage_chars`. Small models answer by copying the start of the first passage: asked
"Where does the local stack keep its logs?", the 0.5B default read the "local stack" section and
recited its opening sentence about components, although the section's fifth sentence says where
the logs go. And a chunk longer than `passage_chars` loses its end, wherever the answer is.

So each passage is given from the sentence (list item, table row) that shares the most with the
question, weighted by how rare each shared word is within the passage ("logs" outweighs "stack"
when every sentence mentions the stack), onwards, and then what came before it, as far as the
budget goes. A table keeps its header row. Only a passage whose start shares none of the
question's words is moved: when the start already speaks of the question, it is left as it was.

The focused text is what the LLM reads, what the grounding check compares answers with, and what
a citation shows, so all three agree. It depends on the question: a speculative prompt warmed on
a partial transcript is used at the release only if the final question focuses its passages the
same way (orchestrator/speculation.py compares passage texts).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from orchestrator.grounding import terms, without_copied_markup

_FENCE = re.compile(r"^\s*(```|~~~)")
_TABLE_ROW = re.compile(r"^\s*\|")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}[-|: ]*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s")
# A sentence ends at . ! ? followed by space and something that starts a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[`*_A-Z0-9])")


@dataclass(frozen=True)
class Unit:
    """A sentence, list item, table row, heading or code block; `sep` joins it to the previous one."""

    text: str
    sep: str
    header: int | None = None  # for a table row: the unit holding its table's header and rule


def _lines(text: str) -> list[tuple[str, str]]:
    """Each line of `text` with its kind: fence (a whole code block), row, rule, item, heading,
    prose, or blank."""
    out: list[tuple[str, str]] = []
    fence: list[str] | None = None
    for line in text.splitlines():
        if fence is not None:
            fence.append(line)
            if _FENCE.match(line):
                out.append(("fence", "\n".join(fence)))
                fence = None
            continue
        if _FENCE.match(line):
            fence = [line]
        elif not line.strip():
            out.append(("blank", ""))
        elif _TABLE_RULE.match(line):
            out.append(("rule", line.strip()))
        elif _TABLE_ROW.match(line):
            out.append(("row", line.strip()))
        elif _LIST_ITEM.match(line):
            out.append(("item", line.strip()))
        elif _HEADING.match(line):
            out.append(("heading", line.strip()))
        else:
            out.append(("prose", line.strip()))
    if fence is not None:  # an unclosed fence (the chunk ends inside it)
        out.append(("fence", "\n".join(fence)))
    return out


def units(text: str) -> list[Unit]:
    """`text` cut into the units a focused passage may start at, in order."""
    out: list[Unit] = []
    sep = ""  # what joins the next unit to the previous one
    header: int | None = None
    previous = "blank"
    paragraph: list[str] = []  # hard-wrapped prose lines (or a list item and its continuation)

    def flush() -> None:
        nonlocal sep
        if not paragraph:
            return
        joined = " ".join(paragraph)
        paragraph.clear()
        pieces = [joined] if _LIST_ITEM.match(joined) else _SENTENCE_END.split(joined)
        for i, piece in enumerate(pieces):
            out.append(Unit(piece, sep if i == 0 else " "))
        sep = "\n"

    for kind, line in _lines(text):
        if kind == "prose" and previous in ("prose", "item") and paragraph:
            paragraph.append(line)  # a wrapped line continues its sentence or item
        elif kind in ("prose", "item"):
            flush()
            paragraph.append(line)
        else:
            flush()
            if kind == "blank":
                sep = "\n\n" if out else ""
            elif kind == "rule" and previous == "row" and out:
                # The header row and its rule: one unit, kept above any row shown without it.
                head = out.pop()
                out.append(Unit(head.text + "\n" + line, head.sep))
                header = len(out) - 1
                sep = "\n"
            else:
                if kind != "row" or previous not in ("row", "rule"):
                    header = None  # not a row, or the first row of a table with no header rule
                out.append(Unit(line, sep, header if kind == "row" else None))
                sep = "\n"
        previous = kind
    flush()
    return out


def _start(pieces: list[Unit], question: set[str]) -> int:
    """The unit sharing the most with the question (words rare in the passage weigh more); 0 on a
    tie."""
    words = [set(terms(u.text)) for u in pieces]
    df = Counter(t for w in words for t in w)
    scores = [sum(1 / df[t] for t in w & question) for w in words]
    if scores[0] > 0:
        # A start that already speaks of the question is left alone: in manuals it is usually the
        # definition ("--format=<fmt>: Format of the resulting archive."), which answers best, and
        # moving past it on a small margin lost more answers than it won (docs/quality.md).
        return 0
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return best if scores[best] > 0 else 0


def focus_terms(question: str, heading: str) -> set[str]:
    """The question's words that pick a part of a passage with this heading: those the heading
    does not already hold (all of them if it holds every one)."""
    question_terms = set(terms(question))
    return (question_terms - set(terms(heading))) or question_terms


def focus(text: str, question: str, chars: int, heading: str = "") -> str:
    """At most `chars` of `text`, from the unit the question is most about onwards.

    `heading` (the passage's title and section path) says what the whole passage is about: the
    question's words it holds are why the passage was found, so the rest of the question picks
    the part ("local stack" found the section, "logs" picks its sentence)."""
    question_terms = focus_terms(question, heading)
    if not question_terms or not text.strip():
        return text
    pieces = units(text)
    if not pieces:
        return text
    start = _start(pieces, question_terms)
    if start == 0:
        return text
    first = pieces[start]
    shown = first.text
    if first.header is not None:
        shown = pieces[first.header].text + "\n" + shown
    # Then the rest of the passage, and what came before the focused part after it: the question
    # may be about more than one sentence, and the one picked is not always the one that answers.
    after = [(u.sep, u.text) for u in pieces[start + 1 :]]
    before = [(u.sep, u.text) for i, u in enumerate(pieces[:start]) if i != first.header]
    if before:
        before[0] = ("\n\n", before[0][1])
    for sep, piece in [*after, *before]:
        if len(shown) + len(sep) + len(piece) > chars:
            break
        shown += sep + piece
    return shown[:chars]  # a first unit longer than the budget is cut, as the prompt cuts passages


def lead(text: str) -> str:
    """The first thing in `text` worth saying aloud: a sentence, a list item, or a table row said
    as its cells; "" if there is none. For a focused passage, the part the question is about."""
    for unit in units(text):
        if _FENCE.match(unit.text) or _HEADING.match(unit.text):
            continue
        said = without_copied_markup(_LIST_ITEM.sub("", unit.text))
        if terms(said):
            return said
    return ""
