"""Load a model for evaluation and embed texts through the on-disk cache."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causal2vec.card import read_training_config
from causal2vec.dtypes import DTYPES
from evaluation.cache import EmbeddingCache, embedding_key, folder_fingerprint, module_fingerprint

# sentence-transformers prompt names for the two sides, in order of preference
ST_PROMPT_NAMES = {"query": ("query",), "document": ("document", "passage", "corpus")}


def is_causal2vec_folder(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "causal2vec"


def load_model(path: str | Path, device: str | None = None) -> Any:
    """A Causal2Vec checkpoint folder (remote code) or any SentenceTransformer-loadable folder."""
    if not Path(path).exists():
        raise FileNotFoundError(f"model folder {path} does not exist")
    if is_causal2vec_folder(path):
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(path), trust_remote_code=True)
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device=device or "cpu", local_files_only=True)
    return model.eval() if device is None else model.to(device).eval()


def describe(model: Any) -> str:
    """A baseline's layout settings (`describe()`), or the model class name."""
    return model.describe() if hasattr(model, "describe") else type(model).__name__


class Embedder:
    """Embeds texts with a model (Causal2Vec, a baseline or a SentenceTransformer), caching by content.

    Causal2Vec models and baselines turn `instruction` into a query prompt (`config.query_prompt`). A plain
    SentenceTransformer was not trained with our instructions: a text given one (queries, symmetric tasks) gets its
    own "query" prompt, a text without one (documents) its "document"/"passage" prompt, else its default prompt or
    none. `use_instructions=False` drops all prompts. `truncate_dim=k` returns the first k dimensions, as
    `encode(truncate_dim=k)`; the cache keeps whole embeddings, so every k shares one forward.
    """

    def __init__(
        self,
        model: Any,
        model_id: str | None = None,
        cache_dir: str | Path | None = None,
        dtype: str = "fp32",
        batch_size: int = 32,
        use_instructions: bool = True,
        show_progress_bar: bool = True,
        truncate_dim: int | None = None,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}")
        self.model, self.dtype, self.batch_size, self.truncate_dim = model, dtype, batch_size, truncate_dim
        self.model_id = model_id or f"{module_fingerprint(model)}:{describe(model)}"
        self.cache = EmbeddingCache(cache_dir)
        self.use_instructions, self.show_progress_bar = use_instructions, show_progress_bar
        self.encode_calls = 0  # model forward passes requested (cache misses)
        if truncate_dim is not None:
            full = self.embedding_dim
            if isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int) or truncate_dim < 1:
                raise ValueError(f"truncate_dim must be a positive integer, got {truncate_dim!r}")
            if full is not None and truncate_dim > full:
                raise ValueError(f"truncate_dim must be from 1 to {full} (the embedding size), got {truncate_dim}")

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        baseline: str | None = None,
        pooling: str | None = None,
        device: str | None = None,
        **kwargs: Any,
    ) -> Embedder:
        """Load a checkpoint folder (onto `device`), optionally wrapped as a baseline or with another `pooling` (a
        Causal2Vec checkpoint embedded as `eos`, `contextual`, ...: an ablation of a trained model); its identity
        comes from its files (and the pooling)."""
        model, model_id = load_model(path, device), folder_fingerprint(path)
        if pooling is not None:
            from configuration_causal2vec import POOLINGS

            if baseline or not is_causal2vec_folder(path):
                raise ValueError("pooling= applies to a Causal2Vec checkpoint evaluated as itself (no baseline)")
            if pooling not in POOLINGS:
                raise ValueError(f"unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")
            model.config.pooling = pooling
            model_id += f":pooling={pooling}"
        trained_as = (read_training_config(path) or {}).get("baseline")
        if trained_as and trained_as != baseline:
            warnings.warn(
                f"{path} was trained as the {trained_as!r} baseline but is evaluated as {baseline or 'Causal2Vec'!r}; "
                f"pass --baseline {trained_as} to embed it the way it was trained",
                stacklevel=2,
            )
        if baseline:
            from causal2vec.baselines import build_baseline

            if not is_causal2vec_folder(path):
                raise ValueError(f"--baseline needs a Causal2Vec checkpoint; {path} is not one (no causal2vec config)")
            model = build_baseline(baseline, model)
        return cls(model, model_id=f"{model_id}:{describe(model)}", **kwargs)

    @property
    def is_sentence_transformer(self) -> bool:
        return type(self.model).__name__ == "SentenceTransformer"

    @property
    def embedding_dim(self) -> int | None:
        """The model's full embedding size (its config's, or a SentenceTransformer's), None where it does not say."""
        dim = getattr(getattr(self.model, "config", None), "embedding_dim", None)
        if dim is None and hasattr(self.model, "get_embedding_dimension"):
            dim = self.model.get_embedding_dimension()
        return int(dim) if dim else None

    @property
    def applies_instructions(self) -> bool:
        """Whether the task instructions reach the model (never for a plain SentenceTransformer)."""
        return self.use_instructions and not self.is_sentence_transformer

    def prompt(self, instruction: str | None) -> str:
        """The prompt put in front of every text of a request with this instruction (None: a document)."""
        if not self.use_instructions:
            return ""
        if self.is_sentence_transformer:
            prompts, default = self.model.prompts or {}, self.model.default_prompt_name
            names = ST_PROMPT_NAMES["query" if instruction else "document"]
            return next((prompts[n] for n in names if prompts.get(n)), prompts.get(default, "") if default else "")
        config = getattr(self.model, "config", None)
        return config.query_prompt(instruction) if instruction and hasattr(config, "query_prompt") else ""

    def embed(self, texts: list[str], instruction: str | None = None, desc: str = "") -> np.ndarray:
        """Embeddings (float32, one row per text; the first `truncate_dim` dimensions if set), from the cache when
        this exact request was made before."""
        prompt = self.prompt(instruction)
        config = getattr(self.model, "config", None)
        max_length = getattr(config, "decoder_max_length", None) or getattr(self.model, "max_seq_length", None)
        key = embedding_key(self.model_id, texts, prompt=prompt, dtype=self.dtype, max_length=max_length or None)
        emb = self.cache.get(key)
        if emb is None:
            self.encode_calls += 1
            if desc and self.show_progress_bar:
                print(f"embedding {len(texts)} texts: {desc}", file=sys.stderr)
            dtype = DTYPES[self.dtype]
            if self.is_sentence_transformer:  # prompt="" (not None): no default prompt on top of ours
                with torch.autocast(self.model.device.type, dtype=dtype, enabled=dtype != torch.float32):
                    emb = self.model.encode(
                        texts, prompt=prompt, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar
                    )
            else:
                progress = self.show_progress_bar and len(texts) > self.batch_size
                emb = self.model.encode(
                    texts, prompt=prompt or None, batch_size=self.batch_size, show_progress_bar=progress, dtype=dtype
                )
            emb = np.asarray(emb, dtype=np.float32)
            self.cache.put(key, emb)
        if self.truncate_dim is not None and self.truncate_dim > emb.shape[1]:
            raise ValueError(f"truncate_dim {self.truncate_dim} is larger than the embeddings ({emb.shape[1]})")
        return emb if self.truncate_dim is None else np.ascontiguousarray(emb[:, : self.truncate_dim])
