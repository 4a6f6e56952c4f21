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
from safetensors.torch import save_file
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from train.build import check_output, prepare_output
from train.config import RESUME_SAFE_KEYS, resume_conflicts

TRAINABLE = "trainable.safetensors"  # a checkpoint's trainable parameters, by name
COMPLETE = "trainer_state.json"  # the Trainer writes it last: a checkpoint folder without it was cut short


def trainable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters of `model` that train, by name, as whole tensors: FSDP2's shards (DTensors) are gathered, so
    under FSDP every process calls it; only these are gathered, never the frozen base."""
    params = ((n, p) for n, p in model.named_parameters() if p.requires_grad)
    return {n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().contiguous() for n, p in params}


def save_trainable(model: nn.Module, folder: Path, weights: dict[str, torch.Tensor] | None = None) -> None:
    """The parameters that train (`weights`, or `model`'s own), into `folder/trainable.safetensors`: what a
    checkpoint needs of the model."""
    save_file(trainable_weights(model) if weights is None else weights, folder / TRAINABLE)


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


def load_fsdp_optimizer(accelerator: Any, optimizer: Any, model: nn.Module, folder: Path) -> None:
    """accelerate's `load_fsdp_optimizer` (FSDP2; full or sharded state dicts, as it saved them) without its
    strictness: a checkpoint of the connector-only steps holds no state for the other parts (their gradients were
    dropped), which a strict load refuses. Parameters with no saved state get FSDP's initial one."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    plugin = accelerator.state.fsdp_plugin
    full = "FULL_STATE_DICT" in str(plugin.state_dict_type)
    options = StateDictOptions(
        full_state_dict=full,
        cpu_offload=getattr(plugin.state_dict_config, "offload_to_cpu", False),
        broadcast_from_rank0=getattr(plugin.state_dict_config, "rank0_only", False),
        strict=False,
    )
    accelerator.wait_for_everyone()
    if full:
        rank0_only = getattr(plugin.optim_state_dict_config, "rank0_only", False)
        reads = accelerator.process_index == 0 or not rank0_only
        state = torch.load(folder / "optimizer.bin", weights_only=True) if reads else None
    else:
        state = {"optimizer": get_optimizer_state_dict(model, optimizer, options=options)}
        planner = dcp.default_planner.DefaultLoadPlanner(allow_partial_load=True)
        dcp.load(state, storage_reader=dcp.FileSystemReader(folder / "optimizer_0"), planner=planner)
        state = state["optimizer"]
    set_optimizer_state_dict(model, optimizer, state, options=options)
    accelerator.wait_for_everyone()


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
