"""`python -m train fit --engine trainer` (sentence-transformers' trainer) on the tiny random model: outputs,
refusals, resume, divergence, batches, the loss against the loop's, the `trainer:` block, baselines, export."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEXTS
from safetensors.torch import load_file

from train.__main__ import main

pytestmark = pytest.mark.usefixtures("one_thread")


def fit(output: Path, data: Path, *extra: str) -> int:
    args = ["fit", "--engine", "trainer", "--config", "tiny", "--output", str(output), "--set", f"data={data}"]
    return main([*args, *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir) -> Path:
    """The tiny run the resume tests continue: on one thread, as they are (the module fixture is made before the
    function-scoped `one_thread` applies, and another thread count picks other kernels)."""
    out = tmp_path_factory.mktemp("engine") / "tiny"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert fit(out, data_dir) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_metrics_checkpoints_and_export(run):
    lines = metrics(run)
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(m["loss"]) and m["pairs_per_s"] > 0 and m["tokens_per_s"] > 0 for m in lines)
    assert all(set(m["lr"]) == set(m["grad_norms"]) == {"decoder", "connector", "encoder"} for m in lines)
    assert all(m["grad_norm"] == pytest.approx(sum(v**2 for v in m["grad_norms"].values()) ** 0.5) for m in lines)
    assert lines[-1]["lr"]["decoder"] == 0.0 and lines[0]["lr"]["connector"] > 0  # the cosine schedule's end
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
    card = (model / "README.md").read_text()
    assert f"| final_loss | {round(lines[-1]['loss'], 4)} |" in card and "| steps | 6 |" in card
    assert "| snli.jsonl | 40 |" in card and "| wikiqa.jsonl | 24 |" in card
    from transformers import AutoModel

    exported = AutoModel.from_pretrained(model, trust_remote_code=True)
    assert not any("lora" in k for k in exported.state_dict())  # merged
    assert np.isfinite(exported.encode(TEXTS)).all()


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


def test_resume_ends_with_the_same_weights(run, data_dir, tmp_path):
    """Resume from checkpoint 3 (dropout is on: the RNG states come back too) skips the cut-short checkpoint and
    ends with the uninterrupted run's weights; the metrics after step 3 are rewritten."""
    out = interrupted_copy(run, tmp_path / "again")
    assert fit(out, data_dir, "--resume", "--set", "keep_checkpoints=3") == 0
    a, b = load_file(run / "model" / "model.safetensors"), load_file(out / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    diffs = {k: float((a[k].float() - b[k].float()).abs().max()) for k in a}
    # every state comes back (weights, optimizer, scheduler, RNG, data position): bit-equal on one machine and
    # thread count; 1e-6 leaves room for kernels that are not bitwise reproducible run to run
    assert max(diffs.values()) <= 1e-6, {k: d for k, d in diffs.items() if d}
    assert [m["step"] for m in metrics(out)] == [1, 2, 3, 4, 5, 6]
    assert [m["loss"] for m in metrics(out)] == pytest.approx([m["loss"] for m in metrics(run)], abs=1e-6)


def test_refusals_name_the_problem(run, data_dir, tmp_path, capsys):
    assert fit(run, data_dir) == 1
    assert "not empty" in capsys.readouterr().err or (run / "model" / "model.safetensors").is_file()
    assert fit(tmp_path / "nothing", data_dir, "--resume") == 1
    assert "does not exist: nothing to resume" in capsys.readouterr().err
    assert fit(run, data_dir, "--resume", "--overwrite") == 1
    assert "not both" in capsys.readouterr().err
    out = interrupted_copy(run, tmp_path / "changed")
    assert fit(out, data_dir, "--resume", "--set", "lr_decoder=0.5") == 1
    err = capsys.readouterr().err
    assert "saved with another config" in err and "lr_decoder: " in err and "-> 0.5" in err
    assert not (out / "model").exists()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("trainer.not_a_field=1", "unknown trainer key(s): not_a_field"),
        ("trainer.learning_rate=0.1", "trainer.learning_rate: set lr_decoder / lr_connector / lr_encoder instead"),
        ("trainer.save_steps=5", "trainer.save_steps: set save_every instead"),
        ("trainer.logging_steps=5", "trainer.logging_steps is not available on this engine: metrics.jsonl logs"),
        ("trainer.fsdp=full_shard", "trainer.fsdp is not available on this engine: not supported yet"),
        ("trainer.push_to_hub=true", "upload the export, `hf upload NAME OUTPUT/model .`"),
        ("half_loss_weight=0.5", "needs a Causal2Vec model with pooling contextual_eos, got pooling eos"),
    ],
)
def test_trainer_block_refuses_unknown_and_owned_keys(tmp_path, data_dir, capsys, key, message):
    extra = ["--set", "model.config.pooling=eos"] if key.startswith("half") else []
    assert fit(tmp_path / "bad", data_dir, "--set", key, *extra) == 1
    assert message in capsys.readouterr().err


