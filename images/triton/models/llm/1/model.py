"""Triton Python model `llm`: llama.cpp generation with the tensor interface of Triton's vLLM backend.

Tensor contract (docs/models.md#llm): `text_input` TYPE_STRING [1] (the formatted prompt), optional
`stream` TYPE_BOOL [1] (default true), `sampling_parameters` TYPE_STRING [1] (JSON: temperature,
top_p, max_tokens, stop, ...), `exclude_input_in_output` TYPE_BOOL [1] -> `text_output` TYPE_STRING
[-1]: when streaming, each response carries only the new text; the last response carries the
FINAL flag and `num_input_tokens` / `num_output_tokens` / `num_cached_tokens` TYPE_UINT32 [1].
Without streaming, one response holds the whole text (prefixed by the prompt unless
`exclude_input_in_output`, as vLLM).

Prefix caching (as vLLM's automatic prefix caching): the key/value state of each prompt is saved
(images/triton/voicebot_models/prefix_cache.py) and restored for a later prompt that starts the same way,
so only the new tokens are evaluated. The gateway warms a turn's prompt prefix while the user is
still speaking with a `max_tokens: 1` request; at the release only the question is left to read.
`num_cached_tokens` says how many prompt tokens were not evaluated again. The prompt is evaluated
in chunks of `prefill_chunk_tokens`, checking for cancellation in between, so a speculative
prefill the gateway abandons frees the model within one chunk; what it had evaluated is saved.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Sequence
from typing import Any

import llama_cpp
import numpy as np
import triton_python_backend_utils as pb_utils
from llama_cpp import Llama

from voicebot_models.prefix_cache import PrefixCache, common_prefix
from voicebot_models.resolve import resolve_model
from voicebot_models.serving import (
    InputError,
    ModelParameters,
    parse_sampling_parameters,
    single_bool,
    single_text,
)

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class Cancelled(Exception):
    """The client cancelled the request after ``pieces`` streamed pieces of text."""

    def __init__(self, pieces: int = 0) -> None:
        super().__init__(f"cancelled after {pieces} pieces")
        self.pieces = pieces


def _strings(*texts: str) -> np.ndarray:
    return np.array([t.encode("utf-8") for t in texts], dtype=np.object_)


class TritonPythonModel:
    """One llama.cpp context; requests run one after another, each streamed token by token."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = ModelParameters(config)
        self.max_prompt_chars = params.get_int("max_prompt_chars", 16000)
        self.default_max_tokens = params.get_int("default_max_tokens", 256)
        self.max_tokens_limit = params.get_int("max_tokens_limit", 2048)
        weights = resolve_model("llm")[0]
        self.llm = Llama(
            model_path=str(weights.file),
            n_ctx=params.get_int("n_ctx", 4096),
            n_batch=params.get_int("n_batch", 512),
            n_threads=params.get_int("n_threads", 1) or os.cpu_count() or 1,
            n_threads_batch=params.get_int("n_threads_batch", 0) or os.cpu_count() or 1,
            n_gpu_layers=params.get_int("n_gpu_layers", 0),
            verbose=False,
        )
        self.prefix_cache = PrefixCache(params.get_int("prefix_cache_mb", 256) * 2**20)
        self.prefill_chunk = max(1, params.get_int("prefill_chunk_tokens", 64))
        pb_utils.Logger.log_info(f"llm: {weights.entry.id} from {weights.source} ({weights.file})")

    # ---- prefix cache ----------------------------------------------------------------

    def _save(self, tokens: Sequence[int]) -> None:
        """Save the context's key/value state, which holds exactly `tokens`."""
        ctx = self.llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        if written:
            self.prefix_cache.put(tokens, bytes(buffer)[:written])

    def _restore(self, tokens: Sequence[int], state: bytes) -> bool:
        self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        self.llm.n_tokens = 0
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if not llama_cpp.llama_state_seq_set_data(self.llm._ctx.ctx, buffer, len(state), 0):
            return False
        self.llm.input_ids[: len(tokens)] = tokens
        self.llm.n_tokens = len(tokens)
        return True

    def _prefill(self, request: Any, tokens: list[int]) -> int:
        """Bring the context to hold all of `tokens` but the last (which generation evaluates):
        from what it holds, or a saved state, plus new chunks. Returns the tokens not evaluated."""
        held = common_prefix(self.llm._input_ids, tokens)
        saved, shared = self.prefix_cache.best(tokens)
        if saved is not None and shared > held and self._restore(saved.tokens, saved.state):
            held = shared
        cached = min(held, len(tokens) - 1)
        self.llm.n_tokens = cached
        rest = tokens[cached:-1]
        for start in range(0, len(rest), self.prefill_chunk):
            if request.is_cancelled():
                # What was evaluated is kept: a speculative prefill is cancelled when a newer
                # partial transcript found other passages, and the next prompt shares its start.
                if start and self.prefix_cache.wants(tokens[: cached + start]):
                    self._save(tokens[: cached + start])
                raise Cancelled
            self.llm.eval(rest[start : start + self.prefill_chunk])
        if rest and self.prefix_cache.wants(tokens[:-1]):
            self._save(tokens[:-1])
        return cached

    def _inputs(self, request: Any) -> tuple[str, bool, bool, dict[str, Any]]:
        def array(name: str) -> np.ndarray | None:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            return tensor.as_numpy() if tensor is not None else None

        prompt = single_text(array("text_input"), "text_input", self.max_prompt_chars)
        stream = single_bool(array("stream"), "stream", True)
        exclude_input = single_bool(array("exclude_input_in_output"), "exclude_input_in_output", False)
        raw = single_text(array("sampling_parameters"), "sampling_parameters", 65536, allow_empty=True)
        sampling = parse_sampling_parameters(
            raw, max_tokens_limit=self.max_tokens_limit, default_max_tokens=self.default_max_tokens
        )
        return prompt, stream, exclude_input, sampling

    def _count(self, text: str, *, prompt: bool) -> int:
        if not text:
            return 0
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=prompt, special=prompt))

    def _generate(self, request: Any, sender: Any) -> None:
        prompt, stream, exclude_input, sampling = self._inputs(request)
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        n_prompt = len(tokens)
        room = self.llm.n_ctx() - n_prompt
        if room < 1:
            raise InputError(f"the prompt is {n_prompt} tokens; the context holds {self.llm.n_ctx()}")
        n_cached = self._prefill(request, tokens)
        chunks = self.llm.create_completion(
            prompt,
            max_tokens=min(sampling["max_tokens"], room),
            temperature=sampling["temperature"],
            top_p=sampling["top_p"],
            top_k=max(0, sampling["top_k"]),
            stop=sampling["stop"],
            seed=sampling["seed"],
            repeat_penalty=sampling["repeat_penalty"],
            presence_penalty=sampling["presence_penalty"],
            frequency_penalty=sampling["frequency_penalty"],
            stream=True,
        )
        pieces: list[str] = []
        finish_reason = "length"
        try:
            for chunk in chunks:
                if request.is_cancelled():
                    raise Cancelled(len(pieces))
                choice = chunk["choices"][0]
                finish_reason = choice.get("finish_reason") or finish_reason
                delta = choice["text"]
                if not delta:
                    continue
                pieces.append(delta)
                if stream:
                    tensors = [pb_utils.Tensor("text_output", _strings(delta))]
                    if len(pieces) == 1:  # the prompt's counts, for a client that stops reading early
                        tensors += [
                            pb_utils.Tensor("num_input_tokens", np.array([n_prompt], dtype=np.uint32)),
                            pb_utils.Tensor("num_cached_tokens", np.array([n_cached], dtype=np.uint32)),
                        ]
                    sender.send(pb_utils.InferenceResponse(output_tensors=tensors))
        finally:
            chunks.close()  # stops generation at once on cancellation or error
        output = "".join(pieces)
        last = "" if stream else output if exclude_input else prompt + output
        n_output = self._count(output, prompt=False)
        final = [
            pb_utils.Tensor("text_output", _strings(last)),
            pb_utils.Tensor("num_input_tokens", np.array([n_prompt], dtype=np.uint32)),
            pb_utils.Tensor("num_output_tokens", np.array([n_output], dtype=np.uint32)),
            pb_utils.Tensor("num_cached_tokens", np.array([n_cached], dtype=np.uint32)),
            pb_utils.Tensor("finish_reason", _strings(finish_reason)),
        ]
        sender.send(pb_utils.InferenceResponse(output_tensors=final), flags=FINAL)

    def execute(self, requests: list[Any]) -> None:
        """Decoupled: each request streams through its own response sender, one request at a time."""
        for request in requests:
            sender = request.get_response_sender()
            try:
                if request.is_cancelled():
                    raise Cancelled
                self._generate(request, sender)
            except InputError as e:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))), flags=FINAL)
            except Cancelled as e:
                pb_utils.Logger.log_info(f"llm: request cancelled after {e.pieces} streamed pieces")
                error = pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
                sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
            except Exception as e:  # an engine failure fails this request, never the server
                pb_utils.Logger.log_error(f"llm: generation failed: {type(e).__name__}: {e}")
                error = pb_utils.TritonError(f"generation failed: {e}")
                sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
        return None
