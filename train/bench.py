"""`python -m train bench`: training throughput and peak memory of a config's model, per setting.

Each setting (fp32 / bf16, gradient checkpointing, cached loss) runs in its own process, so peak RSS
(`ru_maxrss`) is that setting's own; on CUDA it reports `torch.cuda.max_memory_allocated` instead.
One warm-up step, then `--steps` timed optimizer steps on real batches.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SETTINGS: dict[str, list[str]] = {
    "fp32": ["dtype=fp32"],
    "bf16": ["dtype=bf16"],
    "fp32+ckpt": ["dtype=fp32", "gradient_checkpointing=true"],
    "bf16+ckpt": ["dtype=bf16", "gradient_checkpointing=true"],
    "bf16+cached": ["dtype=bf16", "cached_chunk_size=4"],
    "bf16+ckpt+cached": ["dtype=bf16", "gradient_checkpointing=true", "cached_chunk_size=4"],
}


def run_one(config: str, overrides: list[str], steps: int) -> dict:
    """Time `steps` optimizer steps (after one warm-up) in this process."""
    import torch

    from train.config import load_config
    from train.data import load_data
    from train.fit import autocast_factory, batch_stream, trainable_model
    from train.loss import step_function
    from train.trainable import build_optimizer, clip_gradients, training_tokenizer

    cfg = load_config(config, overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, module, _, _ = trainable_model(cfg, device)  # as `fit` builds it: baseline, LoRA, checkpointing
    optimizer, _ = build_optimizer(module, cfg)
    stream = batch_stream(cfg, model.config, load_data(cfg.data_path(), cfg.data)[0])
    autocast = autocast_factory(cfg, device)
    step_fn = step_function(cfg, getattr(model.config, "pooling", None))
    tokenizer = training_tokenizer(module, cfg)
    pairs = tokens = 0
    elapsed = 0.0
    for i in range(steps + 1):
        batch = next(stream)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, n = step_fn(module, tokenizer, batch, cfg.temperature, autocast)
        clip_gradients(optimizer.param_groups, cfg.max_grad_norm, cfg.clip == "per_part")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i > 0:  # step 0 warms up
            elapsed += time.perf_counter() - t0
            pairs, tokens = pairs + len(batch), tokens + n
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    )
    return {
        "pairs_per_s": pairs / elapsed,
        "tokens_per_s": tokens / elapsed,
        "s_per_step": elapsed / steps,
        "peak_mib": peak,
        "memory": "cuda_max_allocated" if device.type == "cuda" else "peak_rss",
        "last_loss": float(loss),
    }


def main(args: argparse.Namespace) -> int:
    common = [f"batch_size={args.batch_size}", *args.set]
    if args.only:
        print(json.dumps(run_one(args.config, [*common, *SETTINGS[args.only]], args.steps)))
        return 0
    from causal2vec import REPO_ROOT

    results = {}
    print(f"{'setting':<18} {'pairs/s':>8} {'tokens/s':>9} {'s/step':>7} {'peak MiB':>9}", flush=True)
    for name in SETTINGS:
        cmd = [sys.executable, "-m", "train", "bench", "--only", name, "--config", args.config]
        cmd += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
        cmd += [a for s in args.set for a in ("--set", s)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
        if proc.returncode != 0:
            print(f"{name:<18} failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        r = results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        row = f"{r['pairs_per_s']:>8.2f} {r['tokens_per_s']:>9.1f} {r['s_per_step']:>7.2f} {r['peak_mib']:>9.0f}"
        print(f"{name:<18} {row}", flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"config": args.config, "batch_size": args.batch_size, "steps": args.steps, "overrides": args.set}
    out.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
