"""The model layer beside the Hub remote code (`configuration_causal2vec.py`, `tokenization_causal2vec.py`,
`modeling_causal2vec.py`, `hub_causal2vec.py` at the repository root): what both `train/` and `evaluation/` need
and that does not ship inside a checkpoint. `train/` and `evaluation/` import this package and the remote code,
never each other.

- `baselines`: eos / mean / echo / bidirectional / incontext / encoder on a Causal2Vec model's own parts
- `parts`: the default model's pretrained parts (paths and Hub names)
- `instructions`: the task instructions, as named prompts in a checkpoint's sentence-transformers config
- `card`: the model card of a checkpoint with its training and evaluation metadata (written by `hub_causal2vec`)
- `dtypes`: `DTYPES`, dtype names of the command lines -> torch dtypes (a submodule, so that importing this
  package for its paths, as `evaluation/data.py` and `cache.py` do, does not import torch)
- `REPO_ROOT`, `SHARED_DATA`: the checkout, and the project's data beside it (`../shared/data`, read in place)
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"  # never copied into the checkout
