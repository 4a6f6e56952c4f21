"""What a concatenation of embeddings could score: each part alone and all parts joined (each scaled to unit length,
then concatenated) on dev-battery tasks, through the battery's sizes, instructions and embedding cache.

A part is `KIND=FOLDER`: a view of a Causal2Vec checkpoint's embedding (`concat`, its halves `C` and `EOS`, or
`C input`, the connector's output; `benchmarks.halves`), or the checkpoint embedded as a baseline (`eos`, `mean`,
`echo`, `bidirectional`, `encoder`, ...). It asks, for instance, how far an EOS half as good as echo would lift C
on MR:

    python -m benchmarks.joined --tasks mr --part C=runs/default/model --part echo=runs/init-default

Joining unit-length parts gives each the same weight in every cosine, so the joined cosine is the parts' mean; a
classifier on the join may weigh them otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.halves import VIEWS, ViewEmbedder, battery_score
from causal2vec.baselines import BASELINES
from evaluation.cache import DEFAULT_CACHE
from evaluation.data import DEFAULT_DATA
from evaluation.embedder import Embedder, is_causal2vec_folder
from evaluation.metrics import normalize
from evaluation.tasks import DEV_BATTERY


def parse_part(spec: str) -> tuple[str, str]:
    """`KIND=FOLDER` -> (kind, folder), the kind a view of the checkpoint's embedding or a baseline name."""
    kind, sep, folder = spec.partition("=")
    if not sep or not folder:
        raise ValueError(f"part {spec!r}: expected KIND=FOLDER, e.g. C=runs/default/model")
    if kind not in VIEWS and kind not in BASELINES:
        raise ValueError(f"part {spec!r}: unknown kind {kind!r}; expected one of {', '.join(VIEWS + BASELINES)}")
    return kind, folder


def part_embedder(kind: str, folder: str, cache_dir: Path) -> Embedder:
    """The battery's embedder for one part (`parse_part`'s kind and folder)."""
    if not is_causal2vec_folder(folder):
        raise ValueError(f"part {kind}={folder}: not a Causal2Vec checkpoint folder (no causal2vec config.json)")
    baseline = None if kind in VIEWS else kind
    base = Embedder.from_path(folder, baseline=baseline, cache_dir=cache_dir, dtype="bf16", show_progress_bar=False)
    if baseline:
        return base
    if (pooling := base.model.config.pooling) != "contextual_eos":
        raise ValueError(f"part {kind}={folder}: the checkpoint pools with {pooling!r}; views need contextual_eos")
    return ViewEmbedder(base, kind)


class JoinedEmbedder(Embedder):
    """The parts' embeddings, each scaled to unit length, side by side (the parts cache their own)."""

    def __init__(self, parts: list[Embedder], names: list[str]):
        super().__init__(parts[0].model, "joined:" + "+".join(names), cache_dir=None, dtype=parts[0].dtype)
        self.parts = parts

    def embed(self, texts: list[str], instruction: str | None = None, desc: str = "") -> np.ndarray:
        return np.concatenate([normalize(p.embed(texts, instruction, desc)) for p in self.parts], axis=1)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", action="append", required=True, help="KIND=FOLDER; give two or more")
    parser.add_argument("--tasks", nargs="+", choices=list(DEV_BATTERY), default=["mr"])
    parser.add_argument("--eval-data", type=Path, default=DEFAULT_DATA, help="data root of the tasks")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embedding cache")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if len(args.part) < 2:
        parser.error("give two or more --part to join")

    import torch

    from causal2vec.instructions import load_instructions

    torch.set_num_threads(args.threads)
    try:
        parts = [part_embedder(*parse_part(spec), args.cache) for spec in args.part]
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    instructions = load_instructions()
    rows = {**dict(zip(args.part, parts, strict=True)), "joined": JoinedEmbedder(parts, args.part)}
    results: dict[str, dict[str, float]] = {}
    for name, embedder in rows.items():
        results[name] = {t: battery_score(embedder, t, args.eval_data, instructions) for t in args.tasks}
        print(f"{name}: " + "  ".join(f"{t} {v:.2f}" for t, v in results[name].items()), flush=True)
    print(json.dumps({"results": results}))
    return results


if __name__ == "__main__":
    main()
