"""`Embedder`: one model replica that turns a batch of rows into embeddings. The very same class runs in the plain
worker processes and as Ray Data's `map_batches` actor, so both paths give the same vectors. This module imports no
other project module: a Ray cluster ships it to its workers as it is (the model's own code comes from its folder)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

PRECISIONS = ("float32", "int8", "ubinary")
DTYPES = ("fp32", "bf16", "fp16")
STORED_TYPES = {"float32": np.float32, "int8": np.int8, "ubinary": np.uint8}


def vector_width(dims: int, precision: str) -> int:
    """Values stored per vector: `dims`, or ceil(dims / 8) bytes of packed sign bits for `ubinary`."""
    return (dims + 7) // 8 if precision == "ubinary" else dims


def calibration_ranges(embeddings: np.ndarray) -> np.ndarray:
    """int8 ranges (2, dims): each dimension's minimum and maximum, what `quantize_embeddings` computes from
    `calibration_embeddings`. Fixed once for the whole corpus: computed per call, every shard would differ."""
    return np.vstack((embeddings.min(axis=0), embeddings.max(axis=0))).astype(np.float32)


def quantize(embeddings: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """sentence-transformers' `quantize_embeddings`: float32 as it is, int8 in the corpus' `ranges`, ubinary packed."""
    from sentence_transformers.util import quantize_embeddings

    if precision == "float32":
        return np.ascontiguousarray(embeddings, dtype=np.float32)
    if precision == "int8":
        if ranges is None:
            raise ValueError("int8 needs the corpus' calibration ranges")
        return quantize_embeddings(embeddings, "int8", ranges=np.asarray(ranges, dtype=np.float32))
    if precision == "ubinary":
        return quantize_embeddings(embeddings, "ubinary")
    raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")


class Embedder:
    """Loads `SentenceTransformer(model, trust_remote_code=True)` once; `embedder(batch)` embeds `batch["text"]`
    with `encode` (length-sorted batches of `batch_size`), quantizes to `precision`, and returns the batch's other
    columns unchanged with an `embedding` column (rows x `vector_width`)."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        dtype: str = "fp32",
        threads: int = 0,
        prompt_name: str | None = None,
        batch_size: int = 32,
        truncate_dim: int | None = None,
        normalize: bool = False,
        precision: str = "float32",
        ranges: list[list[float]] | None = None,
    ) -> None:
        if threads:
            # each process its share of the cores: processes that each use every core slow each other down
            os.environ["RAYON_NUM_THREADS"] = str(threads)  # the tokenizers' pool, before its first use
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
        torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        from transformers.utils import logging as hf_logging

        quiet = not hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the job's own bar is the one to watch
        try:
            self.model = SentenceTransformer(
                model, device=device, trust_remote_code=True, model_kwargs={"dtype": torch_dtype}
            )
        finally:
            if not quiet:
                hf_logging.enable_progress_bar()
        prompts = self.model.prompts or {}
        if prompt_name is not None and prompt_name not in prompts:
            raise ValueError(f"the model has no prompt named {prompt_name!r}; its prompts: {sorted(prompts)}")
        self.prompt_name = prompt_name
        name = prompt_name or self.model.default_prompt_name  # what encode() falls back to
        self.prompt = prompts.get(name, "") if name else ""
        full = self.model.get_embedding_dimension()
        if truncate_dim is not None and not 1 <= truncate_dim <= full:
            raise ValueError(
                f"--truncate-dim must be from 1 to {full} (the model's embedding size), got {truncate_dim}"
            )
        self.dims = truncate_dim or full
        self.truncate_dim, self.normalize, self.batch_size = truncate_dim, normalize, batch_size
        self.precision = precision
        self.ranges = None if ranges is None else np.asarray(ranges, dtype=np.float32)
        if precision == "int8" and self.ranges is None:
            raise ValueError("precision int8 needs ranges (the corpus' calibration)")

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 embeddings (len(texts), dims), exactly `encode`'s."""
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        out = self.model.encode(
            texts,
            prompt_name=self.prompt_name,
            batch_size=self.batch_size,
            truncate_dim=self.truncate_dim,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        texts = batch["text"]
        texts = texts.tolist() if isinstance(texts, np.ndarray) else list(texts)
        out = {name: values for name, values in batch.items() if name != "text"}
        out["embedding"] = quantize(self.embed(texts), self.precision, self.ranges)
        return out


def probe(embedder_kwargs: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """What a fresh job records before its first shard: the dims, the prompt text and, for int8, the calibration
    ranges of `texts` (embedded in float32). Runs in the job's main process, or as a Ray task."""
    embedder = Embedder(**{**embedder_kwargs, "precision": "float32", "ranges": None})
    facts: dict[str, Any] = {"dims": embedder.dims, "prompt": embedder.prompt, "ranges": None}
    if embedder_kwargs.get("precision") == "int8" and texts:
        facts["ranges"] = calibration_ranges(embedder.embed(texts)).tolist()
    return facts
