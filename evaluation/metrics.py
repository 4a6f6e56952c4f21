"""What the benchmarks score their own vectors with: the battery's STS metric (mteb's `cosine_spearman`)."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def sts_scores(emb1: np.ndarray, emb2: np.ndarray, gold: list[float]) -> dict[str, float]:
    """Spearman and Pearson of pairwise cosine similarity against the gold scores, as mteb's STS evaluator
    computes its `cosine_spearman` / `cosine_pearson` (tested equal to it)."""
    cos = (normalize(emb1) * normalize(emb2)).sum(1)
    return {
        "cosine_spearman": float(spearmanr(cos, gold).statistic),
        "cosine_pearson": float(pearsonr(cos, gold).statistic),
    }
