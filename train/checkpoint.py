"""What a run folder's checkpoints are to this project: the Trainer writes `checkpoints/checkpoint-N/` (optimizer,
scheduler, RNG and data position, `trainer_state.json` last); the model part is the trainable weights only
(`trainable.safetensors`: LoRA, connector, encoder; a frozen 7B base is not copied per checkpoint). Here: saving and
loading those weights, finding the newest complete checkpoint, and the rules of `--resume` / `--overwrite`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

TRAINABLE = "trainable.safetensors"  # a checkpoint's trainable parameters, by name
COMPLETE = "trainer_state.json"  # the Trainer writes it last: a checkpoint folder without it was cut short


def trainable_weights(model: nn.Module, state_dict: dict[str, torch.Tensor] | None = None, prefix: str = "") -> dict:
    """The parameters of `model` that train, by name: its own, or taken from `state_dict` (whole tensors gathered
    by the Trainer under FSDP, where the model's own are shards; its keys are `prefix` + the model's names)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    source = dict(model.named_parameters()) if state_dict is None else {n: state_dict[prefix + n] for n in names}
    return {n: source[n].detach().contiguous() for n in names}


def save_trainable(model: nn.Module, folder: Path, state_dict: dict | None = None, prefix: str = "") -> None:
    """The parameters that train, into `folder/trainable.safetensors`: what a checkpoint needs of the model."""
    save_file(trainable_weights(model, state_dict, prefix), folder / TRAINABLE)


def assign_trainable(model: nn.Module, weights: dict[str, torch.Tensor], source: object) -> None:
    """Copy `weights` (by name) into `model`'s parameters, each rank its shard where FSDP sharded them; an error
    names what does not fit (a trainable parameter missing, or a saved one the model lacks)."""
    params = dict(model.named_parameters())
    missing = sorted(n for n, p in params.items() if p.requires_grad and n not in weights)
    unknown = sorted(set(weights) - set(params))
    if missing or unknown:
        raise ValueError(f"{source} does not fit this model: missing {missing[:5]}, unexpected {unknown[:5]}")
    with torch.no_grad():
        for name, value in weights.items():
            param = params[name]
            if isinstance(param, DTensor):  # every rank holds the whole tensor and keeps its shard
                value = distribute_tensor(value.to(param.dtype), param.device_mesh, param.placements)
            param.copy_(value)


def load_trainable(model: nn.Module, folder: Path) -> None:
    """Copy `folder/trainable.safetensors` into `model` (`assign_trainable`)."""
    assign_trainable(model, load_file(folder / TRAINABLE), folder)


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def last_checkpoint(output: Path) -> Path | None:
    """The newest complete checkpoint under `output/checkpoints`: its weights there and its `trainer_state.json`
    (written last) whole; one cut short by a kill is skipped."""

    def complete(folder: Path) -> bool:
        try:
            json.loads((folder / COMPLETE).read_text())
        except (OSError, ValueError):
            return False
        return (folder / TRAINABLE).is_file()

    folder = output / "checkpoints"
    found = [p for p in folder.glob("checkpoint-*") if complete(p)] if folder.is_dir() else []
    return max(found, key=step_of, default=None)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def resume_point(cfg: Any, output: Path, resume: bool, overwrite: bool, rank: int, processes: int = 1) -> Path | None:
    """The checkpoint to resume from (None: start fresh in an emptied `output`). Every process checks, so all of
    them stop on a refusal: no checkpoint to resume, a run saved with another config (a key that changes what the
    next step computes) or by another number of processes, a non-empty `output` without `overwrite`."""
    from train.build import check_output, prepare_output
    from train.config import RESUME_SAFE_KEYS, resume_conflicts

    if overwrite and resume:
        raise ValueError("pass --resume or --overwrite, not both")
    if not resume:
        check_output(output, overwrite)
        barrier()  # every process has looked before rank 0 empties the folder
        if rank == 0:
            prepare_output(output, overwrite)
        barrier()
        return None
    ckpt = last_checkpoint(output)
    if ckpt is None:
        why = "has no complete checkpoint to resume from" if output.is_dir() else "does not exist: nothing to resume"
        if any((output / "checkpoints").glob("step-*")):
            why = "holds checkpoints of the project's former training loop (step-N), which cannot be resumed"
        raise FileNotFoundError(f"{output} {why}; run without --resume")
    saved = output / "train_config.yaml"
    if not saved.is_file():
        raise FileNotFoundError(f"{saved} is missing: the config {ckpt} was trained with is unknown; cannot resume")
    # the Trainer restores one RNG state per process and only logs a mismatch: resume as many processes as saved
    rng = sorted(p.name for p in ckpt.glob("rng_state*.pth"))
    expected = ["rng_state.pth"] if processes == 1 else sorted(f"rng_state_{i}.pth" for i in range(processes))
    if rng != expected:
        raise ValueError(f"{ckpt} was saved by another number of processes: resume with as many as saved ({len(rng)})")
    conflicts = resume_conflicts(yaml.safe_load(saved.read_text()), cfg)
    if conflicts:
        raise ValueError(
            f"{ckpt} was saved with another config; resume with the same one (only "
            f"{', '.join(sorted(RESUME_SAFE_KEYS))} may change). Differences: {'; '.join(conflicts)}"
        )
    return ckpt
