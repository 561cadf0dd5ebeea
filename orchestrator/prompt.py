"""The prompt for a grounded, cited, spoken answer, in the chat template of the serving model.

The `llm` model takes a fully formatted prompt (the interface of Triton's vLLM backend), so the
gateway applies the template: ChatML for the local Qwen/SmolLM models, Llama 3 for the
production 8B model (VOICEBOT_LLM_PROMPT_FORMAT).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

PromptFormat = Literal["chatml", "llama3"]

NO_ANSWER = "I could not find that in the documents."

SYSTEM = (
    "You are Voicebot, a voice assistant that answers questions about the organisation's documents. "
    "Answer in one to three short sentences that sound natural when spoken. "
    "Use only the numbered passages below. Cite the passages you used as [1], [2]. "
    f'If the passages do not contain the answer, say exactly: "{NO_ANSWER}"'
)
SYSTEM_WITHOUT_SOURCES = (
    "You are Voicebot, a voice assistant. The document search is unavailable right now, so you have no "
    "passages to rely on. Say so in one short sentence, then answer only if you are certain, briefly."
)
HISTORY_TURNS = 4  # earlier exchanges of a conversation given to the LLM
PASSAGE_CHARS = 1200  # per passage; bounds the prompt (and time to first token) whatever the chunker did


@dataclass(frozen=True)
class Passage:
    title: str
    heading_path: Sequence[str]
    text: str


@dataclass(frozen=True)
class Exchange:
    question: str
    answer: str


def _context(passages: Sequence[Passage]) -> str:
    blocks = []
    for n, passage in enumerate(passages, start=1):
        where = " › ".join([passage.title, *passage.heading_path])
        blocks.append(f"[{n}] {where}\n{passage.text[:PASSAGE_CHARS].strip()}")
    return "\n\n".join(blocks)


def build_messages(
    question: str, passages: Sequence[Passage] | None, history: Sequence[Exchange] = ()
) -> list[tuple[str, str]]:
    """(role, content) pairs. `passages=None` means retrieval failed; [] means nothing matched."""
    if passages is None:
        system = SYSTEM_WITHOUT_SOURCES
    else:
        context = _context(passages) if passages else "(no passage matched the question)"
        system = f"{SYSTEM}\n\nPassages:\n{context}"
    messages = [("system", system)]
    for exchange in history:
        messages += [("user", exchange.question), ("assistant", exchange.answer)]
    messages.append(("user", question))
    return messages


def render(messages: Sequence[tuple[str, str]], fmt: PromptFormat) -> str:
    if fmt == "chatml":
        body = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in messages)
        return body + "<|im_start|>assistant\n"
    body = "".join(
        f"<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>" for role, content in messages
    )
    return "<|begin_of_text|>" + body + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def stop_strings(fmt: PromptFormat) -> list[str]:
    return ["<|im_end|>", "<|im_start|>"] if fmt == "chatml" else ["<|eot_id|>", "<|start_header_id|>"]
