"""Two CPU processes under torchrun (gloo) train like one process on the same global batch: DDP, and FSDP2 (torch
runs it on CPU; accelerate turns it on only for GPUs, so those runs go through tests/fsdp_cpu_launch.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SHARED_TRAIN
from safetensors.torch import load_file

from causal2vec import REPO_ROOT

# no dropout: each rank draws its own masks, so only a dropout-free run can match one process exactly
COMMON = [
    "steps=3",
    "save_every=3",
    "batch_size=8",
    "hard_negatives=2",
    "lora.dropout=0",
    "model.encoder.hidden_dropout_prob=0",
    "model.encoder.attention_probs_dropout_prob=0",
]


def fsdp(state_dict_type: str = "FULL_STATE_DICT", **options: object) -> list[str]:
    config = {"version": 2, "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer", "BertLayer"], **options}
    return ["trainer.fsdp=true", f"trainer.fsdp_config={json.dumps({**config, 'state_dict_type': state_dict_type})}"]


FSDP = fsdp()
FSDP_LAUNCH = str(REPO_ROOT / "tests" / "fsdp_cpu_launch.py")


def run(output: Path, data: Path, nproc: int, *extra: str, program: tuple[str, ...] = ("-m", "train")) -> list[dict]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    sets = [a for s in [*COMMON, f"data={data}", *extra] for a in ((s,) if s.startswith("--") else ("--set", s))]
    # loopback for gloo: where the host name does not resolve (sandboxes), gloo's default interface lookup fails
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
    cmd = [*launcher, *program, "fit", "--config", "tiny", "--output", str(output), *sets]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-30000:]
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def wikiqa(tmp_path: Path) -> Path:
    src = SHARED_TRAIN / "wikiqa.jsonl"  # rows with several hard negatives, so ranks hold different numbers of them
    if not src.is_file():
        pytest.skip(f"{src} is not there")
    data = tmp_path / "wikiqa.jsonl"
    data.write_text("\n".join(src.read_text().splitlines()[:40]) + "\n")
    return data


def assert_same_run(folder: Path, one: list[dict], two: list[dict], tolerance: float) -> dict[str, torch.Tensor]:
    """Two runs (`folder/one`, `folder/two`) step for step: losses and gradient norms within `tolerance`, exported
    weights within 2e-5. Returns the first run's weights."""
    assert [m["step"] for m in two] == [1, 2, 3]
    for a, b in zip(one, two, strict=True):
        assert abs(a["loss"] - b["loss"]) < tolerance, (a, b)
        assert abs(a["grad_norm"] - b["grad_norm"]) < tolerance * max(1.0, a["grad_norm"])
    w1 = load_file(folder / "one" / "model" / "model.safetensors")
    w2 = load_file(folder / "two" / "model" / "model.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=2e-5, rtol=1e-4, msg=k)
    return w1


@pytest.mark.parametrize("cached", [0, 5])
def test_two_processes_match_one(tmp_path, cached):
    """Under torchrun each global batch (one source) is split over the processes and the ranking loss gathers
    every process's documents, so two processes (plain loss, or GradCache in chunks of 5) follow one process with
    the plain loss step for step; every part trained."""
    data = wikiqa(tmp_path)
    one = run(tmp_path / "one", data, 1)
    two = run(tmp_path / "two", data, 2, f"cached_chunk_size={cached}")
    w1 = assert_same_run(tmp_path, one, two, 1e-5)
    assert "| processes | 2 |" in (tmp_path / "two" / "model" / "README.md").read_text()
    from train.build import build
    from train.config import load_config

    initial = build(load_config("tiny"))[0].state_dict()
    moved = {k for k in w1 if (w1[k] - initial[k]).abs().max() > 1e-3}
    assert any(k.startswith("connector.") for k in moved) and any(k.startswith("encoder.") for k in moved)
    assert any(k.startswith("decoder.") and "proj" in k for k in moved), "merged LoRA changed the decoder"


@pytest.mark.parametrize(
    ("state_dict_type", "optimizer", "connector_only"),
    [("FULL_STATE_DICT", "optimizer.bin", 2), ("SHARDED_STATE_DICT", "optimizer_0", 1)],
)
def test_fsdp_two_processes_match_one_and_resume(tmp_path, state_dict_type, optimizer, connector_only):
    """FSDP2 over two processes (every part sharded by layer, GradCache in chunks of 5) follows one unsharded
    process step for step; its checkpoints hold the gathered trainable weights, not the whole model (full or
    sharded state dicts alike); resumed from step 2 after losing step 3, it ends with the same weights bit for
    bit: where step 2 ends the connector-only steps (the other parts' optimizer state starts at step 3), and
    where every part's state was saved and must be restored whole."""
    data = wikiqa(tmp_path)
    steps = f"connector_only_steps={connector_only}"
    options = (*fsdp(state_dict_type), "cached_chunk_size=5", "save_every=2", steps)
    one = run(tmp_path / "one", data, 1, steps)
    two = run(tmp_path / "two", data, 2, *options, program=(FSDP_LAUNCH,))
    assert_same_run(tmp_path, one, two, 1e-5)
    checkpoint = tmp_path / "two" / "checkpoints" / "checkpoint-2"
    assert {p.name for p in checkpoint.iterdir()} >= {"trainable.safetensors", optimizer, "scheduler.pt"}
    assert not list(checkpoint.glob("pytorch_model_fsdp*"))
    trainable = load_file(checkpoint / "trainable.safetensors")
    assert any(k.startswith("encoder.") for k in trainable) and all(v.dim() for v in trainable.values())

    shutil.copytree(tmp_path / "two", tmp_path / "again")
    shutil.rmtree(tmp_path / "again" / "checkpoints" / "checkpoint-3")
    shutil.rmtree(tmp_path / "again" / "model")
    again = run(tmp_path / "again", data, 2, *options, "--resume", program=(FSDP_LAUNCH,))
    assert [(m["loss"], m["grad_norm"]) for m in again] == [(m["loss"], m["grad_norm"]) for m in two]
    w2 = load_file(tmp_path / "two" / "model" / "model.safetensors")
    w3 = load_file(tmp_path / "again" / "model" / "model.safetensors")
    assert all(torch.equal(w2[k], w3[k]) for k in w2)


def test_fsdp_where_accelerate_leaves_it_off_is_an_error(tmp_path):
    """Two CPU processes without the test launcher: accelerate keeps them MULTI_CPU, and the run stops rather than
    train unsharded while the config asks for FSDP."""
    with pytest.raises(AssertionError, match="accelerate did not turn FSDP on"):
        run(tmp_path / "off", wikiqa(tmp_path), 2, *FSDP)


def test_fsdp_activation_checkpointing_is_refused(tmp_path):
    """FSDP's own activation checkpointing renames the wrapped layers' parameters: refused before any step, with
    the decoder's gradient_checkpointing named instead."""
    with pytest.raises(AssertionError, match="set gradient_checkpointing: true instead"):
        run(tmp_path / "ac", wikiqa(tmp_path), 2, *fsdp(activation_checkpointing=True), program=(FSDP_LAUNCH,))
