"""On-disk cache of embeddings keyed by (model, texts, instruction, dtype, max length), so reruns cost nothing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from causal2vec import REPO_ROOT
from hub_causal2vec import CARD_FILE

# Bump when a change to evaluation/ changes the embeddings it makes (layouts, prompts, pooling): old cache
# entries are then never read again.
CACHE_VERSION = 2
DEFAULT_CACHE = REPO_ROOT / "runs" / "eval-cache"  # `--cache` of every CLI
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx")
# config, code and tokenizer files: hashed by content (up to SMALL_FILE bytes; larger ones by size and mtime); other
# files (plots, logs, YAML training records) never change embeddings
CONTENT_SUFFIXES = (".json", ".py", ".txt", ".model", ".vocab", ".tiktoken", ".spm", ".bpe")
SMALL_FILE = 64 << 20
IGNORED = (CARD_FILE,)  # the model card: rewritten by `run --card`


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_fingerprint(folder: str | Path) -> str:
    """Identity of a checkpoint folder: its path, the size and mtime of its weight files, and the bytes of its
    config, code (`*.py`, the remote code that runs) and tokenizer files (vocab, merges, sentencepiece)."""
    folder = Path(folder).resolve()
    parts: list[Any] = [str(folder)]
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or path.name in IGNORED or any(p.startswith(".") for p in rel.parts):
            continue
        stat = path.stat()
        if path.suffix in WEIGHT_SUFFIXES or (path.suffix in CONTENT_SUFFIXES and stat.st_size > SMALL_FILE):
            parts.append([str(rel), stat.st_size, stat.st_mtime_ns])
        elif path.suffix in CONTENT_SUFFIXES or "vocab" in path.name or "merges" in path.name:
            parts.append([str(rel), file_sha256(path)])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def module_fingerprint(module: Any) -> str:
    """Identity of an in-memory torch module: a hash of its parameters and buffers (slow for large models)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def embedding_key(model_id: str, texts: list[str], **settings: Any) -> str:
    """Cache key of one embedding matrix: model identity, the exact texts, every setting that changes them and
    the evaluation code's `CACHE_VERSION`."""
    texts_sha = hashlib.sha256(json.dumps(texts).encode()).hexdigest()
    payload = {"version": CACHE_VERSION, "model": model_id, "texts": texts_sha, **settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


class EmbeddingCache:
    """`.npy` files in one folder (None: nothing kept), one per key; `hits` and `misses` count lookups."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None
        self.hits = self.misses = 0

    def get(self, key: str) -> np.ndarray | None:
        path = self.folder / f"{key}.npy" if self.folder is not None else None
        if path is None or not path.is_file():
            self.misses += 1
            return None
        self.hits += 1
        return np.load(path)

    def put(self, key: str, value: np.ndarray) -> None:
        if self.folder is not None:  # written whole, then renamed: a reader never sees half a file
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.{os.getpid()}.tmp.npy"
            np.save(tmp, value)
            os.replace(tmp, self.folder / f"{key}.npy")
