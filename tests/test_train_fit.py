"""`python -m train fit` (sentence-transformers' trainer) on the tiny random model: outputs, refusals, resume,
divergence, batches, the `trainer:` block, evaluation during training, streaming, baselines, export, bench."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TEXTS, run_isolated
from safetensors.torch import load_file

from causal2vec import REPO_ROOT
from train.__main__ import main

pytestmark = pytest.mark.usefixtures("one_thread")


def fit(output: Path, data: Path, *extra: str) -> int:
    return main(["fit", "--config", "tiny", "--output", str(output), "--set", f"data={data}", *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir) -> Path:
    """The tiny run the resume tests continue: on one thread, as they are (the module fixture is made before the
    function-scoped `one_thread` applies, and another thread count picks other kernels)."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert fit(out, data_dir) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_metrics_checkpoints_and_export(run, data_dir):
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert metrics[-1]["lr"]["decoder"] == 0.0 and metrics[0]["lr"]["connector"] > 0  # the cosine schedule's end
    assert all(np.isfinite(m["loss"]) and m["pairs_per_s"] > 0 and m["tokens_per_s"] > 0 for m in metrics)
    assert all(set(m["lr"]) == {"decoder", "connector", "encoder"} for m in metrics)
    assert all(set(m["grad_norms"]) == {"decoder", "connector", "encoder"} for m in metrics)
    assert all(m["grad_norm"] == pytest.approx(sum(v**2 for v in m["grad_norms"].values()) ** 0.5) for m in metrics)
    assert {m["source"] for m in metrics} <= {"snli", "wikiqa", "snli/0neg", "wikiqa/0neg"}  # the batch's file
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-6"]
    checkpoint = run / "checkpoints" / "checkpoint-3"
    weights = load_file(checkpoint / "trainable.safetensors")  # the trainable weights only, not the frozen base
    assert weights and all("lora_" in k or not k.startswith("decoder.") for k in weights)
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= {
        p.name for p in checkpoint.iterdir()
    }
    model = run / "model"
    for name in ("model.safetensors", "config.json", "modeling_causal2vec.py", "tokenizer.json", "modules.json"):
        assert (model / name).is_file(), name
    assert (model / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    card = (model / "README.md").read_text()
    assert "Base models: random llama, random bert." in card
    assert "| snli.jsonl | 40 |" in card and "| wikiqa.jsonl | 24 |" in card
    assert f"| final_loss | {round(metrics[-1]['loss'], 4)} |" in card and "| steps | 6 |" in card
    for row in ("batch_size | 8", "temperature | 0.05", "lr_decoder | 0.001", "warmup_steps | 2", "schedule | cosine"):
        assert f"| {row} |" in card, row
    assert '| lora | {"r": 4, "alpha": 8' in card and "loss_curve.png" in card
    wall, train = (
        float(re.search(rf"\| {key} \| ([\d.]+) \|", card).group(1)) for key in ("wall_time_s", "train_time_s")
    )
    assert wall >= train > 0 and wall >= metrics[-1]["wall_time_s"] - 0.1
    assert round(metrics[-1]["train_time_s"], 1) == train
    weights = load_file(model / "model.safetensors")
    assert not any("lora" in k for k in weights), "LoRA is merged away"
    from transformers import AutoModel

    exported = AutoModel.from_pretrained(model, trust_remote_code=True)
    assert np.isfinite(exported.encode(TEXTS)).all()


def test_existing_output_is_never_overwritten(run, data_dir, capsys):
    before = (run / "metrics.jsonl").read_bytes()
    assert fit(run, data_dir) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert (run / "metrics.jsonl").read_bytes() == before


def interrupted_copy(run: Path, out: Path) -> Path:
    """`run` as a kill after step 4 would leave it: checkpoint 3 whole, a checkpoint-6 cut short while being
    written (no trainer_state.json), no export, a half-written metrics line."""
    shutil.copytree(run, out)
    shutil.rmtree(out / "model")
    state = out / "checkpoints" / "checkpoint-6" / "trainer_state.json"
    state.write_text(state.read_text()[:40])  # killed while writing it
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])
    return out


