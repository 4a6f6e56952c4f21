"""The training recipe's pieces: BOS before C, C at the decoder's scale, per-part gradient clipping and learning-rate
stages, training truncation apart from the model's lengths, the diagnostics and the multi-seed command."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import yaml
from conftest import TEXTS

from benchmarks.diagnose import diagnose
from benchmarks.seeds import RunError, aggregate, main, parse_model, table, train
from causal2vec.assemble import build_random
from causal2vec.baselines import build_baseline
from configuration_causal2vec import Causal2VecConfig
from evaluation.tasks import DEV_BATTERY, SELECTION_TASKS
from modeling_causal2vec import Causal2VecModel, input_embedding_rms
from train.config import ConfigError, load_config, resume_conflicts
from train.fit import build_trainer
from train.trainable import clip_gradients, lr_lambda

pytestmark = pytest.mark.usefixtures("one_thread")


def test_prefix_token_is_eos_where_the_decoder_has_no_bos(tiny):
    tok = copy.deepcopy(tiny.tokenizer)
    assert tok.decoder_prefix_ids == [tok.bos_token_id]
    tok.bos_token = None
    assert tok.bos_token_id is None and tok.decoder_prefix_ids == [tok.eos_token_id]
    assert tok(["a"])["input_ids"][0][:2] == [tok.eos_token_id, tok.pad_token_id]
    tok.decoder_add_bos = False
    assert tok.decoder_prefix_ids == [] and tok(["a"])["contextual_index"] == [0]


def test_contextual_token_comes_out_at_the_connector_norm_gain(tmp_path):
    model = build_random(contextual_scale=1.0)
    assert model.config.connector_norm == "rms" and model.config.decoder_add_bos
    rms = model.match_contextual_scale()
    assert rms == pytest.approx(input_embedding_rms(model.decoder))
    batch = model.tokenizer(TEXTS, return_tensors="pt")
    with torch.no_grad():
        c = model.contextual_token(batch["encoder_input_ids"], batch["encoder_attention_mask"])
    # RMSNorm's eps (1e-6) is not negligible next to a tiny random connector's output: within 10%
    torch.testing.assert_close(c.pow(2).mean(-1).sqrt(), torch.full((len(TEXTS),), rms), rtol=0.1, atol=0)
    model.connector.norm.weight.data.mul_(1.5)  # a trained gain survives save/load (not re-initialised)
    model.save_pretrained(tmp_path)
    loaded = Causal2VecModel.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.connector.norm.weight, model.connector.norm.weight)
    plain = build_random(connector_norm="none")
    assert plain.connector.norm is None and plain.match_contextual_scale() is None
    with pytest.raises(ValueError, match="Unknown connector_norm 'layer'"):
        Causal2VecConfig(connector_norm="layer")


def test_contextual_scale_multiplies_the_gain_and_keeps_c_through_the_decoder():
    """At a large `contextual_scale` C's last hidden state follows its input: texts whose C inputs differ get last
    states that differ in the same way (the decoder's updates are small next to C)."""
    base = build_random(contextual_scale=1.0)
    big = build_random()  # the default, 256
    assert big.config.contextual_scale == 256.0
    assert big.match_contextual_scale() == pytest.approx(256.0 * base.match_contextual_scale())
    batch = big.tokenizer(TEXTS, return_tensors="pt")

    def c_states(model: Causal2VecModel) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            out = model(**batch)
        rows = torch.arange(len(TEXTS))
        return out.contextual_token, out.last_hidden_state[rows, batch["contextual_index"]]

    def pairwise(x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.normalize(x - x.mean(0), dim=-1)
        return x @ x.T

    for model, close in ((big, True), (base, False)):
        c_in, c_out = c_states(model)
        gap = (pairwise(c_in) - pairwise(c_out)).abs().max()
        assert (gap < 0.1) == close, f"contextual_scale={model.config.contextual_scale}: gap {gap:.3f}"
    with pytest.raises(ValueError, match="contextual_scale must be > 0"):
        Causal2VecConfig(contextual_scale=0.0)


def test_isometric_connector_init_keeps_the_encoders_angles():
    """`connector_init="isometric"`: C's cosines start equal to the pooled encoder vectors' (the default `normal`
    MLP distorts them); widths that shrink or an activation with no linear regime are refused."""

    def gap(model: Causal2VecModel) -> float:
        # pooled vectors of norm 3 (all-MiniLM-L6-v2's mean-pooled states have norm ~6 in 384 dimensions): where
        # the first layer's outputs (~0.02 x 3) sit in GELU's linear regime
        x = torch.nn.functional.normalize(torch.randn(16, model.config.encoder.hidden_size), dim=-1) * 3
        with torch.no_grad():
            c = model.connector(x)
        cos = [torch.nn.functional.normalize(v, dim=-1) for v in (x, c)]
        return float((cos[0] @ cos[0].T - cos[1] @ cos[1].T).abs().max())

    torch.manual_seed(0)
    iso, normal = build_random(connector_init="isometric"), build_random()
    assert normal.config.connector_init == "normal"
    first = iso.connector.layers[0].weight
    torch.testing.assert_close(first.T @ first, torch.eye(first.shape[1]) * first.pow(2).sum(0).mean())
    assert gap(iso) < 0.1 < 0.3 < gap(normal), (gap(iso), gap(normal))
    enc = iso.config.encoder.hidden_size
    with pytest.raises(ValueError, match="widths that never shrink"):
        Causal2VecConfig(connector_init="isometric", encoder={"hidden_size": enc}, connector_hidden_size=enc - 1)
    with pytest.raises(ValueError, match="activation linear around 0"):
        Causal2VecConfig(connector_init="isometric", connector_activation="relu")
    with pytest.raises(ValueError, match="Unknown connector_init 'xavier'"):
        Causal2VecConfig(connector_init="xavier")


def _grads(*norms: float) -> list[dict]:
    """One optimizer group per part, each a single parameter whose gradient has the given norm."""
    groups = []
    for name, norm in zip(("decoder", "connector", "encoder"), norms, strict=False):
        p = torch.nn.Parameter(torch.zeros(4))
        p.grad = torch.full((4,), norm / 2)  # norm of 4 equal entries: 2 x entry
        groups.append({"name": name, "params": [p]})
    return groups


def test_clip_gradients_global_and_per_part():
    groups = _grads(0.5, 30.0, 40.0)
    total, parts = clip_gradients(groups, 1.0, per_part=False)
    assert float(total) == pytest.approx(math.sqrt(0.25 + 900 + 1600))
    assert parts == pytest.approx({"decoder": 0.5, "connector": 30.0, "encoder": 40.0})
    after = [float(g["params"][0].grad.norm()) for g in groups]
    assert after[0] == pytest.approx(0.5 / float(total), rel=1e-4)  # the decoder shrinks with the spike
    groups = _grads(0.5, 30.0, 40.0)
    clip_gradients(groups, 1.0, per_part=True)
    after = [float(g["params"][0].grad.norm()) for g in groups]
    assert after == pytest.approx([0.5, 1.0, 1.0], rel=1e-4)  # each part on its own


def test_connector_only_steps_hold_the_other_parts(tmp_path, data_dir):
    cfg = load_config("tiny", ["connector_only_steps=3", "warmup_steps=2", "steps=10", f"data={data_dir}"])
    connector, decoder = lr_lambda(cfg, "connector"), lr_lambda(cfg, "decoder")
    assert [decoder(s) for s in range(3)] == [0, 0, 0] and decoder(3) == pytest.approx(1 / 3)
    assert connector(0) == pytest.approx(1 / 3) and connector(2) == 1.0
    assert decoder(9) > 0 and connector(9) < decoder(9)  # the decoder's cosine spans the steps it trains
    trainer, _ = build_trainer(cfg, tmp_path / "run")  # the optimizer and schedule `train fit` steps with
    optimizer = trainer.create_optimizer()
    trainer.create_scheduler(cfg.steps, optimizer)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["decoder"] == lrs["encoder"] == 0 and lrs["connector"] > 0
    with pytest.raises(ConfigError, match="clip must be global or per_part"):
        load_config("tiny", ["clip=parts"])


def test_a_baseline_run_survives_a_change_of_the_contextual_token_recipe(tmp_path):
    """Pinning e.g. `connector_init` in a recipe keeps its baseline runs: they never read it (tested in
    test_eval_baselines); a Causal2Vec run, or a change a baseline does read, is still refused."""
    before = ["model.config.connector_init=normal", "lr_connector=1e-4"]
    after = ["model.config.connector_init=isometric", "lr_connector=1e-5"]
    for baseline, conflicts in (("mean", []), (None, ["lr_connector", "model.config.connector_init"])):
        extra = [f"baseline={baseline}"] if baseline else []
        saved = load_config("tiny", [*before, *extra]).to_dict()
        found = resume_conflicts(saved, load_config("tiny", [*after, *extra]))
        assert [c.split(":")[0] for c in found] == conflicts
    saved = load_config("tiny", [*before, "baseline=mean"]).to_dict()
    assert resume_conflicts(saved, load_config("tiny", [*after, "baseline=eos"]))  # another baseline
    assert resume_conflicts(saved, load_config("tiny", [*after, "baseline=mean", "lr_decoder=0.5"]))
    # benchmarks.seeds reuses the finished run instead of refusing it (or training again)
    folder = tmp_path / "mean" / "seed-0"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "model.safetensors").write_bytes(b"")
    sets = [*before, "baseline=mean", "seed=0", "model.seed=0"]
    (folder / "train_config.yaml").write_text(yaml.safe_dump(load_config("tiny", sets).to_dict()))
    train("tiny", parse_model("mean"), 0, folder, after)
    with pytest.raises(RunError, match="trained with another config"):
        train("tiny", parse_model("mean"), 0, folder, [*after, "lr_decoder=0.5"])


def test_baseline_tokenizers_honour_a_lower_max_length(tiny):
    long = "word " * 200
    for name in ("eos", "echo", "encoder"):
        tok = build_baseline(name, tiny).tokenizer
        full = len(tok([long])["input_ids"][0])
        assert len(tok([long], max_length=20)["input_ids"][0]) in (19, 20) and full > 20, name  # echo: 2 halves
    batch = tiny.tokenizer([long], max_length=12)
    assert len(batch["input_ids"][0]) == 12 and len(batch["encoder_input_ids"][0]) == 12


def test_diagnose_reports_c_statistics(tiny):
    attention = tiny.decoder.config._attn_implementation
    result = diagnose(tiny, TEXTS, batch_size=2)
    assert tiny.decoder.config._attn_implementation == attention  # eager only while diagnosing
    assert 0 < result["attention_to_c"] < 1 and 0 <= result["c_massive_share"] <= 1
    assert -1 <= result["c_final_cosine"] <= 1 and 0 < result["c_norm_share"] < 1
    assert result["c_input_norm"] == pytest.approx(tiny.connector.norm.weight[0].item() * 32**0.5, rel=0.1)  # eps


def test_parse_model_specs():
    assert parse_model("causal2vec").overrides == []
    eos = parse_model("eos")
    assert eos.overrides == ["baseline=eos"] and eos.baseline == "eos"
    bos = parse_model("bos-off:model.config.decoder_add_bos=false,clip=per_part")
    assert bos.overrides == ["model.config.decoder_add_bos=false", "clip=per_part"] and bos.baseline is None
    assert parse_model("enc:baseline=encoder,lr_encoder=1e-4").baseline == "encoder"
    mat = parse_model("mat:matryoshka_dims=[864, 576,256],steps=10")
    assert mat.overrides == ["matryoshka_dims=[864, 576,256]", "steps=10"]
    pooled = parse_model("eos-pool:from=causal2vec,eval.pooling=eos")
    assert (pooled.source, pooled.pooling, pooled.overrides) == ("causal2vec", "eos", [])
    for bad, message in (
        ("eoss", "unknown model"),
        ("x:novalue", "expected NAME:KEY"),
        ("x:baseline=foo", "foo"),
        ("x:from=causal2vec,lr_decoder=1", "no train overrides"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_model(bad)


def test_aggregate_mean_std_worst_and_dev_average():
    tasks = [t for t in DEV_BATTERY if t not in SELECTION_TASKS]
    per_seed = {s: {t: 10.0 * (i + 1) + s for i, t in enumerate(DEV_BATTERY)} for s in (0, 1, 2)}
    agg = aggregate(per_seed)
    first = tasks[0]
    assert agg[first]["mean"] == pytest.approx(per_seed[1][first]) and agg[first]["std"] == pytest.approx(1.0)
    assert agg[first]["worst"] == per_seed[0][first] and agg[first]["worst_seed"] == 0
    dev = [sum(per_seed[s][t] for t in tasks) / len(tasks) for s in (0, 1, 2)]
    assert agg["dev_avg"]["mean"] == pytest.approx(sum(dev) / 3) and agg["dev_avg"]["worst"] == pytest.approx(dev[0])
    text = table({"causal2vec": agg}, {"causal2vec": 12.0})
    assert f"{agg[first]['mean']:.2f} ± 1.00 ({per_seed[0][first]:.2f})" in text and "| 12 |" in text


def test_seeds_command_trains_evaluates_and_resumes(tmp_path, data_dir, capsys):
    out = tmp_path / "seeds"
    models = ["causal2vec", "eos-pool:from=causal2vec,eval.pooling=eos"]
    args = ["--config", "tiny", "--seeds", "0", "1", "--models", *models, "--output", str(out), "--threads", "1"]
    args += ["--cache", str(tmp_path / "cache")]  # not the checkout's runs/eval-cache
    args += ["--set", f"data={data_dir}", "--set", "steps=2", "--set", "save_every=2"]
    assert main(args) == 0
    runs = [out / "causal2vec" / f"seed-{s}" for s in (0, 1)]
    for seed, run in enumerate(runs):
        config = (run / "model" / "training_config.yaml").read_text()
        assert f"seed: {seed}" in config and "steps: 2" in config
        summary = json.loads((run / "eval" / "summary.json").read_text())
        assert [r["task"] for r in summary["results"]] == list(DEV_BATTERY)
    results = json.loads((out / "table.json").read_text())["results"]
    assert set(results["causal2vec"]["dev_avg"]["seeds"]) == {"0", "1"}
    assert not (out / "eos-pool" / "seed-0" / "model").exists()  # evaluated from causal2vec's runs, not trained
    pooled = json.loads((out / "eos-pool" / "seed-0" / "eval" / "summary.json").read_text())
    assert "[pooling=eos]" in pooled["model"] and results["eos-pool"]["stsb"] != results["causal2vec"]["stsb"]
    assert "causal2vec | 2 |" in (out / "table.md").read_text()
    stamps = [(r / "model" / "model.safetensors").stat().st_mtime for r in runs]
    stamps += [(r / "eval" / "summary.json").stat().st_mtime for r in runs]
    assert main(args) == 0  # a rerun trains and evaluates nothing again
    again = [(r / "model" / "model.safetensors").stat().st_mtime for r in runs]
    again += [(r / "eval" / "summary.json").stat().st_mtime for r in runs]
    assert again == stamps
    capsys.readouterr()
    (out / "table.md").unlink()
    assert main(["--table-only", "--output", str(out), "--seeds", "1"]) == 0  # every model found, by any command
    rows = {line.split(" | ")[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert set(rows) == {"| model", "| causal2vec", "| eos-pool"} and not (out / "table.md").exists()
    seed_1 = json.loads((runs[1] / "eval" / "summary.json").read_text())["results"]
    stsb_dev = next(100 * r["score"] for r in seed_1 if r["task"] == "stsb-dev")
    assert rows["| causal2vec"].startswith(f"| causal2vec | 1 | {stsb_dev:.2f} ± 0.00")
    assert main(["--table-only", "--output", str(tmp_path / "none")]) == 0
    assert "nothing evaluated" in capsys.readouterr().out


def test_diagnose_command_on_a_saved_folder(tiny, tmp_path, capsys):
    from benchmarks.diagnose import main as diagnose_main

    tiny.save_pretrained(tmp_path)
    assert set(diagnose_main(["--model", str(tmp_path), "--n", "4"])) >= {"attention_to_c", "c_massive_share"}
    out = capsys.readouterr().out
    printed = json.loads(out[out.index("{") :])
    assert set(printed) >= {"attention_to_c", "c_massive_share", "c_final_cosine", "c_input_norm"}


def test_pooling_override_embeds_one_half_of_the_concat(tiny, tmp_path):
    from evaluation.embedder import Embedder

    tiny.save_pretrained(tmp_path)
    concat = Embedder.from_path(tmp_path, cache_dir=None, show_progress_bar=False).embed(TEXTS)
    eos = Embedder.from_path(tmp_path, pooling="eos", cache_dir=None, show_progress_bar=False)
    c = Embedder.from_path(tmp_path, pooling="contextual", cache_dir=None, show_progress_bar=False)
    hidden = tiny.config.decoder.hidden_size
    assert eos.model_id != c.model_id  # separate cache entries
    assert abs(eos.embed(TEXTS) - concat[:, hidden:]).max() < 1e-5
    assert abs(c.embed(TEXTS) - concat[:, :hidden]).max() < 1e-5
    with pytest.raises(ValueError, match="unknown pooling 'cls'"):
        Embedder.from_path(tmp_path, pooling="cls", cache_dir=None)
    with pytest.raises(ValueError, match="no baseline"):
        Embedder.from_path(tmp_path, baseline="eos", pooling="eos", cache_dir=None)


def test_a_checkpoint_saved_before_the_new_fields_loads_as_it_was(tmp_path):
    """A config.json without `connector_norm` / `decoder_add_bos` (written before they existed) keeps the old layout
    (no norm, no BOS from the config): same embeddings, no re-initialised weights."""
    model = build_random(connector_norm="none", decoder_add_bos=False).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["connector_norm"], config["decoder_add_bos"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded, info = Causal2VecModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and loaded.config.connector_norm == "none" and not loaded.config.decoder_add_bos
    torch.testing.assert_close(torch.from_numpy(loaded.encode(TEXTS)), torch.from_numpy(model.encode(TEXTS)))
    assert Causal2VecConfig().connector_norm == "rms" and Causal2VecConfig().decoder_add_bos  # new models: the recipe


def test_a_checkpoint_missing_connector_weights_is_refused(tmp_path):
    build_random(connector_norm="none").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["connector_norm"] = "rms"  # says it has a norm its weights lack
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"lacks connector weights \['connector.norm.weight'\]"):
        Causal2VecModel.from_pretrained(tmp_path)


def test_halves_benchmark_scores_each_half_and_rescales_the_gain(tmp_path, capsys):
    from benchmarks.halves import main as halves_main

    sts = tmp_path / "sts.tsv"
    rows = [(TEXTS[i], TEXTS[(i + k) % len(TEXTS)], float((i * 7 + k) % 5)) for i in range(len(TEXTS)) for k in (1, 2)]
    sts.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows))
    folder = tmp_path / "m"
    build_random(contextual_scale=1.0).save_pretrained(folder)
    results = halves_main(["--model", str(folder), "--data", str(sts), "--pairs", "0", "--scales", "1", "64"])
    assert set(results) == {1.0, 64.0} and set(results[1.0]) == {"concat", "C", "EOS", "C input"}
    assert all(-100 <= v <= 100 for r in results.values() for v in r.values())
    # scaling the gain leaves C's direction, so its cosines, alone (what the decoder makes of it is tested above)
    assert results[1.0]["C input"] == pytest.approx(results[64.0]["C input"], abs=1e-6)
    assert f'pairs": {len(rows)}' in capsys.readouterr().out
    eos = tmp_path / "eos"
    build_random(pooling="eos").save_pretrained(eos)
    with pytest.raises(SystemExit):
        halves_main(["--model", str(eos), "--data", str(sts)])


def test_halves_through_the_battery_match_the_battery_and_the_poolings(tmp_path, one_thread):
    """`benchmarks.halves --tasks`: the concat view scores what `evaluation run` does, the C and EOS views what the
    checkpoint scores with `pooling` contextual / eos, and C input what the STS mode measures."""
    from benchmarks.halves import main as halves_main
    from causal2vec.instructions import load_instructions
    from evaluation.embedder import Embedder
    from evaluation.run import evaluate

    root = tmp_path / "eval"
    (root / "stsb").mkdir(parents=True)
    rows = [(TEXTS[i], TEXTS[(i + k) % len(TEXTS)], float((i * 7 + k) % 5)) for i in range(len(TEXTS)) for k in (1, 2)]
    sts = root / "stsb" / "dev.tsv"
    sts.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows))
    folder = tmp_path / "m"
    build_random().save_pretrained(folder)
    args = ["--model", str(folder), "--tasks", "stsb-dev", "--eval-data", str(root), "--cache", str(tmp_path / "c")]
    views = halves_main(args)
    assert set(views) == {"concat", "C", "EOS", "C input"}

    def battery(pooling: str | None) -> float:
        embedder = Embedder.from_path(folder, pooling=pooling, dtype="bf16", show_progress_bar=False)
        return 100 * evaluate(embedder, ["stsb-dev"], root, None, load_instructions())["stsb-dev"]["score"]

    assert views["concat"]["stsb-dev"] == pytest.approx(battery(None), abs=1e-6)
    assert views["C"]["stsb-dev"] == pytest.approx(battery("contextual"), abs=0.5)  # bf16: one forward or another
    assert views["EOS"]["stsb-dev"] == pytest.approx(battery("eos"), abs=0.5)
    plain = halves_main(["--model", str(folder), "--data", str(sts), "--pairs", "0"])
    assert views["C input"]["stsb-dev"] == pytest.approx(plain[1.0]["C input"], abs=1e-6)


def test_connector_init_benchmark_scores_encoder_and_fresh_connectors(tmp_path, capsys):
    from benchmarks.connector_init import main as connector_init_main

    sts = tmp_path / "sts.tsv"
    rows = [(TEXTS[i], TEXTS[(i + k) % len(TEXTS)], float((i * 7 + k) % 5)) for i in range(len(TEXTS)) for k in (1, 2)]
    sts.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows))
    trec = tmp_path / "trec"
    trec.mkdir()
    for split, n in (("train", 12), ("test", 6)):
        lines = [f"{TEXTS[i % len(TEXTS)]} {i}\t{'AB'[i % 2]}\n" for i in range(n)]
        (trec / f"{split}.tsv").write_text("text\tlabel\n" + "".join(lines))
    folder = tmp_path / "m"
    model = build_random()
    model.save_pretrained(folder)
    args = ["--model", str(folder), "--sts", str(sts), "--trec", str(trec), "--draws", "2", "--threads", "1"]
    results = connector_init_main(args)
    draws = {f"{init} #{seed}" for init in ("normal", "isometric") for seed in (0, 1)}
    assert set(results) == {"encoder alone", "checkpoint's connector", *draws}
    assert all(-100 <= v <= 100 for r in results.values() for v in r.values())
    assert results["normal #0"] != results["normal #1"]  # two draws
    assert connector_init_main(args) == results  # each draw is seeded
    # fresh connectors leave the checkpoint's as it was
    loaded = Causal2VecModel.from_pretrained(folder)
    torch.testing.assert_close(loaded.connector.layers[0].weight, model.connector.layers[0].weight)
    assert "isometric #1: sts" in capsys.readouterr().out


