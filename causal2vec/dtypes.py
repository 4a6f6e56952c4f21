"""`DTYPES`: the dtype names of the command lines and configs -> torch dtypes (its own module, so that
`causal2vec`'s paths import without torch)."""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
