"""Triton Python model `embed`: all-MiniLM-L6-v2 sentence embeddings on onnxruntime.

Tensor contract (docs/models.md#embed): `text` TYPE_STRING [N, 1] -> `embedding` TYPE_FP32 [N, 384],
mean-pooled over the attention mask and L2-normalised. Requests that Triton's dynamic batcher puts
together run as one onnxruntime call; an invalid text fails only its own request.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

from voicebot_models.resolve import resolve_model
from voicebot_models.serving import InputError, ModelParameters, decode_text


class TritonPythonModel:
    """Sentence encoder: tokenise, run the ONNX encoder, mean-pool, normalise."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = ModelParameters(config)
        self.max_chars = params.get_int("max_text_chars", 8192)
        self.dims = int(pb_utils.get_output_config_by_name(config, "embedding")["dims"][-1])
        weights = resolve_model("embed")[0]

        self.tokenizer = Tokenizer.from_file(str(weights.dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(params.get_int("max_tokens", 256))
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest in the batch

        options = ort.SessionOptions()
        options.intra_op_num_threads = params.get_int("intra_op_threads", 0)
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU":
            providers.insert(
                0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])})
            )
        self.session = ort.InferenceSession(str(weights.file), options, providers=providers)
        self.input_names = {i.name for i in self.session.get_inputs()}
        pb_utils.Logger.log_info(f"embed: {weights.entry.id} from {weights.source} ({weights.dir})")

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised embeddings for a list of texts, shape [len(texts), dims]."""
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.input_names})[0]
        if hidden.ndim == 3:  # token embeddings -> mean over real tokens
            weights = mask[..., None].astype(np.float32)
            hidden = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(hidden, axis=1, keepdims=True)
        return (hidden / np.clip(norms, 1e-12, None)).astype(np.float32)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request; valid requests of the batch share one encoder run."""
        responses: list[Any] = [None] * len(requests)
        texts: list[str] = []
        owners: list[tuple[int, int, int]] = []  # (request index, first text, count)
        for i, request in enumerate(requests):
            try:
                array = pb_utils.get_input_tensor_by_name(request, "text").as_numpy()
                batch = [decode_text(v, "text", self.max_chars) for v in array.reshape(-1)]
            except InputError as e:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e)))
                continue
            owners.append((i, len(texts), len(batch)))
            texts.extend(batch)
        if texts:
            try:
                vectors = self.embed(texts)
            except Exception as e:  # an engine failure fails the batch, never the server
                error = pb_utils.TritonError(f"embedding failed: {e}")
                for i, _, _ in owners:
                    responses[i] = pb_utils.InferenceResponse(error=error)
                return responses
            for i, first, count in owners:
                tensor = pb_utils.Tensor("embedding", vectors[first : first + count])
                responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])
        return responses
