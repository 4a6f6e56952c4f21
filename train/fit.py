"""`python -m train fit`: contrastive fine-tuning of a Causal2Vec model, on one process or under torchrun (DDP).

Output folder: `train_config.yaml`, `metrics.jsonl` (one line per step), `checkpoints/step-N/`, and `model/`,
the exported Hub-ready model.
"""

from __future__ import annotations

import json
import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch import nn
from tqdm.auto import tqdm

from train.build import build_model, build_random, prepare_output
from train.checkpoint import checkpoints, load_checkpoint, save_checkpoint
from train.config import TrainConfig
from train.data import BatchStream, load_files
from train.export import export, merge_lora, read_metrics
from train.loss import cached_step, plain_step
from train.trainable import build_optimizer, set_trainable

logger = logging.getLogger("train")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DEFAULT_BASES = ["HuggingFaceTB/SmolLM2-135M-Instruct", "sentence-transformers/all-MiniLM-L6-v2"]


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN/inf; the run stopped before applying that update."""


def setup_distributed() -> tuple[int, int, torch.device]:
    """Join the process group when launched by torchrun / accelerate launch; (rank, world size, device)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        rank, size = dist.get_rank(), dist.get_world_size()
    else:
        rank, size = 0, 1
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return rank, size, device


def build(cfg: TrainConfig) -> tuple[nn.Module, list[str]]:
    """The Causal2Vec model the config describes, and the names of its base models (for the card)."""
    m = cfg.model
    if m.random:
        model = build_random(m.decoder, m.encoder, seed=m.seed, **m.config)
        return model, [f"random {model.config.decoder.model_type}", f"random {model.config.encoder.model_type}"]
    model = build_model(m.decoder, m.encoder, m.gguf_file, seed=m.seed, **m.config)
    return model, [m.decoder or DEFAULT_BASES[0], m.encoder or DEFAULT_BASES[1]]


def wrap_baseline(model: nn.Module, name: str | None) -> nn.Module:
    """`evaluation.baselines.build_baseline(name, model)` (sharing the model's parts), or the model itself."""
    if not name:
        return model
    from evaluation.baselines import build_baseline

    return build_baseline(name, model)


def _mean(x: torch.Tensor, op: str = "mean") -> torch.Tensor:
    if dist.is_initialized():
        x = x.clone()
        dist.all_reduce(x)
        if op == "mean":
            x /= dist.get_world_size()
    return x


def _resume_point(output: Path, resume: bool, overwrite: bool, rank: int) -> Path | None:
    """The checkpoint to resume from (None: start fresh); refuses to reuse a non-empty output otherwise."""
    found = checkpoints(output) if resume else []
    if resume and not found and output.is_dir() and any(output.iterdir()):
        raise FileNotFoundError(f"{output} has no complete checkpoint to resume from")
    if not found and rank == 0:
        prepare_output(output, overwrite)
    if dist.is_initialized():
        dist.barrier()
    return found[-1] if found else None


