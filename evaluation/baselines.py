"""Moved to `causal2vec.baselines` (the model layer, beside the model): this name stays for existing callers."""

from causal2vec.baselines import BASELINES, build_baseline, full_attention_mask

__all__ = ["BASELINES", "build_baseline", "full_attention_mask"]
