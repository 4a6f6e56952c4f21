"""Checkpoints: trainable weights (safetensors), optimizer, scheduler, RNG states and data position.

Layout: `OUTPUT/checkpoints/step-000050/{trainable.safetensors, state.pt}`; a checkpoint is written to a
temporary folder and renamed, so the newest complete one is always whole (and `fit` saves only finite weights).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from train.distributed import barrier, world
from train.trainable import trainable_state

TRAINABLE = "trainable.safetensors"  # a checkpoint's trainable parameters, by name (both engines)


def save_trainable(model: nn.Module, folder: Path) -> None:
    """The parameters that train, into `folder/trainable.safetensors`: what a checkpoint needs of the model."""
    save_file({k: v.contiguous() for k, v in trainable_state(model).items()}, folder / TRAINABLE)


def load_trainable(model: nn.Module, folder: Path) -> None:
    """Copy `folder/trainable.safetensors` into `model`; an error names what does not fit (a trainable parameter
    missing, or a saved one the model lacks)."""
    weights = load_file(folder / TRAINABLE)
    params = dict(model.named_parameters())
    missing = sorted(n for n, p in params.items() if p.requires_grad and n not in weights)
    unknown = sorted(set(weights) - set(params))
    if missing or unknown:
        raise ValueError(f"{folder} does not fit this model: missing {missing[:5]}, unexpected {unknown[:5]}")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


def nothing_to_resume(output: Path) -> FileNotFoundError:
    """The error of `--resume` on a folder without a complete checkpoint (or no folder at all)."""
    why = "has no complete checkpoint to resume from" if output.is_dir() else "does not exist: nothing to resume"
    return FileNotFoundError(f"{output} {why}; run without --resume")


def refuse_other_config(checkpoint: Path, saved: dict[str, Any] | None, cfg: Any) -> None:
    """Refuse to resume `checkpoint` when its run's config (`saved`; None: unknown) differs from `cfg` in a key
    that changes what the next step computes."""
    from train.config import RESUME_SAFE_KEYS, resume_conflicts

    conflicts = resume_conflicts(saved, cfg) if saved is not None else []
    if conflicts:
        raise ValueError(
            f"{checkpoint} was saved with another config; resume with the same one (only "
            f"{', '.join(sorted(RESUME_SAFE_KEYS))} may change). Differences: {'; '.join(conflicts)}"
        )


def start_fresh(output: Path, overwrite: bool, rank: int) -> None:
    """Every process checks that `output` may be written (empty, or `overwrite`); then rank 0 empties it."""
    from train.build import check_output, prepare_output

    check_output(output, overwrite)
    barrier()  # every process has looked before rank 0 empties the folder
    if rank == 0:
        prepare_output(output, overwrite)
    barrier()


def checkpoints(output: Path) -> list[Path]:
    """Complete checkpoints under `output`, oldest first."""
    folder = output / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("step-*") if (p / "state.pt").is_file() and not p.name.endswith(".tmp"))


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    output: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    data_state: dict[str, int],
    keep: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoint `step` and delete all but the newest `keep` ones. Call on every rank: each saves its RNG
    state, rank 0 the rest."""
    rank, _ = world()
    final = output / "checkpoints" / f"step-{step:06d}"
    tmp = final.with_name(final.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save(rng_state(), tmp / f"rng-{rank}.pt")
    barrier()
    if rank == 0:
        _save_main(tmp, final, step, model, optimizer, scheduler, data_state, keep, extra)
    barrier()
    return final


def _save_main(tmp, final, step, model, optimizer, scheduler, data_state, keep, extra) -> None:
    output = final.parent.parent
    save_trainable(model, tmp)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "data": data_state,
        **(extra or {}),
    }
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in checkpoints(output)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, rank: int = 0
) -> dict[str, Any]:
    """Restore a checkpoint into `model`/`optimizer`/`scheduler`; returns its state (step, data, ...)."""
    load_trainable(model, path)
    state = torch.load(path / "state.pt", weights_only=False)
    saved_groups = [len(g["params"]) for g in state["optimizer"]["param_groups"]]
    if saved_groups != [len(g["params"]) for g in optimizer.param_groups]:
        raise ValueError(f"{path}: its optimizer parameter groups differ from this version's; it cannot be resumed")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = path / f"rng-{rank}.pt"
    if not rng.is_file():
        raise FileNotFoundError(f"{rng} is missing: resume with the same number of processes as the saved run")
    set_rng_state(torch.load(rng, weights_only=False))
    return state
