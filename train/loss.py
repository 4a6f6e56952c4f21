"""InfoNCE over in-batch positives and hard negatives, gathered across ranks, plain or cached (GradCache).

Each rank embeds its shard of the batch. Documents (positives, then hard negatives) of all ranks are gathered
*with gradients*; each rank's loss is the mean over its own queries. DDP averages gradients over ranks, and
the gather's backward sums the documents' gradients over ranks, so the update equals that of one process
computing the mean loss over the whole batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from train.config import TrainConfig
from train.data import Batch
from train.distributed import gather, world


def info_nce(
    queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean InfoNCE of this rank's queries against all ranks' positives and hard negatives (cosine / temperature).

    Query i of rank r matches the positive at its global index; every other document is a negative.
    """
    rank, _ = world()
    all_pos, sizes = gather(positives)
    all_neg, _ = gather(negatives)
    docs = F.normalize(torch.cat([all_pos, all_neg]).float(), dim=-1)
    q = F.normalize(queries.float(), dim=-1)
    labels = torch.arange(queries.shape[0], device=q.device) + sum(sizes[:rank])
    return F.cross_entropy(q @ docs.T / temperature, labels)


def contrastive_loss(emb: torch.Tensor, nq: int, npos: int, temperature: float, half_weight: float = 0.0):
    """InfoNCE of the embeddings `emb` = queries, positives, hard negatives (in that order). `half_weight` > 0
    adds that weight times the mean InfoNCE of each half of the vectors on its own (`pooling="contextual_eos"`:
    C's and EOS's last states), so that neither half can leave the work to the other."""
    parts = (emb[:nq], emb[nq : nq + npos], emb[nq + npos :])
    loss = info_nce(*parts, temperature)
    if half_weight:
        half = emb.shape[1] // 2
        halves = [info_nce(*(x[:, sl] for x in parts), temperature) for sl in (slice(0, half), slice(half, None))]
        loss = loss + half_weight * (halves[0] + halves[1]) / 2
    return loss


def embed(model: nn.Module, tokenizer: Callable, texts: Sequence[str], autocast: Callable) -> tuple[torch.Tensor, int]:
    """Embeddings (fp32) of `texts` and their number of decoder tokens."""
    inputs = tokenizer(list(texts), return_tensors="pt").to(next(model.parameters()).device)
    with autocast():
        emb = model(**inputs).sentence_embedding
    return emb.float(), int(inputs["attention_mask"].sum())


def _texts(batch: Batch) -> tuple[list[str], int, int]:
    return batch.queries + batch.positives + batch.flat_negatives, len(batch.queries), len(batch.positives)


def plain_step(
    model: nn.Module,
    tokenizer: Callable,
    batch: Batch,
    temperature: float,
    autocast: Callable,
    half_weight: float = 0.0,
):
    """Embed the shard in one forward, compute the loss and backpropagate. Returns (loss, tokens)."""
    texts, nq, npos = _texts(batch)
    emb, tokens = embed(model, tokenizer, texts, autocast)
    loss = contrastive_loss(emb, nq, npos, temperature, half_weight)
    loss.backward()
    return loss.detach(), tokens


class _RngState:
    """The CPU (and CUDA) RNG state, so a chunk's re-forward draws the same dropout masks."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def cached_step(
    model: nn.Module,
    tokenizer: Callable,
    batch: Batch,
    temperature: float,
    autocast: Callable,
    chunk_size: int,
    half_weight: float = 0.0,
):
    """GradCache: embed chunks without grad, backprop the loss to the cached embeddings, then re-embed each chunk
    with grad (same RNG state as its first pass) and backprop the cached gradients. Memory ~ one chunk.

    Under DDP (`model.no_sync`), gradients are synchronised on the last chunk's backward only.
    """
    texts, nq, npos = _texts(batch)
    chunks = [texts[i : i + chunk_size] for i in range(0, len(texts), chunk_size)]
    states, cached, tokens = [], [], 0
    with torch.no_grad():
        for chunk in chunks:
            states.append(_RngState())
            emb, n = embed(model, tokenizer, chunk, autocast)
            cached.append(emb)
            tokens += n
    after = _RngState()
    emb = torch.cat(cached).requires_grad_()
    loss = contrastive_loss(emb, nq, npos, temperature, half_weight)
    loss.backward()
    grads = emb.grad.split([len(c) for c in chunks])
    no_sync = getattr(model, "no_sync", contextlib.nullcontext)
    for i, (chunk, state, grad) in enumerate(zip(chunks, states, grads, strict=True)):
        state.restore()
        with no_sync() if i < len(chunks) - 1 else contextlib.nullcontext():
            again, _ = embed(model, tokenizer, chunk, autocast)
            again.backward(grad)
    after.restore()
    return loss.detach(), tokens


def check_half_loss(cfg: TrainConfig, pooling: str | None) -> None:
    """`half_loss_weight` > 0 splits the vectors into C's and EOS's halves: only `pooling="contextual_eos"` of a
    Causal2Vec model (not a baseline) has them."""
    if cfg.half_loss_weight and (cfg.baseline is not None or pooling != "contextual_eos"):
        raise ValueError(
            f"half_loss_weight={cfg.half_loss_weight} needs a Causal2Vec model with pooling contextual_eos, "
            f"got {'baseline ' + cfg.baseline if cfg.baseline else 'pooling ' + str(pooling)}"
        )


def step_function(cfg: TrainConfig, pooling: str | None) -> Callable:
    """The training step `cfg` asks for: GradCache when `cached_chunk_size` > 0, the half losses when
    `half_loss_weight` > 0 (only for `pooling="contextual_eos"`, whose vectors are C's and EOS's states)."""
    check_half_loss(cfg, pooling)
    if cfg.cached_chunk_size:
        return partial(cached_step, chunk_size=cfg.cached_chunk_size, half_weight=cfg.half_loss_weight)
    return partial(plain_step, half_weight=cfg.half_loss_weight)
