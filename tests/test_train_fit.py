"""`python -m train fit` on the tiny random model: outputs, refusal to overwrite, resume, divergence, export."""

from __future__ import annotations

import json
import shutil
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEXTS, run_isolated
from safetensors.torch import load_file

from train.__main__ import main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Two small task files cut from the real training data (or written here if it is absent)."""
    folder = tmp_path_factory.mktemp("data")
    for name, n in (("snli", 40), ("wikiqa", 24)):
        src = SHARED / f"{name}.jsonl"
        if src.is_file():
            lines = src.read_text().splitlines()[:n]
        else:
            lines = [
                json.dumps({"query": f"{name} q{i}", "pos": [f"{name} p{i}"], "neg": [f"n{i}"], "instruction": name})
                for i in range(n)
            ]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def fit(output: Path, data: Path, *extra: str) -> int:
    return main(["fit", "--config", "tiny", "--output", str(output), "--set", f"data={data}", *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("run") / "tiny"
    assert fit(out, data_dir) == 0
    return out


def test_run_writes_metrics_checkpoints_and_export(run, data_dir):
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(m["loss"]) and m["pairs_per_s"] > 0 and m["tokens_per_s"] > 0 for m in metrics)
    assert set(metrics[0]["lr"]) == {"decoder", "connector", "encoder"}
    assert {m["source"] for m in metrics} <= {"snli", "wikiqa"}
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
    model = run / "model"
    for name in ("model.safetensors", "config.json", "modeling_causal2vec.py", "tokenizer.json", "modules.json"):
        assert (model / name).is_file(), name
    assert (model / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    card = (model / "README.md").read_text()
    assert "| snli.jsonl | 40 |" in card and "| wikiqa.jsonl | 24 |" in card
    assert f"| final_loss | {round(metrics[-1]['loss'], 4)} |" in card and "| steps | 6 |" in card
    assert "wall_time_s" in card and "loss_curve.png" in card
    weights = load_file(model / "model.safetensors")
    assert not any("lora" in k for k in weights), "LoRA is merged away"


def test_existing_output_is_never_overwritten(run, data_dir, capsys):
    before = (run / "metrics.jsonl").read_bytes()
    assert fit(run, data_dir) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert (run / "metrics.jsonl").read_bytes() == before


def test_resume_ends_with_the_same_weights(run, data_dir, tmp_path):
    """Kill the run after step 3 (its step-6 checkpoint and export never happened), resume: same final weights.

    Dropout is on in tiny.yaml, so this also needs the RNG states restored."""
    out = tmp_path / "again"
    shutil.copytree(run, out)
    shutil.rmtree(out / "checkpoints" / "step-000006")
    shutil.rmtree(out / "model")
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join(lines[:4]) + "\n")  # died during step 5: 4 lines logged
    assert fit(out, data_dir, "--resume") == 0
    a, b = load_file(run / "model" / "model.safetensors"), load_file(out / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_without_checkpoint_refuses(tmp_path, data_dir, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    assert fit(tmp_path / "x", data_dir, "--resume") == 1
    assert "no complete checkpoint" in capsys.readouterr().err


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, data_dir, capsys):
    out = tmp_path / "diverge"
    code = fit(out, data_dir, "--set", "lr_connector=1e30", "--set", "warmup_steps=0", "--set", "save_every=1")
    assert code == 1
    err = capsys.readouterr().err
    assert "loss nan" in err and "at step 2" in err and "step-000001" in err
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000001"]
    assert not (out / "model").exists()


LOAD = textwrap.dedent(
    """
    import json, sys
    from transformers import AutoModel
    from sentence_transformers import SentenceTransformer
    path, texts = sys.argv[1], json.loads(sys.argv[2])
    model = AutoModel.from_pretrained(path, trust_remote_code=True)
    st = SentenceTransformer(path, trust_remote_code=True)
    local = sorted(m for m in sys.modules if m.split(".")[0] in ("modeling_causal2vec", "train"))
    print(json.dumps({"auto": model.encode(texts).tolist(), "st": st.encode(texts).tolist(),
                      "st_query": st.encode(texts, prompt_name="query").tolist(), "local": local}))
    """
)


def test_export_merges_lora_and_loads_in_a_fresh_process(tmp_path):
    from train.config import load_config
    from train.export import export, merge_lora
    from train.fit import build
    from train.trainable import set_trainable

    cfg = load_config("tiny")
    model, bases = build(cfg)
    peft_model = set_trainable(model, cfg)
    with torch.no_grad():  # as after training: adapters that change the output
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2)
    unmerged = model.encode(TEXTS)
    unmerged_query = model.encode(TEXTS, prompt_name="query")
    merge_lora(model, peft_model)
    assert not any("lora" in n for n, _ in model.named_parameters())
    merged = model.encode(TEXTS)
    np.testing.assert_allclose(merged, unmerged, atol=1e-4)
    np.testing.assert_allclose(model.encode(TEXTS, prompt_name="query"), unmerged_query, atol=1e-4)
    assert np.abs(merged - build(cfg)[0].encode(TEXTS)).max() > 1e-3, "the adapters changed the model"

    folder = export(model, tmp_path / "model", cfg.to_dict(), bases, {"steps": 0}, {"x.jsonl": 1}, [])
    out = run_isolated(LOAD, folder, tmp_path)
    assert out["local"] == [], "loaded as remote code, not from the source tree"
    np.testing.assert_allclose(out["auto"], merged, atol=1e-5)
    np.testing.assert_allclose(out["st"], merged, atol=1e-5)
    np.testing.assert_allclose(out["st_query"], model.encode(TEXTS, prompt_name="query"), atol=1e-5)


def test_baseline_trains_through_the_same_loop(tmp_path, data_dir):
    pytest.importorskip("evaluation.baselines")
    out = tmp_path / "mean"
    assert fit(out, data_dir, "--set", "baseline=mean", "--set", "steps=2", "--set", "save_every=2") == 0
    trained = load_file(out / "checkpoints" / "step-000002" / "trainable.safetensors")
    assert trained and all(k.startswith("decoder.") and "lora_" in k for k in trained)
    assert (out / "model" / "model.safetensors").is_file()
    assert "Trained as the `mean` baseline" in (out / "model" / "README.md").read_text()
    from evaluation.embedder import Embedder

    with pytest.warns(UserWarning, match="trained as the 'mean' baseline"):
        Embedder.from_path(out / "model", cache_dir=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Embedder.from_path(out / "model", baseline="mean", cache_dir=None)


def test_nothing_to_train_is_an_error(tmp_path, data_dir, capsys):
    pytest.importorskip("evaluation.baselines")
    assert fit(tmp_path / "enc", data_dir, "--set", "baseline=encoder", "--set", "train_encoder=false") == 1
    assert "nothing to train" in capsys.readouterr().err
