"""The prompt for a grounded, cited, spoken answer, in the chat template of the serving model.

The `llm` model takes a fully formatted prompt (the interface of Triton's vLLM backend), so the
gateway applies the template: ChatML for the local Qwen/SmolLM models, Llama 3 for the
production 8B model (VOICEBOT_LLM_PROMPT_FORMAT).

Layout: what is known before the question is complete comes first (instructions, earlier
exchanges, the passages), the question last. `Prompt.prefix` is everything before the question,
so a model server that caches key/value state by prefix (llama.cpp here, vLLM's automatic
prefix caching in the cluster) can evaluate it while the user is still speaking and, at the
release, only the question's own tokens are left to read.

Passages, questions and history are untrusted text: the template's control tokens in them are
neutralised (`neutral`), so a document cannot open a new system turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

PromptFormat = Literal["chatml", "llama3"]

NO_ANSWER = "I could not find that in the documents."

SYSTEM = (
    "You are Voicebot, a voice assistant that answers questions about the organisation's documents. "
    "Answer only from the numbered passages the user gives you. "
    "Reply in one or two short, plain sentences that sound natural when spoken: no lists, no code "
    "blocks, no markdown. End each sentence with the number of the passage it comes from, like [1]. "
    f'If the passages do not answer the question, reply exactly: "{NO_ANSWER}"'
)
SYSTEM_WITHOUT_SOURCES = (
    "You are Voicebot, a voice assistant. The document search is unavailable right now, so you have no "
    "passages to rely on. Say so in one short sentence, then answer only if you are certain, briefly."
)
HISTORY_TURNS = 4  # earlier exchanges of a conversation given to the LLM
# Per passage; bounds the prompt (and so the time to first token) whatever the chunker did.
PASSAGE_CHARS = 800

# Control tokens of the chat templates we render (`<|im_start|>`, `<|eot_id|>`, …).
_CONTROL = re.compile(r"<\|([A-Za-z0-9_]+)\|>")


def neutral(text: str) -> str:
    """`text` with anything shaped like a template control token defused ("<|im_end|>" → "<im_end>"),
    so untrusted text is tokenised as ordinary text whatever the server's tokeniser does."""
    return _CONTROL.sub(r"<\1>", text)


@dataclass(frozen=True)
class Passage:
    title: str
    heading_path: Sequence[str]
    text: str


@dataclass(frozen=True)
class Exchange:
    question: str
    answer: str


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: `prefix` + the question's part = `text`."""

    prefix: str
    text: str


PASSAGES_LEAD = "Passages:\n"


def _context(passages: Sequence[Passage], passage_chars: int) -> str:
    blocks = []
    for n, passage in enumerate(passages, start=1):
        where = " › ".join([passage.title, *passage.heading_path])
        body = passage.text[:passage_chars].strip()
        blocks.append(neutral(f"[{n}] {where}\n{body}"))
    return "\n\n".join(blocks)


QUESTION_LEAD = "Question: "


def build_messages(
    question: str,
    passages: Sequence[Passage] | None,
    history: Sequence[Exchange] = (),
    *,
    passage_chars: int = PASSAGE_CHARS,
) -> list[tuple[str, str]]:
    """(role, content) pairs. `passages=None` means retrieval failed; [] means nothing matched.

    The last message ends with the question, after the passages, so that everything before it is
    a cacheable prefix."""
    messages = [("system", SYSTEM_WITHOUT_SOURCES if passages is None else SYSTEM)]
    for exchange in history:
        messages += [("user", neutral(exchange.question)), ("assistant", neutral(exchange.answer))]
    if passages is None:
        messages.append(("user", QUESTION_LEAD + neutral(question)))
    else:
        context = _context(passages, passage_chars) if passages else "(no passage matched the question)"
        messages.append(("user", f"{PASSAGES_LEAD}{context}\n\n{QUESTION_LEAD}{neutral(question)}"))
    return messages


def _turn_end(fmt: PromptFormat) -> str:
    return "<|im_end|>\n" if fmt == "chatml" else "<|eot_id|>"


def _turn_start(role: str, fmt: PromptFormat) -> str:
    return f"<|im_start|>{role}\n" if fmt == "chatml" else f"<|start_header_id|>{role}<|end_header_id|>\n\n"


def _turn(role: str, content: str, fmt: PromptFormat) -> str:
    return f"{_turn_start(role, fmt)}{content}{_turn_end(fmt)}"


def _assistant_start(fmt: PromptFormat) -> str:
    return _turn_start("assistant", fmt)


def _begin(fmt: PromptFormat) -> str:
    return "" if fmt == "chatml" else "<|begin_of_text|>"


def render(messages: Sequence[tuple[str, str]], fmt: PromptFormat) -> str:
    body = "".join(_turn(role, content, fmt) for role, content in messages)
    return _begin(fmt) + body + _assistant_start(fmt)


def build_prompt(
    question: str,
    passages: Sequence[Passage] | None,
    history: Sequence[Exchange] = (),
    *,
    fmt: PromptFormat,
    passage_chars: int = PASSAGE_CHARS,
) -> Prompt:
    """The rendered prompt and its question-free prefix."""
    text = render(build_messages(question, passages, history, passage_chars=passage_chars), fmt)
    tail = len(neutral(question)) + len(_turn_end(fmt)) + len(_assistant_start(fmt))
    return Prompt(prefix=text[:-tail], text=text)


def conversation_prefix(history: Sequence[Exchange] = (), *, fmt: PromptFormat) -> str:
    """The start every prompt of this conversation's next turn shares, whatever its passages and
    question: instructions, earlier exchanges, and the last message up to its first passage.
    Known when the user starts speaking, so it is warmed first (orchestrator/speculation.py)."""
    messages = build_messages("", [], history)[:-1]
    body = "".join(_turn(role, content, fmt) for role, content in messages)
    return _begin(fmt) + body + _turn_start("user", fmt) + PASSAGES_LEAD


def stop_strings(fmt: PromptFormat) -> list[str]:
    return ["<|im_end|>", "<|im_start|>"] if fmt == "chatml" else ["<|eot_id|>", "<|start_header_id|>"]