def test_resume_ends_with_the_same_weights(run, data_dir, tmp_path, caplog):
    """Resume from checkpoint 3 (dropout is on: the RNG states come back too) skips the cut-short checkpoint and
    ends with the uninterrupted run's weights and losses; the truncated metrics line and the lines after step 3
    are dropped, the wall time adds up over both runs, and save keys may change."""
    out = interrupted_copy(run, tmp_path / "again")
    saved = yaml.safe_load((out / "train_config.yaml").read_text())
    (out / "train_config.yaml").write_text(yaml.safe_dump({**saved, "log_every": 5}))  # a retired key: still compares
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()[:3]]
    lines[-1]["wall_time_s"] = 1000.0  # as if the first run had taken 1000 s to get to its checkpoint
    (out / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines) + '{"step": 4, "lo')
    with caplog.at_level(logging.WARNING):
        assert fit(out, data_dir, "--resume", "--set", "keep_checkpoints=3", "--set", "save_every=2") == 0
    assert "dropped a truncated last line" in caplog.text
    a, b = load_file(run / "model" / "model.safetensors"), load_file(out / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    diffs = {k: float((a[k].float() - b[k].float()).abs().max()) for k in a}
    # every state comes back (weights, optimizer, scheduler, RNG, data position): bit-equal on one machine and
    # thread count; 1e-6 leaves room for kernels that are not bitwise reproducible run to run
    assert max(diffs.values()) <= 1e-6, {k: d for k, d in diffs.items() if d}
    assert [m["step"] for m in metrics(out)] == [1, 2, 3, 4, 5, 6]
    assert [m["loss"] for m in metrics(out)] == pytest.approx([m["loss"] for m in metrics(run)], abs=1e-6)
    assert metrics(out)[-1]["wall_time_s"] > 1000 > metrics(out)[-1]["train_time_s"]
    card = (out / "model" / "README.md").read_text()
    assert float(re.search(r"\| wall_time_s \| ([\d.]+) \|", card).group(1)) > 1000


@pytest.mark.parametrize("change", ["lr_decoder=0.5", "steps=12", "lora.r=8"])
def test_resume_with_another_config_refuses(run, data_dir, tmp_path, capsys, change):
    out = interrupted_copy(run, tmp_path / "changed")
    assert fit(out, data_dir, "--resume", "--set", change) == 1
    err = capsys.readouterr().err
    key, _, value = change.partition("=")
    assert "saved with another config" in err and f"{key}: " in err and f"-> {value}" in err
    assert not (out / "model").exists()


def test_resume_refuses_what_it_cannot_continue(run, data_dir, tmp_path, capsys):
    """Another number of processes than saved (the Trainer would only log it), an unknown config, checkpoints of the
    former loop: each refused, naming why, and nothing written."""
    out = interrupted_copy(run, tmp_path / "procs")
    rng = out / "checkpoints" / "checkpoint-3" / "rng_state.pth"
    shutil.copy(rng, rng.with_name("rng_state_0.pth"))
    rng.rename(rng.with_name("rng_state_1.pth"))  # as two processes save them
    assert fit(out, data_dir, "--resume") == 1
    assert "saved by another number of processes: resume with as many as saved (2)" in capsys.readouterr().err
    out = interrupted_copy(run, tmp_path / "noconfig")
    (out / "train_config.yaml").unlink()
    assert fit(out, data_dir, "--resume") == 1
    assert "train_config.yaml is missing" in capsys.readouterr().err
    old = tmp_path / "old"
    (old / "checkpoints" / "step-000003").mkdir(parents=True)
    assert fit(old, data_dir, "--resume") == 1
    assert "checkpoints of the project's former training loop" in capsys.readouterr().err
    assert not (tmp_path / "procs" / "model").exists() and [p.name for p in old.iterdir()] == ["checkpoints"]


def test_resume_of_a_missing_folder_is_an_error(tmp_path, data_dir, capsys):
    assert fit(tmp_path / "nothing", data_dir, "--resume") == 1
    assert "does not exist: nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


def test_resume_and_overwrite_together_refuse(run, data_dir, capsys):
    assert fit(run, data_dir, "--resume", "--overwrite") == 1
    assert "not both" in capsys.readouterr().err
    assert (run / "model" / "model.safetensors").is_file()


def test_overwrite_replaces_a_non_empty_output(tmp_path, data_dir):
    out = tmp_path / "old"
    (out / "checkpoints" / "checkpoint-9").mkdir(parents=True)
    (out / "notes.txt").write_text("old run")
    assert fit(out, data_dir, "--overwrite", "--set", "steps=2", "--set", "save_every=2") == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "metrics.jsonl", "model", "train_config.yaml"]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "no-such-config"], "config 'no-such-config' not found"),
        (["--set", "stepz=3"], "unknown config key(s): stepz"),
        (["--set", "steps=1.5"], "steps must be an integer, got 1.5"),
        (["--set", "save_every=0"], "save_every must be >= 1"),
        (["--set", "log_every=2"], "log_every: retired (metrics.jsonl logs every step); remove it"),
        (["--set", "dtype=fp16"], "dtype must be one of bf16, fp32"),
        (["--set", "model.dtype=bf16"], "needs autocast in the same dtype"),
        (["--set", "lora.dropout=x"], "lora.dropout must be a number"),
        (["--set", "model.config.contextual_scal=64"], "unknown Causal2VecConfig field(s) in model.config"),
        (["--set", "model.config.contextual_scale=big"], "model.config.contextual_scale must be a number, got 'big'"),
        (["--set", "model.config.decoder=/x"], "model.config.decoder: set model.decoder instead"),
    ],
)
def test_bad_config_is_a_clean_error(tmp_path, capsys, args, message):
    assert main(["fit", "--config", "tiny", "--output", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_init_builds_what_a_train_config_starts_from(tmp_path, capsys):
    """`train init --config C` writes the untrained checkpoint `train fit --config C` starts from (its `model`
    section), `--set` overriding the config's fields; a bad field is refused before the folder is touched."""
    out = tmp_path / "init"
    sets = ["--set", "pooling=eos", "--set", "contextual_scale=1e3"]
    assert main(["init", "--config", "tiny", "--output", str(out), *sets]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["decoder_max_length"], config["pooling"], config["decoder"]["hidden_size"]) == (48, "eos", 32)
    assert config["contextual_scale"] == 1000.0  # a YAML 1.1 string, read as the number it is
    from train.build import build
    from train.config import load_config

    built, _ = build(load_config("tiny", ["model.config.pooling=eos", "model.config.contextual_scale=1000"]))
    saved = load_file(out / "model.safetensors")
    for name, tensor in built.state_dict().items():  # same seed, same weights
        torch.testing.assert_close(saved[name], tensor, rtol=0, atol=0)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(["init", "--config", "tiny", "--output", str(out), "--overwrite", "--set", "poolin=eos"])
    assert "unknown Causal2VecConfig field(s) in model.config: poolin" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
    bad = ["--overwrite", "--set", "contextual_position=nowhere"]  # refused by Causal2VecConfig, at build time
    assert main(["init", "--config", "tiny", "--output", str(out), *bad]) == 1
    assert "contextual_position" in capsys.readouterr().err and (out / "notes.txt").is_file()
    with pytest.raises(SystemExit):  # a random model has no decoder folder to take
        main(["init", "--config", "tiny", "--output", str(tmp_path / "other"), "--decoder", str(tmp_path)])
    assert "builds a random model" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_init_seed_is_the_one_train_fit_starts_from(tmp_path):
    """`train init --seed S` draws what `train fit --set model.seed=S` starts from, and another seed draws other
    weights (the connector's; here the whole random model's too)."""
    from train.build import build
    from train.config import load_config

    assert main(["init", "--config", "tiny", "--output", str(tmp_path / "s3"), "--seed", "3"]) == 0
    assert main(["init", "--config", "tiny", "--output", str(tmp_path / "s0")]) == 0
    built, _ = build(load_config("tiny", ["model.seed=3"]))
    seed3, seed0 = load_file(tmp_path / "s3" / "model.safetensors"), load_file(tmp_path / "s0" / "model.safetensors")
    for name, tensor in built.state_dict().items():
        torch.testing.assert_close(seed3[name], tensor, rtol=0, atol=0)
    connector = [name for name in seed3 if name.startswith("connector.layers.") and name.endswith("weight")]
    assert connector and all(not torch.equal(seed3[name], seed0[name]) for name in connector)


def test_config_numbers_are_checked_and_coerced():
    from train.config import load_config

    cfg = load_config("tiny", ["steps=1e3", "lr_decoder=2e-4", "lora.r=8.0"])
    assert (cfg.steps, cfg.lora.r) == (1000, 8) and isinstance(cfg.steps, int) and isinstance(cfg.lora.r, int)
    assert cfg.lr_decoder == 2e-4


def test_resume_without_checkpoint_refuses(tmp_path, data_dir, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    assert fit(tmp_path / "x", data_dir, "--resume") == 1
    assert "no complete checkpoint" in capsys.readouterr().err


def assert_finite_checkpoint(folder: Path) -> None:
    weights = load_file(folder / "trainable.safetensors")
    assert weights and all(torch.isfinite(w).all() for w in weights.values())


def test_divergence_stops_and_keeps_last_checkpoint(tmp_path, data_dir, capsys):
    out = tmp_path / "diverge"
    code = fit(out, data_dir, "--set", "lr_connector=1e30", "--set", "warmup_steps=0", "--set", "save_every=1")
    assert code == 1
    err = capsys.readouterr().err
    # the loss goes first (its step names the batch's file), else the gradient norm or the weights
    loss_stop = re.search(r"loss nan at step 2 \(batch from (snli|wikiqa)(/0neg)?\)", err)
    assert loss_stop or re.search(r"(grad norm nan|non-finite weights).* at step 2", err), err
    assert f"Last checkpoint: {out / 'checkpoints' / 'checkpoint-1'}" in err
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-1"]
    assert_finite_checkpoint(out / "checkpoints" / "checkpoint-1")
    assert not (out / "model").exists()


def test_update_to_non_finite_weights_stops_before_saving(tmp_path, data_dir, capsys, monkeypatch):
    """An update that leaves inf in the weights (loss and grad norm still finite) is never checkpointed."""
    from train.fit import Causal2VecTrainer

    create = Causal2VecTrainer.create_optimizer

    def poisoned(self, model=None):
        optimizer = create(self, model)

        def hook(opt, args, kwargs):
            if self.state.global_step == 1:  # the update of step 2 (the step count moves after it)
                opt.param_groups[0]["params"][0].data.fill_(float("inf"))

        if not optimizer._optimizer_step_post_hooks:
            optimizer.register_step_post_hook(hook)
        return optimizer

    monkeypatch.setattr(Causal2VecTrainer, "create_optimizer", poisoned)
    out = tmp_path / "inf"
    assert fit(out, data_dir, "--set", "save_every=1") == 1
    err = capsys.readouterr().err
    assert "non-finite weights after the update of step 2" in err and "Last checkpoint:" in err
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-1"]
    assert_finite_checkpoint(out / "checkpoints" / "checkpoint-1")
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_read_metrics_drops_only_a_truncated_last_line(tmp_path, caplog):
    from train.export import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    with caplog.at_level(logging.WARNING):
        assert read_metrics(path) == [{"step": 1}, {"step": 2}]
    assert "metrics.jsonl:3: dropped a truncated last line" in caplog.text
    path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2: not a JSON record"):
        read_metrics(path)


def test_bf16_base_trains_fp32_weights(tmp_path, data_dir):
    """`model.dtype: bf16` loads the parts in bf16; what trains (LoRA, connector, encoder) is fp32."""
    from train.build import build
    from train.config import load_config
    from train.trainable import set_trainable

    cfg = load_config("tiny", ["model.dtype=bf16", "dtype=bf16"])
    model, _ = build(cfg)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    set_trainable(model, cfg)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    assert all(p.dtype == torch.bfloat16 for n, p in model.decoder.named_parameters() if "lora_" not in n)
    out = tmp_path / "bf16"
    sets = ["model.dtype=bf16", "dtype=bf16", "steps=2", "save_every=2"]
    assert fit(out, data_dir, *[a for s in sets for a in ("--set", s)]) == 0
    trained = load_file(out / "checkpoints" / "checkpoint-2" / "trainable.safetensors")
    assert {w.dtype for w in trained.values()} == {torch.float32}
    assert {w.dtype for w in load_file(out / "model" / "model.safetensors").values()} == {torch.bfloat16}


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
    from train.build import build
    from train.config import load_config
    from train.export import export
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
    model.decoder = peft_model.merge_and_unload()  # as the export of a run merges it
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


def test_baseline_trains_like_for_like(tmp_path, data_dir):
    """`baseline: NAME` trains that baseline on the model's own parts, with the same data, loss and trainer."""
    out = tmp_path / "mean"
    assert fit(out, data_dir, "--set", "baseline=mean", "--set", "steps=2", "--set", "save_every=2") == 0
    assert [m["step"] for m in metrics(out)] == [1, 2]
    assert set(metrics(out)[0]["grad_norms"]) == {"decoder"}  # no connector or encoder in the mean baseline
    trained = load_file(out / "checkpoints" / "checkpoint-2" / "trainable.safetensors")
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
    assert fit(tmp_path / "enc", data_dir, "--set", "baseline=encoder", "--set", "train_encoder=false") == 1
    assert "nothing to train" in capsys.readouterr().err


def test_training_truncation_is_not_the_exported_length(run, data_dir, tmp_path):
    """`max_length` cuts texts while training (fewer tokens a step, same batches); the export keeps its lengths."""
    out = tmp_path / "short"
    assert fit(out, data_dir, "--set", "max_length=28") == 0  # room for the ~20-token query prompts
    tokens = [  # tokens per pair: two rates over the same step time, rounded off the division's last bits
        [
            round(m["tokens_per_s"] / m["pairs_per_s"], 6)
            for m in map(json.loads, (r / "metrics.jsonl").read_text().splitlines())
        ]
        for r in (run, out)
    ]
    assert all(short <= full for short, full in zip(tokens[1], tokens[0], strict=True))
    assert sum(tokens[1]) < sum(tokens[0])
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["decoder_max_length"] == config["encoder_max_length"] == 48  # tiny.yaml's model lengths
    assert "max_length: 28" in (out / "model" / "training_config.yaml").read_text()


def test_init_reuse_keeps_the_same_checkpoint_and_refuses_another(tmp_path, capsys):
    """`train init --reuse` (what run.sh calls): a folder holding exactly what the config builds is kept untouched;
    one built with another config field or seed is refused, naming what differs; a dotted `--set` is the train
    config's own key (model.seed, model.config.pooling) and must be in its model section."""
    out = tmp_path / "init"
    assert main(["init", "--config", "tiny", "--output", str(out), "--reuse", "--set", "pooling=eos"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}")  # nothing there yet: written
    before = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    same = ["--set", "model.config.pooling=eos"]  # the same field, as run.sh passes it from FIT_ARGS
    assert main(["init", "--config", "tiny", "--output", str(out), "--reuse", *same]) == 0
    assert capsys.readouterr().out.startswith(f"kept {out}")
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == before
    assert main(["init", "--config", "tiny", "--output", str(out), "--reuse"]) == 1  # pooling: the class default
    err = capsys.readouterr().err
    assert "another checkpoint than this config builds (config pooling: 'eos' there, 'contextual_eos' here)" in err
    assert main(["init", "--config", "tiny", "--output", str(out), "--reuse", *same, "--set", "model.seed=3"]) == 1
    assert "tensors differ, e.g. " in capsys.readouterr().err  # same config, another draw
    code = out / "modeling_causal2vec.py"
    code.write_text(code.read_text() + "# an older copy\n")  # the remote code it would be loaded with
    assert main(["init", "--config", "tiny", "--output", str(out), "--reuse", *same]) == 1
    assert "(modeling_causal2vec.py differs)" in capsys.readouterr().err
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} != before  # only what the test wrote:
    assert code.read_text().endswith("# an older copy\n")  # the refused folder is left as it was
    (out / "model.safetensors").unlink()  # an interrupted write
    assert main(["init", "--config", "tiny", "--output", str(out), "--reuse", *same]) == 1
    assert "(no model.safetensors (an unfinished or sharded checkpoint))" in capsys.readouterr().err
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("mine")
    assert main(["init", "--config", "tiny", "--output", str(notes), "--reuse"]) == 1
    assert "is not empty and holds no checkpoint (no config.json)" in capsys.readouterr().err
    assert [path.name for path in notes.iterdir()] == ["mine.txt"]
    with pytest.raises(SystemExit):
        main(["init", "--config", "tiny", "--output", str(out), "--reuse", "--set", "lora.r=8"])
    assert "init builds the model section only: --set lora.r does not apply" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["init", "--config", "tiny", "--output", str(out), "--reuse", "--overwrite"])
    assert "not allowed with argument" in capsys.readouterr().err


def run_sh(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`bash run.sh ARGS` with OUT under tmp_path and DRY_RUN=1 unless `env` says otherwise."""
    drop = ("OUT", "INIT", "FIT_ARGS", "DRY_RUN", "BASH_ENV")
    environ = {k: v for k, v in os.environ.items() if k not in drop}
    environ.update({"DRY_RUN": "1", "OUT": str(tmp_path / "run") + "/", **env})
    command = ["bash", str(REPO_ROOT / "run.sh"), *args]  # a timeout: a broken DRY_RUN check would run it all
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=60)


def run_sh_dry(tmp_path: Path, *args: str, **env: str) -> list[list[str]]:
    """The commands `DRY_RUN=1 bash run.sh ARGS` prints, each split back into its arguments."""
    proc = run_sh(tmp_path, *args, **env)
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines()]


def test_run_sh_passes_overrides_whole_to_init_and_fit(tmp_path):
    """run.sh's arguments reach `train fit` unsplit (a prompt with spaces), after FIT_ARGS; their model.* and
    document_prompt overrides, and no others, build the untrained checkpoint; an unfinished run resumes, a
    finished one is not retrained; a bad DRY_RUN or an override without its value stops it before anything runs."""
    prompt = "document_prompt=Represent this passage: "
    cmds = run_sh_dry(tmp_path, "--set", prompt, "--set", "lora.r=8", FIT_ARGS="--set steps=5 --set=model.seed=3")
    out, init = str(tmp_path / "run"), str(tmp_path / "run-init")
    assert cmds[:2] == [["bash", "scripts/setup.sh"], ["source", ".venv/bin/activate"]]
    init_cmd, fit_cmd, eval_init, eval_out = cmds[2:]
    config = ["--config", "train/configs/default.yaml"]
    assert init_cmd == ["python", "-m", "train", "init", *config, "--output", init, "--reuse"] + [
        *("--set", "model.seed=3", "--set", prompt)
    ]
    assert fit_cmd == ["python", "-m", "train", "fit", *config, "--output", out] + [
        *("--set", "steps=5", "--set=model.seed=3", "--set", prompt, "--set", "lora.r=8")
    ]
    assert eval_init[:4] == eval_out[:4] == ["python", "-m", "evaluation", "run"]
    assert eval_init[eval_init.index("--model") + 1] == init
    assert eval_out[eval_out.index("--model") + 1] == out + "/model"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    fit_cmd = run_sh_dry(tmp_path, "--set", prompt)[3]
    assert fit_cmd[4:] == [*config, "--output", out, "--resume", "--set", prompt]
    (tmp_path / "run" / "model").mkdir()
    (tmp_path / "run" / "model" / "model.safetensors").write_bytes(b"")
    proc = run_sh(tmp_path, "--set", prompt)
    assert f"{out}/model exists: not retraining" in proc.stdout
    assert not any(line.startswith("python -m train fit") for line in proc.stdout.splitlines())
    for args, env, error in [
        ((), {"DRY_RUN": "yes"}, "DRY_RUN must be 0 or 1"),
        (("--set",), {}, "--set needs a value"),
        ((), {"FIT_ARGS": "--set steps=5 --config"}, "--config needs a value"),
    ]:
        proc = run_sh(tmp_path, *args, **env)
        assert proc.returncode == 2 and error in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("trainer.not_a_field=1", "unknown trainer key(s): not_a_field"),
        ("trainer.learning_rate=0.1", "trainer.learning_rate: set lr_decoder / lr_connector / lr_encoder instead"),
        ("trainer.save_steps=5", "trainer.save_steps: set save_every instead"),
        ("trainer.logging_steps=5", "trainer.logging_steps is not available here: metrics.jsonl logs"),
        ("trainer.deepspeed=ds.json", "trainer.deepspeed is not available here: ZeRO keeps gradients"),
        ('trainer.fsdp_config={"version": 1}', "trainer.fsdp_config.version: use version 2"),
        ('trainer.fsdp_config={"fsdp_version": 1}', "trainer.fsdp_config.version: use version 2"),
        ("trainer.fsdp=true", "Using fsdp only works in distributed training"),  # transformers' own check
        ("trainer.push_to_hub=true", "upload the export, `hf upload NAME OUTPUT/model .`"),
        ("half_loss_weight=0.5", "needs a Causal2Vec model with pooling contextual_eos, got pooling eos"),
    ],
)
def test_trainer_block_refuses_unknown_and_owned_keys(tmp_path, data_dir, capsys, key, message):
    extra = ["--set", "model.config.pooling=eos"] if key.startswith("half") else []
    extra += ["--set", "trainer.fsdp=true"] if "version" in key else []
    assert fit(tmp_path / "bad", data_dir, "--set", key, *extra) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed (accelerate config) is not available here"),
        ("ACCELERATE_USE_FSDP", "FSDP (trainer.fsdp or an accelerate config): accelerate did not turn FSDP on"),
    ],
)
def test_accelerate_config_refusals(tmp_path, data_dir, capsys, monkeypatch, variable, message):
    """What `accelerate launch` passes from its config (DeepSpeed; FSDP where accelerate leaves it off) is refused
    like the trainer block's keys, before any step."""
    monkeypatch.setenv(variable, "true")
    assert fit(tmp_path / "bad", data_dir) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()


def test_trainer_block_reaches_the_trainer(tmp_path, data_dir):
    """Any other TrainingArguments field is the Trainer's: two micro-batches of 4 per step of 8 pairs."""
    out = tmp_path / "accumulate"
    sets = ["trainer.gradient_accumulation_steps=2", "steps=2", "save_every=2", "batch_size=4"]
    assert fit(out, data_dir, *[a for s in sets for a in ("--set", s)]) == 0
    state = json.loads((out / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["train_batch_size"] == 4
    args = torch.load(out / "checkpoints" / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert args.gradient_accumulation_steps == 2


def test_batches_hold_one_source_and_no_duplicates(tmp_path, data_dir, caplog):
    """The Trainer's own samplers (proportional over datasets, no duplicates): each batch's rows come from one
    file (the trainer names it), no text repeats within a batch, and the datasets split by negative count keep every
    row."""
    from train.config import load_config
    from train.fit import build_trainer

    cfg = load_config("tiny", [f"data={data_dir}", "hard_negatives=2"])
    with caplog.at_level(logging.WARNING, "train"):
        trainer, _ = build_trainer(cfg, tmp_path / "out")
    data = trainer.train_dataset
    assert set(data) <= {"snli", "wikiqa", "snli/1neg", "wikiqa/1neg", "snli/0neg", "wikiqa/0neg"}
    left_out = sum(int(n) for n in re.findall(r"(\d+) row\(s\) left out", caplog.text))
    assert sum(len(d) for d in data.values()) + left_out == 40 + 24  # every row kept or reported
    loader = trainer.get_train_dataloader()
    sizes = np.cumsum([len(d) for d in data.values()])
    names = list(data)
    batches = list(loader.batch_sampler)
    assert batches and all(len(b) == cfg.batch_size for b in batches)
    for batch in batches:
        sources = {names[int(np.searchsorted(sizes, i, side="right"))] for i in batch}
        assert len(sources) == 1, sources
        source = sources.pop()
        offset = 0 if names.index(source) == 0 else int(sizes[names.index(source) - 1])
        rows = [data[source][i - offset] for i in batch]
        assert {row.pop("dataset_name") for row in rows} == {source}  # what metrics.jsonl names as the source
        texts = [t for row in rows for t in row.values()]
        assert len(texts) == len(set(texts)), "a text repeats within a batch"
    query = data[names[0]][0]["anchor"]
    assert query.startswith("Instruct: ") and "\nQuery: " in query  # the row's own instruction as the query prompt


def test_accelerate_examples_load_and_the_7b_config_makes_trainer_arguments(tmp_path):
    """The accelerate configs parse with accelerate's own reader (an unknown key would fail), each says how it is
    launched; mistral7b.yaml's trainer: block and keys make valid Trainer arguments for 8 processes."""
    from accelerate.commands.config.config_args import load_config_from_file

    from causal2vec import REPO_ROOT
    from train.config import load_config
    from train.fit import training_arguments

    folder = REPO_ROOT / "train" / "configs" / "accelerate"
    kinds = {}
    for path in sorted(folder.glob("*.yaml")):
        kinds[path.stem] = str(load_config_from_file(str(path)).distributed_type)
        assert "accelerate launch --config_file train/configs/accelerate/" in path.read_text(), path
        assert "--engine" not in path.read_text(), path  # the launch line runs as written
    assert kinds == {
        "ddp": "DistributedType.MULTI_GPU",
        "fsdp": "DistributedType.FSDP",
        "deepspeed_zero2": "DistributedType.DEEPSPEED",
        "deepspeed_zero3": "DistributedType.DEEPSPEED",
    }
    assert load_config_from_file(str(folder / "fsdp.yaml")).fsdp_config["fsdp_version"] == 2  # FSDP1 is refused
    cfg = load_config("mistral7b")
    args = training_arguments(cfg, tmp_path, processes=8)
    assert args.per_device_train_batch_size == 512 and args.accelerator_config.split_batches
    assert args.dataloader_num_workers == 2 and args.bf16 and args.max_steps == 1000
    with pytest.raises(ValueError, match="divisible"):
        training_arguments(load_config("mistral7b", ["batch_size=500"]), tmp_path, processes=8)


def test_evaluation_during_training_is_logged_and_the_best_checkpoint_exported(tmp_path, data_dir):
    """`eval_every`: the STS evaluator's scores on `eval_data` go to metrics.jsonl as their own lines (the training
    records stay what read_metrics gives); with `load_best_model_at_end` the export holds the best checkpoint's
    weights."""
    from train.export import read_metrics

    sts = tmp_path / "sts.tsv"
    pairs = [("A man plays a guitar.", "A man plays music.", 4.5), ("A cat sleeps.", "Stocks fell.", 0.2)]
    pairs += [("The sun is hot.", "It is warm outside.", 3.0), ("A dog runs.", "A car is red.", 0.5)]
    sts.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in pairs))
    out = tmp_path / "eval"
    sets = ["steps=4", "save_every=2", "eval_every=2", f"eval_data={sts}", "trainer.load_best_model_at_end=true"]
    assert fit(out, data_dir, *[a for s in sets for a in ("--set", s)]) == 0
    evals = read_metrics(out / "metrics.jsonl", evaluations=True)
    assert [m["step"] for m in evals] == [2, 4]
    assert all(-1 <= m["eval"]["sts-dev_spearman_cosine"] <= 1 for m in evals)
    assert [m["step"] for m in read_metrics(out / "metrics.jsonl")] == [1, 2, 3, 4]
    best = max(evals, key=lambda m: m["eval"]["sts-dev_spearman_cosine"])["step"]
    state = json.loads((out / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best}")
    saved = load_file(out / "checkpoints" / f"checkpoint-{best}" / "trainable.safetensors")
    exported = load_file(out / "model" / "model.safetensors")
    for name in [k for k in saved if k.startswith("connector.")]:  # not LoRA-merged: the same tensors
        assert torch.equal(saved[name], exported[name]), name


def test_streamed_data_trains_resumes_and_names_a_bad_line(tmp_path, data_dir, capsys):
    """`streaming: true` reads the JSONL files as training goes: it trains, resumes from a checkpoint to the same
    weights, and a malformed row stops the run naming its file and line."""
    out = tmp_path / "stream"
    sets = ["streaming=true", "stream_buffer=16"]
    args = [a for s in sets for a in ("--set", s)]
    assert fit(out, data_dir, *args) == 0
    assert "| snli.jsonl | streamed |" in (out / "model" / "README.md").read_text()
    again = interrupted_copy(out, tmp_path / "again")
    assert fit(again, data_dir, "--resume", *args) == 0
    a, b = load_file(out / "model" / "model.safetensors"), load_file(again / "model" / "model.safetensors")
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) <= 1e-6
    bad = tmp_path / "bad"
    bad.mkdir()
    lines = (data_dir / "snli.jsonl").read_text().splitlines()
    (bad / "snli.jsonl").write_text("\n".join(lines[:30] + ['{"query": "q"}'] + lines[30:]) + "\n")
    capsys.readouterr()
    assert fit(tmp_path / "bad-run", bad, *args) == 1
    assert f"{bad / 'snli.jsonl'}:31: missing field 'pos'" in capsys.readouterr().err


def test_bench_times_each_setting_in_its_own_process(tmp_path, data_dir):
    """`python -m train bench`: each setting's steps of `train fit`'s trainer, timed in a process of its own."""
    out = tmp_path / "bench.json"
    args = ["bench", "--config", "tiny", "--set", f"data={data_dir}", "--settings", "fp32", "bf16+cached"]
    assert main([*args, "--steps", "2", "--batch-size", "4", "--output", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"fp32", "bf16+cached"}
    for r in results.values():
        assert r["pairs_per_s"] > 0 and r["tokens_per_s"] > 0 and r["s_per_step"] > 0
        assert r["peak_mib"] > 0 and r["memory"] in ("peak_rss", "cuda_max_allocated")


def test_matryoshka_training_runs_plain_and_cached(tmp_path, data_dir):
    """`matryoshka_dims` trains through `train fit` (the term itself: tests/test_train_loss.py), and its dims are
    checked against the model's vectors before anything is written."""
    for chunk in (0, 4):
        out = tmp_path / f"mrl{chunk}"
        sets = ["matryoshka_dims=[32,16]", f"cached_chunk_size={chunk}", "steps=2", "save_every=2"]
        assert fit(out, data_dir, *[a for s in sets for a in ("--set", s)]) == 0
        assert all(np.isfinite(m["loss"]) for m in metrics(out))
        assert yaml.safe_load((out / "model" / "training_config.yaml").read_text())["matryoshka_dims"] == [32, 16]
    assert fit(tmp_path / "wide", data_dir, "--set", "matryoshka_dims=[128]") == 1