def fit(cfg: TrainConfig, output: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Train per `cfg`, write checkpoints and metrics under `output`, export to `output/model`; returns that."""
    rank, size, device = setup_distributed()
    output = Path(output)
    if cfg.batch_size % size:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({size})")
    if rank == 0 and overwrite and resume:
        raise ValueError("pass --resume or --overwrite, not both")
    ckpt = _resume_point(output, resume, overwrite, rank)

    model, bases = build(cfg)
    torch.manual_seed(cfg.seed)  # LoRA init: the same on every rank
    module = wrap_baseline(model, cfg.baseline)
    peft_model = set_trainable(module, cfg)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    module.to(device).train()
    optimizer, scheduler = build_optimizer(module, cfg)
    files = load_files(cfg.data_path())
    stream = BatchStream(
        files, cfg.batch_size, cfg.hard_negatives, cfg.seed, model.config.query_prompt, cfg.document_prompt or ""
    )
    if rank == 0:
        counts = {name: len(rows) for name, rows in files.items()}
        logger.info("data %s: %s rows; %d batches an epoch", cfg.data_path(), counts, stream.batches_per_epoch)
    metrics_path, start, elapsed = output / "metrics.jsonl", 0, 0.0
    torch.manual_seed(cfg.seed + rank)  # dropout: distinct per rank
    if ckpt is not None:
        state = load_checkpoint(ckpt, module, optimizer, scheduler, rank)
        stream.load_state_dict(state["data"])
        start, elapsed = state["step"], state.get("elapsed", 0.0)
        if rank == 0:
            kept = [m for m in read_metrics(metrics_path) if m["step"] <= start]
            metrics_path.write_text("".join(json.dumps(m) + "\n" for m in kept))
            logger.info("resuming from %s", ckpt)
    elif rank == 0:
        (output / "train_config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    net = module
    if size > 1:
        net = nn.parallel.DistributedDataParallel(module, find_unused_parameters=cfg.baseline is not None)
    autocast = partial(torch.autocast, device.type, dtype=DTYPES[cfg.dtype], enabled=cfg.dtype != "fp32")
    step_fn = partial(cached_step, chunk_size=cfg.cached_chunk_size) if cfg.cached_chunk_size else plain_step
    params = [p for p in module.parameters() if p.requires_grad]
    if rank == 0:
        n_train = sum(p.numel() for p in params)
        logger.info(
            "trainable parameters: %d of %d; %d processes", n_train, sum(p.numel() for p in module.parameters()), size
        )

    bar = tqdm(total=cfg.steps, initial=start, disable=rank != 0, desc="fit", dynamic_ncols=True)
    for step in range(start + 1, cfg.steps + 1):
        t0 = time.perf_counter()
        batch = next(stream)
        loss, tokens = step_fn(net, module.tokenizer, batch.shard(rank, size), cfg.temperature, autocast)
        loss = _mean(loss)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
            bar.close()
            last = checkpoints(output)
            raise TrainingDiverged(
                f"loss {loss.item()} / grad norm {grad_norm.item()} at step {step} (batch from {batch.source}): "
                f"stopped without applying it; last good checkpoint: {last[-1] if last else 'none'}"
            )
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        elapsed += dt
        tokens = int(_mean(torch.tensor(float(tokens), device=loss.device), op="sum"))
        record = {
            "step": step,
            "loss": loss.item(),
            "grad_norm": grad_norm.item(),
            "lr": {g["name"]: g["lr"] for g in optimizer.param_groups},
            "source": batch.source,
            "pairs_per_s": len(batch) / dt,
            "tokens_per_s": tokens / dt,
            "elapsed_s": elapsed,
        }
        if rank == 0:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            bar.update()
            if step % cfg.log_every == 0 or step == start + 1:
                bar.set_postfix(
                    loss=f"{record['loss']:.4f}",
                    lr=f"{scheduler.get_last_lr()[0]:.2e}",
                    pairs_s=f"{record['pairs_per_s']:.1f}",
                )
        if step % cfg.save_every == 0 or step == cfg.steps:
            extra = {"elapsed": elapsed, "config": cfg.to_dict()}
            save_checkpoint(
                output, step, module, optimizer, scheduler, stream.state_dict(), cfg.keep_checkpoints, extra
            )
    bar.close()

    folder = output / "model"
    if rank == 0:
        metrics = read_metrics(metrics_path)
        merge_lora(model, peft_model)
        model.to("cpu")
        evaluation_file = output / "evaluation.json"
        training = {
            "steps": cfg.steps,
            "wall_time_s": round(elapsed, 1),
            "final_loss": round(metrics[-1]["loss"], 4) if metrics else None,
            "processes": size,
            **{k: v for k, v in cfg.to_dict().items() if k not in ("model",)},
        }
        export(
            model,
            folder,
            cfg.to_dict(),
            bases,
            training=training,
            data_files={f"{name}.jsonl": len(rows) for name, rows in files.items()},
            metrics=metrics,
            evaluation=json.loads(evaluation_file.read_text()) if evaluation_file.is_file() else None,
        )
        logger.info("exported %s (%d steps, %.0f s, final loss %s)", folder, cfg.steps, elapsed, training["final_loss"])
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return folder


def summary(output: Path) -> dict[str, Any]:
    """Steps, wall time and final loss of a finished run, from its metrics."""
    metrics = read_metrics(Path(output) / "metrics.jsonl")
    last = metrics[-1] if metrics else {}
    return {"steps": last.get("step"), "wall_time_s": last.get("elapsed_s"), "final_loss": last.get("loss")}
