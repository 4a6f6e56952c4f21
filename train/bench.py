"""`python -m train bench`: training throughput and peak memory of a config's model, per setting.

Each setting (fp32 / bf16, gradient checkpointing, cached loss) runs in its own process, so peak RSS
(`ru_maxrss`) is that setting's own; on CUDA it reports `torch.cuda.max_memory_allocated` instead.
One warm-up step, then `--steps` timed steps of `train fit`'s trainer on real batches (batch loading included).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

SETTINGS: dict[str, list[str]] = {
    "fp32": ["dtype=fp32"],
    "bf16": ["dtype=bf16"],
    "fp32+ckpt": ["dtype=fp32", "gradient_checkpointing=true"],
    "bf16+ckpt": ["dtype=bf16", "gradient_checkpointing=true"],
    "bf16+cached": ["dtype=bf16", "cached_chunk_size=4"],
    "bf16+ckpt+cached": ["dtype=bf16", "gradient_checkpointing=true", "cached_chunk_size=4"],
}


def throughput(records: list[dict], batch_size: int) -> dict[str, float]:
    """Pairs/s, decoder tokens/s and seconds per step over `metrics.jsonl` records (each step's time is its batch
    over its pairs/s), weighted by time as a run of those steps would be."""
    seconds = [batch_size / m["pairs_per_s"] for m in records]
    tokens = sum(m["tokens_per_s"] * t for m, t in zip(records, seconds, strict=True))
    return {
        "pairs_per_s": batch_size * len(records) / sum(seconds),
        "tokens_per_s": tokens / sum(seconds),
        "s_per_step": sum(seconds) / len(records),
    }


def peak_memory() -> tuple[float, str]:
    """This process's peak memory in MiB and what was measured: `torch.cuda.max_memory_allocated` on CUDA, else the
    peak resident set size (`ru_maxrss`, KiB on Linux)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_rss"


def run_one(config: str, overrides: list[str], steps: int) -> dict:
    """Time `steps` steps (after one warm-up) of `train fit` in this process: the Trainer's whole step
    (batch loading, forward, backward, clip, update) from its `metrics.jsonl`, nothing saved before the last."""
    import tempfile

    from train.config import load_config
    from train.export import read_metrics
    from train.fit import build_trainer

    cfg = load_config(config, [*overrides, f"steps={steps + 1}", f"save_every={steps + 1}", "keep_checkpoints=1"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = build_trainer(cfg, Path(tmp))
        trainer.train()
        lines = read_metrics(Path(tmp) / "metrics.jsonl")[1:]  # step 1 warms up
    peak, memory = peak_memory()
    return {
        **throughput(lines, cfg.batch_size),
        "peak_mib": peak,
        "memory": memory,
        "last_loss": lines[-1]["loss"],
    }


def main(args: argparse.Namespace) -> int:
    common = [f"batch_size={args.batch_size}", *args.set]
    if args.only:
        print(json.dumps(run_one(args.config, [*common, *SETTINGS[args.only]], args.steps)))
        return 0
    from causal2vec import REPO_ROOT

    results = {}
    print(f"{'setting':<26} {'pairs/s':>8} {'tokens/s':>9} {'s/step':>7} {'peak MiB':>9}", flush=True)
    for name in args.settings or SETTINGS:
        cmd = [sys.executable, "-m", "train", "bench", "--only", name, "--config", args.config]
        cmd += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
        cmd += [a for s in args.set for a in ("--set", s)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
        if proc.returncode != 0:
            print(f"{name:<26} failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        r = results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        row = f"{r['pairs_per_s']:>8.2f} {r['tokens_per_s']:>9.1f} {r['s_per_step']:>7.2f} {r['peak_mib']:>9.0f}"
        print(f"{name:<26} {row}", flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"config": args.config, "batch_size": args.batch_size, "steps": args.steps, "overrides": args.set}
    out.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
