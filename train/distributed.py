"""Everything that touches torch.distributed: joining the process group, rank and world size, barriers, the mean
over ranks and the gather with gradients. Each is a no-op (or the identity) on one process."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn


def setup_distributed() -> tuple[int, int, torch.device]:
    """Join the process group when launched by torchrun / accelerate launch; (rank, world size, device)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, size = world()
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return rank, size, device


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def finish() -> None:
    """Wait for every rank, then leave the process group."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def reduce(x: torch.Tensor, op: str = "mean") -> torch.Tensor:
    """The sum (`op="sum"`) or mean of `x` over ranks (a copy; `x` itself on one process)."""
    if world()[1] == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / dist.get_world_size() if op == "mean" else x


def gather(x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Concatenate the rows of `x` from all ranks (rank order, sizes may differ), keeping gradients: the backward
    of torch.distributed.nn's all_gather sums each rank's gradients into the rows it sent.

    Returns the gathered tensor and each rank's row count.
    """
    _, size = world()
    if size == 1:
        return x, [x.shape[0]]
    counts = torch.tensor([x.shape[0]], device=x.device)
    all_counts = [torch.zeros_like(counts) for _ in range(size)]
    dist.all_gather(all_counts, counts)
    sizes = [int(c) for c in all_counts]
    if max(sizes) == 0:
        return x, sizes
    padded = torch.cat([x, x.new_zeros(max(sizes) - x.shape[0], *x.shape[1:])])  # all_gather needs equal shapes
    parts = dist_nn.all_gather(padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]), sizes
