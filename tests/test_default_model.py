"""The real default model (SmolLM2-135M-Instruct + all-MiniLM-L6-v2 from PyPI) builds, saves, loads and embeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from causal2vec import REPO_ROOT
from causal2vec.assemble import build_model
from causal2vec.parts import default_decoder_path
from train.config import load_config

pytestmark = pytest.mark.slow


def init_cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m train init --output FOLDER ARGS`, as a user runs it."""
    cmd = [sys.executable, "-m", "train", "init", "--output", str(folder), *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def default_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("default") / "c2v"
    proc = init_cli(folder, "--config", "default")  # what run.sh builds: the default recipe's starting point
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def test_init_writes_the_root_recipe(default_folder):
    made = json.loads((default_folder / "config.json").read_text())
    recipe = json.loads((REPO_ROOT / "config.json").read_text())
    made.pop("transformers_version"), recipe.pop("transformers_version")
    assert made == recipe, "config.json at the repo root is what `python -m train init --config default` builds"
    pinned = load_config("default").model.config
    assert pinned and all(made[key] == value for key, value in pinned.items()), "the recipe's pinned fields"
    card = (default_folder / "README.md").read_text()
    assert "base_model:\n- HuggingFaceTB/SmolLM2-135M-Instruct\n- sentence-transformers/all-MiniLM-L6-v2" in card


def test_default_model_loads_and_embeds(default_folder):
    model = AutoModel.from_pretrained(default_folder, trust_remote_code=True)
    assert model.config.embedding_dim == 1152  # C and EOS states of the 576-d SmolLM2
    # the decoder carries SmolLM2's de-quantized weights, the encoder MiniLM's
    cached = load_file(default_decoder_path() / "model.safetensors")
    torch.testing.assert_close(model.decoder.embed_tokens.weight, cached["model.embed_tokens.weight"])
    texts = [
        "A man is playing a guitar.",
        "A person plays the guitar.",
        "The stock market crashed today.",
        "A woman is slicing an onion.",
    ]
    batch = model.tokenizer(texts[:1])
    # <|im_start|> (SmolLM2's BOS, which its tokenizer does not add itself) first, then C's slot
    assert batch["input_ids"][0][:2] == [1, model.tokenizer.pad_token_id] and batch["contextual_index"] == [1]
    assert batch["input_ids"][0][-1] == model.tokenizer.eos_token_id == 2  # <|im_end|>
    emb = model.encode(texts, normalize_embeddings=True)
    assert emb.shape == (4, 1152)
    assert np.isfinite(emb).all() and len({round(float(v), 4) for v in (emb @ emb.T)[0, 1:]}) == 3
    np.testing.assert_allclose(model.encode(texts, normalize_embeddings=True, batch_size=1), emb, atol=1e-5)
    # C enters the decoder at contextual_scale (the recipe's 1024) times the scale of SmolLM2's real tokens
    batch = model.tokenizer(texts, return_tensors="pt")
    with torch.no_grad():
        c = model.contextual_token(batch["encoder_input_ids"], batch["encoder_attention_mask"])
        tokens = model.get_input_embeddings()(batch["input_ids"])[batch["attention_mask"].bool()]
    ratio = float(c.norm(dim=-1).mean() / tokens.norm(dim=-1).mean()) / model.config.contextual_scale
    assert model.config.contextual_scale == 1024.0 and 0.8 < ratio < 1.5, ratio


def test_readme_serve_command_serves_the_default_model(default_folder):
    """`python -m serve --model FOLDER --port PORT` (the README's command), called with the openai client."""
    import socket
    import time
    import urllib.request

    import openai

    def start() -> tuple[subprocess.Popen, int, object]:
        """The server on a free port, up and healthy; a port taken between the probe and the server's bind (the
        server exits 3) is tried again on another. Its threads are this process's, so both run the same kernels."""
        for _ in range(3):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            cmd = [sys.executable, "-m", "serve", "--model", str(default_folder), "--port", str(port)]
            cmd += ["--threads", str(torch.get_num_threads()), "--device", "cpu"]
            server = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 300
            while server.poll() is None:
                assert time.monotonic() < deadline, "the server did not come up"
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                        return server, port, response
                except OSError:
                    time.sleep(1)
            assert server.returncode == 3, server.stderr.read()[-3000:]
        raise AssertionError("no free port in three tries")

    server, port, response = start()
    try:
        assert response.status == 200
        texts = ["A man is playing a guitar.", "The stock market crashed today.", "x"]
        api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
        got = api.embeddings.create(model=str(default_folder), input=texts, extra_body={"prompt_name": "query"})
        docs = api.embeddings.create(model=str(default_folder), input=texts)
    finally:
        server.terminate()
        server.wait(timeout=60)
    model = AutoModel.from_pretrained(default_folder, trust_remote_code=True)
    query = np.array([d.embedding for d in got.data])
    np.testing.assert_allclose(query, model.encode(texts, prompt_name="query"), atol=1e-5)
    np.testing.assert_allclose(np.array([d.embedding for d in docs.data]), model.encode(texts), atol=1e-5)


def test_init_without_config_keeps_the_class_defaults(tmp_path):
    """Plain `train init` (no --config): Causal2VecConfig's own defaults, whatever default.yaml pins."""
    proc = init_cli(tmp_path / "plain", "--set", "pooling=eos")
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert (config["connector_init"], config["contextual_scale"], config["pooling"]) == ("normal", 256.0, "eos")


def test_init_refuses_to_overwrite(default_folder):
    proc = init_cli(default_folder)
    assert proc.returncode != 0 and "pass --overwrite" in proc.stderr
    assert (default_folder / "model.safetensors").is_file()


def test_decoder_cache_is_reused():
    path = default_decoder_path()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert default_decoder_path() == path and (path / "model.safetensors").stat().st_mtime_ns == stamp


def test_build_does_not_depend_on_the_decoder_cache(monkeypatch, tmp_path):
    """The first build converts the GGUF file (drawing random numbers); it must still give the seeded connector."""
    monkeypatch.setenv("CAUSAL2VEC_CACHE", str(tmp_path))
    cold = build_model().connector.state_dict()  # converts into the empty cache
    warm = build_model().connector.state_dict()  # reads the cache
    assert default_decoder_path().parent == tmp_path and (default_decoder_path() / "model.safetensors").is_file()
    for name, tensor in cold.items():
        torch.testing.assert_close(tensor, warm[name], rtol=0, atol=0)
