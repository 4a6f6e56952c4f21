"""On-disk cache of embeddings keyed by (model, texts, instruction, dtype, max length), so reruns cost nothing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_fingerprint(folder: str | Path) -> str:
    """Identity of a checkpoint folder: name, size and mtime of its weight files plus its config files' bytes."""
    folder = Path(folder).resolve()
    parts: list[Any] = [str(folder)]
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(folder))
        if path.suffix in WEIGHT_SUFFIXES:
            stat = path.stat()
            parts.append([rel, stat.st_size, stat.st_mtime_ns])
        elif path.suffix == ".json":
            parts.append([rel, file_sha256(path)])
    return _sha(json.dumps(parts).encode())


def module_fingerprint(module: Any) -> str:
    """Identity of an in-memory torch module: a hash of its parameters and buffers (slow for large models)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def embedding_key(model_id: str, texts: list[str], **settings: Any) -> str:
    """Cache key of one embedding matrix: model identity, the exact texts and every setting that changes them."""
    payload = json.dumps({"model": model_id, "texts": _sha(json.dumps(texts).encode()), **settings}, sort_keys=True)
    return _sha(payload.encode())[:32]


class EmbeddingCache:
    """`.npy` files in one folder, one per key; `hits` and `misses` count lookups."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> np.ndarray | None:
        if self.folder is None:
            self.misses += 1
            return None
        path = self.folder / f"{key}.npy"
        if path.is_file():
            self.hits += 1
            return np.load(path)
        self.misses += 1
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{key}.{os.getpid()}.tmp.npy"
        np.save(tmp, value)
        os.replace(tmp, self.folder / f"{key}.npy")
