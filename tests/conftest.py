from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from causal2vec import REPO_ROOT, SHARED_DATA
from causal2vec.assemble import TINY_DECODER

SHARED_TRAIN = SHARED_DATA / "train"

TEXTS = [
    "A man is playing a guitar on stage.",
    "The cat sleeps.",
    "Stock markets fell sharply on Monday after the central bank raised interest rates again.",
    "x",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
]

# tiny decoder configs of several families (the sizes of the tiny llama), for `build_random(decoder=...)`
SMALL_DECODER = {k: v for k, v in TINY_DECODER.items() if k != "model_type"}
DECODER_FAMILIES = {
    "llama": TINY_DECODER,
    "mistral": {"model_type": "mistral", **SMALL_DECODER},
    "qwen2": {"model_type": "qwen2", **SMALL_DECODER},
    "qwen3": {"model_type": "qwen3", "head_dim": 8, **SMALL_DECODER},
    "gemma3_text": {"model_type": "gemma3_text", "head_dim": 8, **SMALL_DECODER},
    "gemma2": {"model_type": "gemma2", "head_dim": 8, **SMALL_DECODER},
    "phi3": {"model_type": "phi3", **SMALL_DECODER},
    "gpt2": {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4},
}


@pytest.fixture(autouse=True)
def single_process(monkeypatch):
    """Tests run as one process: a launcher's variables inherited by pytest (torchrun's WORLD_SIZE, RANK, ...)
    would make an in-process `fit` join a process group. Tests of several processes launch their own. accelerate
    writes its FSDP / DeepSpeed switches into os.environ when a Trainer asks for them: each test starts without."""
    launcher = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    for name in (*launcher, "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tiny():
    """A tiny random llama + bert Causal2Vec model with the real default tokenizers."""
    from causal2vec.assemble import build_random

    return build_random()


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread; with several, a loaded 2-core machine thrashes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The project is installed (`pip install -e .`), so even `python -I` could import its modules from the checkout: an
# isolated script refuses them, so that remote code must come from the checkpoint folder as on a user's machine.
PROJECT_MODULES = sorted(
    {p.stem for p in REPO_ROOT.glob("*.py")} | {p.parent.name for p in REPO_ROOT.glob("*/__init__.py")} - {"tests"}
)
BLOCK_PROJECT = f"""import sys
class _BlockProject:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {PROJECT_MODULES!r}:
            raise ImportError(f"{{name}} would come from the project checkout, not the checkpoint folder")
sys.meta_path.insert(0, _BlockProject())
"""


def run_isolated(script: str, folder: Path, tmp_path: Path) -> dict[str, Any]:
    """Run `script FOLDER TEXTS_JSON` in a fresh `python -I` (no project source importable: `BLOCK_PROJECT`),
    offline, with its own remote-code cache; returns the JSON on the script's last stdout line."""
    path = tmp_path / "isolated.py"
    path.write_text(BLOCK_PROJECT + script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules")
    )
    env["CUDA_VISIBLE_DEVICES"] = ""  # compared with CPU embeddings: sentence-transformers would pick a GPU itself
    proc = subprocess.run(
        [sys.executable, "-I", str(path), str(folder), json.dumps(TEXTS)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Two small task files cut from the real training data (or written here if it is absent)."""
    folder = tmp_path_factory.mktemp("data")
    for name, n in (("snli", 40), ("wikiqa", 24)):
        src = SHARED_TRAIN / f"{name}.jsonl"
        if src.is_file():
            lines = src.read_text().splitlines()[:n]
        else:
            lines = [
                json.dumps({"query": f"{name} q{i}", "pos": [f"{name} p{i}"], "neg": [f"n{i}"], "instruction": name})
                for i in range(n)
            ]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return folder