def test_joined_benchmark_scores_unit_length_parts_side_by_side(tmp_path, one_thread, capsys):
    """`benchmarks.joined`: each part scores what the battery gives it alone, a part joined with itself scores the
    same (unit-length copies keep every cosine), and C joined with EOS scores the mean of the halves' cosines."""
    from scipy.stats import spearmanr

    from benchmarks.joined import main as joined_main
    from causal2vec.instructions import load_instructions
    from evaluation.embedder import Embedder
    from evaluation.metrics import normalize
    from evaluation.run import evaluate

    root = tmp_path / "eval"
    (root / "stsb").mkdir(parents=True)
    rows = [(TEXTS[i], TEXTS[(i + k) % len(TEXTS)], float((i * 7 + k) % 5)) for i in range(len(TEXTS)) for k in (1, 2)]
    (root / "stsb" / "dev.tsv").write_text(
        "sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows)
    )
    folder = tmp_path / "m"
    build_random().save_pretrained(folder)
    common = ["--tasks", "stsb-dev", "--eval-data", str(root), "--cache", str(tmp_path / "c"), "--threads", "1"]

    twice = joined_main([*common, "--part", f"concat={folder}", "--part", f"concat={folder}"])
    assert twice["joined"]["stsb-dev"] == pytest.approx(twice[f"concat={folder}"]["stsb-dev"], abs=1e-6)

    halves = joined_main([*common, "--part", f"C={folder}", "--part", f"EOS={folder}", "--part", f"echo={folder}"])
    echo = Embedder.from_path(folder, baseline="echo", dtype="bf16", show_progress_bar=False)
    alone = evaluate(echo, ["stsb-dev"], root, None, load_instructions())["stsb-dev"]["score"]
    assert halves[f"echo={folder}"]["stsb-dev"] == pytest.approx(100 * alone, abs=1e-6)

    model = Embedder.from_path(folder, dtype="bf16", show_progress_bar=False)
    texts = list(dict.fromkeys([r[0] for r in rows] + [r[1] for r in rows]))  # as the battery embeds them
    at = {t: i for i, t in enumerate(texts)}
    first, second = [at[r[0]] for r in rows], [at[r[1]] for r in rows]
    hidden = model.model.config.decoder.hidden_size
    full = model.embed(texts, load_instructions()["stsb"])
    views = [full[:, :hidden], full[:, hidden:], echo.embed(texts, load_instructions()["stsb"])]
    cosines = [(normalize(v[first]) * normalize(v[second])).sum(1) for v in views]
    expected = 100 * spearmanr(np.mean(cosines, axis=0), [r[2] for r in rows]).statistic
    assert halves["joined"]["stsb-dev"] == pytest.approx(expected, abs=1e-6)
    assert len({round(v["stsb-dev"], 6) for v in halves.values()}) > 1  # the parts differ: the check above can fail

    eos = tmp_path / "eos"
    build_random(pooling="eos").save_pretrained(eos)
    for bad, message in (
        ([f"C={folder}"], "give two or more --part"),
        ([f"half={folder}", f"C={folder}"], "unknown kind 'half'; expected one of concat, C, EOS, C input, eos"),
        (["C", f"C={folder}"], "part 'C': expected KIND=FOLDER"),
        ([f"C={eos}", f"EOS={folder}"], f"part C={eos}: the checkpoint pools with 'eos'; views need contextual_eos"),
        ([f"echo={root}", f"C={folder}"], f"part echo={root}: not a Causal2Vec checkpoint folder"),
    ):
        with pytest.raises(SystemExit):
            joined_main([*common, *(arg for part in bad for arg in ("--part", part))])
        assert message in capsys.readouterr().err, bad
