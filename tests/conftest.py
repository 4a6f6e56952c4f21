from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the model files sit at the repo root, as in a Hub repo
    sys.path.insert(0, str(ROOT))

TEXTS = [
    "A man is playing a guitar on stage.",
    "The cat sleeps.",
    "Stock markets fell sharply on Monday after the central bank raised interest rates again.",
    "x",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
]


@pytest.fixture
def tiny():
    """A tiny random llama + bert Causal2Vec model with the real default tokenizers."""
    from train.build import build_random

    return build_random()
