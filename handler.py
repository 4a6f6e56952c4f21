"""Hugging Face Inference Endpoints handler: a custom-code embedding model served by an endpoint.

Inference Endpoints (and the widget of a repo backed by one) call `EndpointHandler(path)` once, then
`handler({"inputs": ..., "parameters": {...}})` per request. `inputs` is a string or a list of strings; the answer
is a list of embeddings (lists of floats), one per input, equal to `model.encode`. `parameters` may hold
`prompt_name` ("query" | "document"), `prompt` (any string, decoder only), `normalize_embeddings` (bool) and
`batch_size` (int); anything else is refused. Every exported checkpoint carries this file.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModel

PARAMETERS = {"prompt_name": str, "prompt": str, "normalize_embeddings": bool, "batch_size": int}


class EndpointHandler:
    def __init__(self, path: str = "") -> None:
        self.model = AutoModel.from_pretrained(path or ".", trust_remote_code=True)
        self.model.to("cuda" if torch.cuda.is_available() else "cpu").eval()  # GPU endpoints run on their GPU

    def __call__(self, data: dict[str, Any]) -> list[list[float]]:
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('expected {"inputs": a string or a list of strings, "parameters": {...}}')
        inputs = data["inputs"]
        texts = [inputs] if isinstance(inputs, str) else inputs
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError(f"parameters must be an object, got {type(parameters).__name__}")
        for name, value in parameters.items():
            if name not in PARAMETERS:
                raise ValueError(f"unknown parameter {name!r}; expected some of {', '.join(PARAMETERS)}")
            if not isinstance(value, PARAMETERS[name]) or (PARAMETERS[name] is int and isinstance(value, bool)):
                raise ValueError(f"parameter {name} must be {PARAMETERS[name].__name__}, got {value!r:.80}")
        return self.model.encode(texts, **parameters).tolist()
