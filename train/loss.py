"""InfoNCE over in-batch positives and hard negatives (cosine / temperature), gathered across processes:
sentence-transformers' ranking losses, cached (GradCache) when `cached_chunk_size` > 0, plus the per-half term."""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer import losses
from torch import nn

from train.config import TrainConfig


def check_prefix_terms(cfg: TrainConfig, pooling: str | None, dim: int) -> None:
    """`half_loss_weight` > 0 splits the vectors into C's and EOS's halves: only `pooling="contextual_eos"` of a
    Causal2Vec model (not a baseline) has them. `matryoshka_dims` must be prefixes of the `dim`-wide vectors."""
    if cfg.half_loss_weight and (cfg.baseline is not None or pooling != "contextual_eos"):
        raise ValueError(
            f"half_loss_weight={cfg.half_loss_weight} needs a Causal2Vec model with pooling contextual_eos, "
            f"got {'baseline ' + cfg.baseline if cfg.baseline else 'pooling ' + str(pooling)}"
        )
    if too_wide := [d for d in cfg.matryoshka_dims if d >= dim]:
        raise ValueError(f"matryoshka_dims {too_wide}: each must be below the embedding size ({dim}), always kept")


class CachedInfoNCE(losses.CachedMultipleNegativesRankingLoss):
    """GradCache's ranking loss plus `half_weight` times the mean of each half's alone, on the cached embeddings
    (as sentence-transformers' MatryoshkaLoss decorates `calculate_loss`): the halves' gradients reach the cached
    embeddings, and through them the chunks' re-embedding, like the full loss's."""

    def __init__(self, model: SentenceTransformer, half_weight: float, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.half_weight = half_weight

    def calculate_loss(self, reps: list[list[torch.Tensor]], labels: Any = None, *, with_backward: bool = False) -> Any:
        loss = super().calculate_loss(reps, labels, with_backward=with_backward)
        if not self.half_weight:
            return loss
        half = reps[0][0].shape[1] // 2
        for part in (slice(0, half), slice(half, None)):
            columns = [[r[:, part] for r in column] for column in reps]
            term = super().calculate_loss(columns, labels) * self.half_weight / 2
            if with_backward:
                term.backward()
                term = term.detach()
            loss = loss + term
        return loss


class InfoNCE(nn.Module):
    """InfoNCE over in-batch positives and hard negatives (cosine / temperature), gathered across processes:
    sentence-transformers' ranking loss, cached (GradCache) when `cached_chunk_size` > 0; `half_loss_weight` adds
    that weight times the mean InfoNCE of each half of the vectors alone (C's and EOS's states); `matryoshka_dims`
    adds the loss of each of those prefixes (sentence-transformers' `MatryoshkaLoss`, the full vector kept at weight
    1). Counts the decoder tokens it sees, for `metrics.jsonl`."""

    def __init__(self, model: SentenceTransformer, cfg: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.half_weight = cfg.half_loss_weight
        self.tokens = 0  # since MetricsFile last read it
        self.sources: list[str | None] = []  # each micro-batch's file since the last metrics line (the trainer's)
        kwargs = {"scale": 1.0 / cfg.temperature, "gather_across_devices": True}
        if cfg.cached_chunk_size:
            self.inner = CachedInfoNCE(model, cfg.half_loss_weight, mini_batch_size=cfg.cached_chunk_size, **kwargs)
        else:
            self.inner = losses.MultipleNegativesRankingLoss(model, **kwargs)
        if cfg.matryoshka_dims:  # the full vector first, so its term is the plain loss
            dims = [model.get_embedding_dimension(), *cfg.matryoshka_dims]
            self.inner = losses.MatryoshkaLoss(model, self.inner, dims)

    def forward(self, sentence_features: list[dict[str, Any]], labels: Any) -> torch.Tensor:
        self.tokens += sum(int(f["attention_mask"].sum()) for f in sentence_features)
        if not self.half_weight or isinstance(self.inner, CachedInfoNCE):  # the cached loss adds the halves itself
            return self.inner(sentence_features, labels)
        embeddings = embed_columns(self.model, sentence_features)
        loss = self.inner.compute_loss_from_embeddings(embeddings, labels)
        half = embeddings[0].shape[1] // 2
        halves = [
            self.inner.compute_loss_from_embeddings([e[:, part] for e in embeddings], labels)
            for part in (slice(0, half), slice(half, None))
        ]
        return loss + self.half_weight * (halves[0] + halves[1]) / 2
