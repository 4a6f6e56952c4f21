"""`python -m train fit`: contrastive fine-tuning of a Causal2Vec model, on one process or under torchrun (DDP).

Output folder: `train_config.yaml`, `metrics.jsonl` (one line per step), `checkpoints/step-N/`, and `model/`,
the exported Hub-ready model.
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from causal2vec.dtypes import DTYPES
from train.build import build
from train.checkpoint import (
    checkpoints,
    load_checkpoint,
    nothing_to_resume,
    refuse_other_config,
    save_checkpoint,
    start_fresh,
)
from train.config import TrainConfig
from train.data import BatchStream, load_data
from train.distributed import finish, reduce, setup_distributed
from train.export import export, merge_lora, read_metrics, truncate_metrics
from train.loss import step_function
from train.trainable import (
    TrainingDiverged,
    all_finite,
    build_optimizer,
    clip_step,
    set_trainable,
    training_tokenizer,
)

logger = logging.getLogger("train")


def wrap_baseline(model: nn.Module, name: str | None) -> nn.Module:
    """`causal2vec.baselines.build_baseline(name, model)` (sharing the model's parts), or the model itself."""
    if not name:
        return model
    from causal2vec.baselines import build_baseline

    return build_baseline(name, model)


def _resume_point(output: Path, cfg: TrainConfig, resume: bool, overwrite: bool, rank: int) -> Path | None:
    """The checkpoint to resume from (None: start fresh in an emptied `output`). Every rank checks, so all of them
    stop on a refusal: no checkpoint to resume, a checkpoint saved with another config, a non-empty `output`."""
    if resume:
        found = checkpoints(output)
        if not found:
            raise nothing_to_resume(output)
        saved = torch.load(found[-1] / "state.pt", map_location="cpu", weights_only=False, mmap=True).get("config")
        refuse_other_config(found[-1], saved, cfg)
        return found[-1]
    start_fresh(output, overwrite, rank)
    return None


def _diverged(output: Path, what: str, bar: tqdm) -> TrainingDiverged:
    bar.close()
    last = checkpoints(output)
    return TrainingDiverged(f"{what}; stopped without saving it. Last checkpoint: {last[-1] if last else 'none'}")


def trainable_model(cfg: TrainConfig, device: torch.device) -> tuple[nn.Module, nn.Module, Any, list[str]]:
    """The Causal2Vec model, the module that trains (it or a baseline around it), the peft model (or None) and the
    base model names, with the trainable parameters set, on `device` in train mode."""
    model, bases = build(cfg)
    torch.manual_seed(cfg.seed)  # LoRA init: the same on every rank
    module = wrap_baseline(model, cfg.baseline)
    peft_model = set_trainable(module, cfg)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    module.to(device).train()
    return model, module, peft_model, bases


def batch_stream(cfg: TrainConfig, config: Any, files: dict[str, list]) -> BatchStream:
    """The seeded batch stream over `files`, with the model config's query and document prompts."""
    return BatchStream(files, cfg.batch_size, cfg.hard_negatives, cfg.seed, config.query_prompt, config.document_prompt)


def autocast_factory(cfg: TrainConfig, device: torch.device) -> Any:
    """A new autocast context per call, in the config's dtype (none for fp32)."""
    return partial(torch.autocast, device.type, dtype=DTYPES[cfg.dtype], enabled=cfg.dtype != "fp32")


def fit(cfg: TrainConfig, output: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Train per `cfg`, write checkpoints and metrics under `output`, export to `output/model`; returns that."""
    t_start = time.perf_counter()
    if overwrite and resume:
        raise ValueError("pass --resume or --overwrite, not both")
    rank, size, device = setup_distributed()
    output = Path(output)
    if cfg.batch_size % size:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({size})")
    ckpt = _resume_point(output, cfg, resume, overwrite, rank)

    model, module, peft_model, bases = trainable_model(cfg, device)
    optimizer, scheduler = build_optimizer(module, cfg)
    files, labels = load_data(cfg.data_path(), cfg.data)
    stream = batch_stream(cfg, model.config, files)
    if rank == 0:
        counts = {name: len(rows) for name, rows in files.items()}
        logger.info("data %s: %s rows; %d batches an epoch", cfg.data_path(), counts, stream.batches_per_epoch)
    metrics_path, start, train_time, wall_before = output / "metrics.jsonl", 0, 0.0, 0.0
    torch.manual_seed(cfg.seed + rank)  # dropout: distinct per rank
    if ckpt is not None:
        state = load_checkpoint(ckpt, module, optimizer, scheduler, rank)
        stream.load_state_dict(state["data"])
        start, train_time = state["step"], state.get("elapsed", 0.0)
        wall_before = state.get("wall_time", train_time)  # older checkpoints kept only the step-time sum
        if rank == 0:
            truncate_metrics(metrics_path, start)
            logger.info("resuming from %s", ckpt)
    elif rank == 0:
        (output / "train_config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    def wall_time() -> float:  # since the first run started, over all resumes
        return wall_before + time.perf_counter() - t_start

    net = module
    if size > 1:
        net = nn.parallel.DistributedDataParallel(module, find_unused_parameters=cfg.baseline is not None)
    autocast = autocast_factory(cfg, device)
    step_fn = step_function(cfg, getattr(model.config, "pooling", None))
    params = [p for p in module.parameters() if p.requires_grad]
    tokenizer = training_tokenizer(module, cfg)
    if rank == 0:
        n_train, n_all = sum(p.numel() for p in params), sum(p.numel() for p in module.parameters())
        logger.info("trainable parameters: %d of %d; %d processes", n_train, n_all, size)

    bar = tqdm(total=cfg.steps, initial=start, disable=rank != 0, desc="fit", dynamic_ncols=True)
    for step in range(start + 1, cfg.steps + 1):
        t0 = time.perf_counter()
        batch = next(stream)
        loss, tokens = step_fn(net, tokenizer, batch.shard(rank, size), cfg.temperature, autocast)
        loss = reduce(loss)
        grad_norm, part_norms = clip_step(optimizer.param_groups, cfg, step)
        if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
            what = f"loss {loss.item()} / grad norm {grad_norm.item()} at step {step} (batch from {batch.source})"
            raise _diverged(output, what + ": update not applied", bar)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if not all_finite(params):
            raise _diverged(output, f"non-finite weights after the update of step {step} ({batch.source})", bar)
        dt = time.perf_counter() - t0
        train_time += dt
        tokens = int(reduce(torch.tensor(float(tokens), device=loss.device), op="sum"))
        record = {
            "step": step,
            "loss": loss.item(),
            "grad_norm": grad_norm.item(),
            "grad_norms": part_norms,  # per part, before clipping
            "lr": {g["name"]: g["lr"] for g in optimizer.param_groups},
            "source": batch.source,
            "pairs_per_s": len(batch) / dt,
            "tokens_per_s": tokens / dt,
            "train_time_s": train_time,
            "wall_time_s": wall_time(),
        }
        if rank == 0:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            bar.update()
            if step % cfg.log_every == 0 or step == start + 1:
                lr = f"{scheduler.get_last_lr()[0]:.2e}"
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=lr, pairs_s=f"{record['pairs_per_s']:.1f}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            extra = {"elapsed": train_time, "wall_time": wall_time(), "config": cfg.to_dict()}
            save_checkpoint(
                output, step, module, optimizer, scheduler, stream.state_dict(), cfg.keep_checkpoints, extra
            )
    bar.close()

    folder = output / "model"
    if rank == 0:
        data_files = {labels[name]: len(rows) for name, rows in files.items()}
        _export(model, peft_model, cfg, bases, data_files, folder, size, train_time, wall_time())
    finish()
    return folder


def _export(
    model: nn.Module,
    peft_model: Any,
    cfg: TrainConfig,
    bases: list[str],
    data_files: dict[str, int],
    folder: Path,
    processes: int,
    train_time: float,
    wall_time: float,
) -> Path:
    """Merge LoRA and write the Hub-ready folder, its card recording the run (wall time: over all resumes, from
    the start to the export; train time: the sum of step times)."""
    metrics = read_metrics(folder.parent / "metrics.jsonl")
    merge_lora(model, peft_model)
    model.to("cpu", DTYPES[cfg.model.dtype])
    training = {
        "steps": cfg.steps,
        "wall_time_s": round(wall_time, 1),
        "train_time_s": round(train_time, 1),
        "final_loss": round(metrics[-1]["loss"], 4) if metrics else None,
        "processes": processes,
        **{k: v for k, v in cfg.to_dict().items() if k != "model"},
    }
    export(model, folder, cfg.to_dict(), bases, training=training, data_files=data_files, metrics=metrics)
    logger.info("exported %s (%d steps, %.0f s, final loss %s)", folder, cfg.steps, wall_time, training["final_loss"])
    return folder


def summary(output: Path) -> dict[str, Any]:
    """Steps, wall and train time and final loss of a finished run, from its last metrics record."""
    metrics = read_metrics(Path(output) / "metrics.jsonl")
    last = metrics[-1] if metrics else {}
    return {
        "steps": last.get("step"),
        "wall_time_s": last.get("wall_time_s"),
        "train_time_s": last.get("train_time_s", last.get("elapsed_s")),
        "final_loss": last.get("loss"),
    }