def test_trainer_block_reaches_the_trainer(tmp_path, data_dir):
    """Any other TrainingArguments field is the Trainer's: two micro-batches of 4 per step of 8 pairs."""
    out = tmp_path / "accumulate"
    sets = ["trainer.gradient_accumulation_steps=2", "steps=2", "save_every=2", "batch_size=4"]
    assert fit(out, data_dir, *[a for s in sets for a in ("--set", s)]) == 0
    state = json.loads((out / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["train_batch_size"] == 4
    args = torch.load(out / "checkpoints" / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert args.gradient_accumulation_steps == 2


def test_divergence_stops_before_saving_the_step(tmp_path, data_dir, capsys):
    out = tmp_path / "diverge"
    code = fit(out, data_dir, "--set", "lr_connector=1e30", "--set", "warmup_steps=0", "--set", "save_every=1")
    assert code == 1
    err = capsys.readouterr().err
    assert re.search(r"(grad norm nan|non-finite weights|loss nan).* at step 2", err), err
    assert f"Last checkpoint: {out / 'checkpoints' / 'checkpoint-1'}" in err
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-1"]
    weights = load_file(out / "checkpoints" / "checkpoint-1" / "trainable.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert not (out / "model").exists()


def test_batches_hold_one_source_and_no_duplicates(tmp_path, data_dir, caplog):
    """The Trainer's own samplers (proportional over datasets, no duplicates): each batch's rows come from one
    file, no text repeats within a batch, and the datasets split by negative count keep every row."""
    from train.config import load_config
    from train.engine import build_trainer

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
        texts = [t for row in rows for t in row.values()]
        assert len(texts) == len(set(texts)), "a text repeats within a batch"
    query = data[names[0]][0]["anchor"]
    assert query.startswith("Instruct: ") and "\nQuery: " in query  # the row's own instruction as the query prompt


@pytest.mark.parametrize("chunk", [0, 2])
@pytest.mark.parametrize("half", [0.0, 0.5])
def test_loss_is_the_loops_info_nce(tiny, half, chunk):
    """On the same batch and model, the engine's loss is the loop's InfoNCE (in-batch + hard negatives, cosine /
    temperature, plus the halves' term), plain or cached (GradCache in chunks of 2), and so are its gradients."""
    from sentence_transformers import SentenceTransformer

    from train.config import load_config
    from train.engine import Causal2VecModule, InfoNCE
    from train.loss import contrastive_loss, embed

    cfg = load_config("tiny", [f"half_loss_weight={half}", f"cached_chunk_size={chunk}"])
    tiny.eval()
    queries, docs, negs = TEXTS[:3], ["A man plays music.", "A cat naps.", "Markets dropped."], TEXTS[2:]
    texts = queries + docs + negs
    emb, _ = embed(tiny, tiny.tokenizer, texts, contextlib.nullcontext)
    expected = contrastive_loss(emb, 3, 3, cfg.temperature, half)
    expected.backward()
    want = {n: p.grad.clone() for n, p in tiny.named_parameters() if p.grad is not None}
    tiny.zero_grad()
    st = SentenceTransformer(modules=[Causal2VecModule(tiny)], device="cpu")
    loss = InfoNCE(st, cfg)
    module = st[0]
    features = [module.preprocess(column) for column in (queries, docs, negs)]
    got = loss(features, None)
    got.backward()
    assert float(got) == pytest.approx(float(expected), abs=1e-5)
    for name, grad in want.items():
        torch.testing.assert_close(dict(tiny.named_parameters())[name].grad, grad, atol=1e-5, rtol=1e-4, msg=name)


def test_a_baseline_trains_on_the_engine(tmp_path, data_dir):
    out = tmp_path / "eos"
    assert fit(out, data_dir, "--set", "baseline=eos", "--set", "steps=2", "--set", "save_every=2") == 0
    assert [m["step"] for m in metrics(out)] == [1, 2]
    assert set(metrics(out)[0]["grad_norms"]) == {"decoder"}  # no connector or encoder in the eos baseline
    assert (out / "model" / "model.safetensors").is_file()


def test_accelerate_examples_load_and_the_7b_config_makes_trainer_arguments(tmp_path):
    """The accelerate configs parse with accelerate's own reader (an unknown key would fail), each says how it is
    launched; mistral7b.yaml's trainer: block and keys make valid Trainer arguments for 8 processes."""
    from accelerate.commands.config.config_args import load_config_from_file

    from causal2vec import REPO_ROOT
    from train.config import load_config
    from train.engine import training_arguments

    folder = REPO_ROOT / "train" / "configs" / "accelerate"
    kinds = {}
    for path in sorted(folder.glob("*.yaml")):
        kinds[path.stem] = str(load_config_from_file(str(path)).distributed_type)
        assert "accelerate launch --config_file train/configs/accelerate/" in path.read_text(), path
    assert kinds == {
        "ddp": "DistributedType.MULTI_GPU",
        "fsdp": "DistributedType.FSDP",
        "deepspeed_zero2": "DistributedType.DEEPSPEED",
        "deepspeed_zero3": "DistributedType.DEEPSPEED",
    }
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


def test_bench_times_both_engines_side_by_side(tmp_path, data_dir):
    """`python -m train bench --engine both`: each setting on the loop and on the trainer, each in its process."""
    out = tmp_path / "bench.json"
    args = ["bench", "--config", "tiny", "--set", f"data={data_dir}", "--engine", "both", "--settings", "fp32"]
    assert main([*args, "--steps", "2", "--batch-size", "4", "--output", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"fp32@loop", "fp32@trainer"}
    for r in results.values():
        assert r["pairs_per_s"] > 0 and r["tokens_per_s"] > 0 and r["s_per_step"] > 0
        assert r["peak_mib"] > 0 and r["memory"] in ("peak_rss", "cuda_max_allocated")
