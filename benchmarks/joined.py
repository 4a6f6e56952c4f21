"""What a concatenation of embeddings could score: each part alone and all parts joined (each scaled to unit length,
then concatenated) on dev-battery tasks, through the battery's sizes, instructions and embedding cache.

A part is `KIND=FOLDER`: a half of a Causal2Vec checkpoint's embedding (`C`, `EOS`) or the whole of it (`concat`),
or the checkpoint embedded as a baseline (`eos`, `mean`, `echo`, `bidirectional`, `encoder`, ...). It asks, for
instance, how far an EOS half as good as echo would lift C on MR:

    python -m benchmarks.joined --tasks mr --part C=runs/default/model --part echo=runs/default-init

Joining unit-length parts gives each the same weight in every cosine, so the joined cosine is the parts' mean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.halves import split_views
from causal2vec.baselines import BASELINES
from evaluation.cache import DEFAULT_CACHE
from evaluation.data import DEFAULT_DATA
from evaluation.embedder import Embedder
from evaluation.metrics import normalize
from evaluation.tasks import DEV_BATTERY, TASKS, run_task

HALVES = ("concat", "C", "EOS")


def parse_part(spec: str) -> tuple[str, str]:
    """`KIND=FOLDER` -> (kind, folder), the kind a half of the checkpoint's embedding or a baseline name."""
    kind, sep, folder = spec.partition("=")
    if not sep or not folder:
        raise ValueError(f"part {spec!r}: expected KIND=FOLDER, e.g. C=runs/default/model")
    if kind not in HALVES and kind not in BASELINES:
        raise ValueError(f"part {spec!r}: unknown kind {kind!r}; expected one of {', '.join(HALVES + BASELINES)}")
    return kind, folder


class PartEmbedder(Embedder):
    """The battery's embedder for one part: a view of a Causal2Vec checkpoint or a baseline built from it."""

    def __init__(self, kind: str, folder: str, cache_dir: Path):
        baseline = None if kind in HALVES else kind
        base = Embedder.from_path(folder, baseline=baseline, cache_dir=cache_dir, dtype="bf16", show_progress_bar=False)
        super().__init__(base.model, base.model_id, cache_dir=cache_dir, dtype=base.dtype, batch_size=base.batch_size)
        self.kind, self.base = kind, base

    def embed(self, texts: list[str], instruction: str | None = None, desc: str = "") -> np.ndarray:
        emb = self.base.embed(texts, instruction, desc)
        return split_views(emb, self.model)[self.kind] if self.kind in HALVES else emb


class JoinedEmbedder(Embedder):
    """The parts' embeddings, each scaled to unit length, side by side."""

    def __init__(self, parts: list[PartEmbedder]):
        first = parts[0]
        super().__init__(first.model, "joined", cache_dir=first.cache.folder, dtype=first.dtype)
        self.parts = parts

    def embed(self, texts: list[str], instruction: str | None = None, desc: str = "") -> np.ndarray:
        return np.concatenate([normalize(p.embed(texts, instruction, desc)) for p in self.parts], axis=1)


def score(embedder: Embedder, task: str, data: Path, instructions: dict[str, str]) -> float:
    """The battery's main score (x100) of `task` for `embedder`."""
    limit, corpus = DEV_BATTERY[task]
    result = run_task(TASKS[task], embedder, data, instructions, limit, corpus, 0)
    return 100 * next(iter(result["scores"].values()))[0]["main_score"]


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", action="append", required=True, help="KIND=FOLDER; give two or more")
    parser.add_argument("--tasks", nargs="+", choices=list(DEV_BATTERY), default=["mr"])
    parser.add_argument("--eval-data", type=Path, default=DEFAULT_DATA, help="data root of the tasks")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embedding cache")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        specs = [parse_part(s) for s in args.part]
    except ValueError as e:
        parser.error(str(e))
    if len(specs) < 2:
        parser.error("give two or more --part to join")

    import torch

    from causal2vec.instructions import load_instructions

    torch.set_num_threads(args.threads)
    instructions = load_instructions()
    parts = [PartEmbedder(kind, folder, args.cache) for kind, folder in specs]
    rows = {**{spec: p for spec, p in zip(args.part, parts, strict=True)}, "joined": JoinedEmbedder(parts)}
    results: dict[str, dict[str, float]] = {}
    for name, embedder in rows.items():
        results[name] = {t: score(embedder, t, args.eval_data, instructions) for t in args.tasks}
        print(f"{name}: " + "  ".join(f"{t} {v:.2f}" for t, v in results[name].items()), flush=True)
    print(json.dumps({"results": results}))
    return results


if __name__ == "__main__":
    main()
