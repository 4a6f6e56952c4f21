"""Training data: validation with file:line errors; `training_datasets` (one dataset per file and negative count,
per-row prompts) and the Trainer's real samplers over them: one source per batch, no repeated text in a batch,
seeded and rebuilt identically (what a resume relies on)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED_TRAIN

from train.config import load_config
from train.data import DataError, load_files, training_datasets

COLUMNS = ("anchor", "positive")


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def good(i: int, **kw) -> dict:
    return {"query": f"q{i}", "pos": [f"p{i}"], "neg": [f"n{i}a", f"n{i}b"], "instruction": "find", **kw}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"query": "q", "pos": ["p"]', "not valid JSON"),
        ('["q", "p"]', "expected a JSON object"),
        ({"pos": ["p"]}, "missing field 'query'"),
        ({"query": "q"}, "missing field 'pos'"),
        ({"query": 3, "pos": ["p"]}, "'query' must be a string"),
        ({"query": "q", "pos": "p"}, "'pos' must be a list of strings"),
        ({"query": "q", "pos": ["p", 7]}, "pos[1] must be a string"),
        ({"query": "q", "pos": ["p"], "neg": [""]}, "neg[0] is an empty string"),
        ({"query": "  ", "pos": ["p"]}, "'query' is an empty string"),
        ({"query": "q", "pos": ["p"], "instruction": ""}, "'instruction' must be a non-empty string"),
        ({"query": "q", "pos": ["p"], "negs": ["n"]}, "unknown field(s) 'negs'"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, bad, message):
    path = write(tmp_path / "task.jsonl", [good(0), good(1), bad])
    with pytest.raises(DataError) as err:
        load_files(tmp_path)
    assert f"{path}:3:" in str(err.value)
    assert message in str(err.value)


def test_bad_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "task.jsonl"
    path.write_bytes(json.dumps(good(0)).encode() + b"\n" + b'{"query": "caf\xe9", "pos": ["p"]}\n')
    with pytest.raises(DataError, match=f"{path}:2: not valid UTF-8"):
        load_files(tmp_path)


def test_rows_without_positive_are_skipped_and_logged(tmp_path, caplog):
    write(tmp_path / "a.jsonl", [good(0), {"query": "q", "pos": [], "neg": ["x"]}, "", good(2)])
    with caplog.at_level(logging.WARNING):
        files = load_files(tmp_path / "a.jsonl")
    assert list(files) == ["a"] and [r.query for r in files["a"]] == ["q0", "q2"]
    assert "skipped 1 row(s) without a positive" in caplog.text  # the one row without a positive


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_files(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="no \\*.jsonl files"):
        load_files(tmp_path)


def trainer_for(data: Path, *overrides: str) -> Any:
    """The real Trainer of `fit` on the tiny config (batches of 4 unless overridden) on the JSONL files in `data`."""
    from train.fit import build_trainer

    cfg = load_config("tiny", [f"data={data}", "batch_size=4", *overrides])
    trainer, _ = build_trainer(cfg, data / "out")
    return trainer


def batches(trainer: Any, epoch: int = 0) -> list[list[dict[str, str]]]:
    """One epoch of the Trainer's batches, as the rows its batch sampler picks (with their `dataset_name`)."""
    loader = trainer.get_train_dataloader()
    loader.batch_sampler.set_epoch(epoch)
    return [[loader.dataset[i] for i in batch] for batch in loader.batch_sampler]


def texts(batch: list[dict[str, str]]) -> list[str]:
    """Every text of a batch: its queries, positives and negatives (not the `dataset_name` column)."""
    return [text for row in batch for column, text in row.items() if column != "dataset_name"]


def test_batches_are_homogeneous_distinct_and_seeded(tmp_path):
    write(tmp_path / "a.jsonl", [good(i, instruction=f"task a{i % 2}") for i in range(10)])  # two instructions
    # b: rows 0-4 share one positive, so at most one of them fits in a batch
    write(tmp_path / "b.jsonl", [good(i, pos=["shared"] if i < 5 else [f"b{i}"]) for i in range(13)])
    trainer = trainer_for(tmp_path, "hard_negatives=1")
    config = trainer.model[0].model.config
    epoch = batches(trainer)
    assert len(epoch) == len(trainer.get_train_dataloader().batch_sampler) == 10 // 4 + 13 // 4
    for batch in epoch:
        assert len(batch) == 4
        assert all(set(row) == {*COLUMNS, "negative_1", "dataset_name"} for row in batch), "one negative per query"
        sources = {row["dataset_name"] for row in batch}
        assert len(sources) == 1, f"a batch mixes files: {sources}"
        all_texts = texts(batch)
        assert len(set(all_texts)) == len(all_texts), "a text repeats within a batch"
        for row in batch:  # the query prompt of the row's own instruction
            i = int(row["anchor"].rsplit("\nQuery: q", 1)[1])
            prompt = config.query_prompt(f"task a{i % 2}" if sources == {"a"} else "find")
            assert row["anchor"] == f"{prompt}q{i}"
        assert [row["positive"] for row in batch].count("shared") <= 1
    assert {batch[0]["dataset_name"] for batch in epoch} == {"a", "b"}
    same = batches(trainer_for(tmp_path, "hard_negatives=1"))
    assert same == epoch
    other = batches(trainer_for(tmp_path, "hard_negatives=1", "seed=1"))
    assert other != same
    assert batches(trainer, epoch=1) != epoch, "each epoch reshuffles"


def test_rows_sharing_a_positive_meet_at_most_once_per_batch(tmp_path):
    """Six of ten rows share a positive: the sampler defers the clashing rows (to later batches, or to a reshuffled
    pass that fills the epoch), so every batch holds that positive once at most."""
    write(tmp_path / "a.jsonl", [good(i, pos=["shared"] if i < 6 else [f"a{i}"]) for i in range(10)])
    trainer = trainer_for(tmp_path)
    assert trainer.train_dataset["a"]["positive"].count("shared") == 6, "the data keeps every row"
    for epoch in range(3):
        seen = batches(trainer, epoch)
        assert len(seen) == 10 // 4 and all(len(batch) == 4 for batch in seen)
        positives = [[row["positive"] for row in batch] for batch in seen]
        assert all(p.count("shared") <= 1 for p in positives), positives
        assert any("shared" in p for p in positives), "the shared positive still trains"
        assert all(len(set(texts(batch))) == len(texts(batch)) for batch in seen)


def test_batches_are_the_same_when_the_sampler_is_built_again(tmp_path):
    """What a resume relies on (the Trainer rebuilds the dataloader, sets the epoch and skips the batches already
    trained): another Trainer of the same config draws the same batches, epoch by epoch."""
    write(tmp_path / "a.jsonl", [good(i) for i in range(9)])
    write(tmp_path / "b.jsonl", [good(100 + i) for i in range(6)])
    first = trainer_for(tmp_path, "batch_size=3")
    full = [batch for epoch in range(3) for batch in batches(first, epoch)][:12]  # 5 batches an epoch
    assert len(full) == 12 and full[:5] != full[5:10], "each epoch reshuffles"
    resumed = trainer_for(tmp_path, "batch_size=3")  # stopped after 7 batches: epoch 1, 2 batches in
    rest = batches(resumed, 1)[2:] + batches(resumed, 2)[:2]
    assert full[:7] + rest == full
    assert batches(resumed, 0) == batches(first, 0), "the same dataloader built twice"


def test_hard_negative_count_is_configurable(tmp_path, tiny):
    write(tmp_path / "a.jsonl", [good(i) for i in range(8)])
    files = load_files(tmp_path)
    for k in (0, 1, 2, 5):
        cfg = load_config("tiny", ["batch_size=4", f"hard_negatives={k}"])
        data = training_datasets(files, cfg, tiny.config)
        negatives = [f"negative_{i + 1}" for i in range(min(k, 2))]
        assert list(data) == ["a" if k <= 2 else "a/2neg"]
        [dataset] = data.values()
        assert dataset.column_names == [*COLUMNS, *negatives] and len(dataset) == 8
        assert all(row[n].startswith("n") for row in dataset for n in negatives)
    # rows with fewer negatives than asked: their own dataset, since a batch's columns are fixed
    write(tmp_path / "a.jsonl", [good(i) for i in range(8)] + [good(i, neg=[f"m{i}"]) for i in range(8, 12)])
    cfg = load_config("tiny", ["batch_size=4", "hard_negatives=2"])
    data = training_datasets(load_files(tmp_path), cfg, tiny.config)
    assert {name: len(d.column_names) for name, d in data.items()} == {"a": 4, "a/1neg": 3}
    assert data["a/1neg"]["negative_1"] == [f"m{i}" for i in range(8, 12)]


def test_batch_too_large_for_every_file(tmp_path, tiny, caplog):
    write(tmp_path / "a.jsonl", [good(i) for i in range(3)])
    cfg = load_config("tiny", ["batch_size=4"])
    with pytest.raises(DataError, match="lower batch_size"):
        training_datasets(load_files(tmp_path), cfg, tiny.config)
    write(tmp_path / "b.jsonl", [good(i) for i in range(4)])  # beside a file with a batch: left out, and said so
    with caplog.at_level(logging.WARNING, logger="train.data"):
        data = training_datasets(load_files(tmp_path), cfg, tiny.config)
    assert list(data) == ["b"] and "a: 3 row(s) left out" in caplog.text


def test_shared_training_files_load(tiny):
    if not SHARED_TRAIN.is_dir():
        pytest.skip(f"{SHARED_TRAIN} is not there")
    files = load_files(SHARED_TRAIN)
    assert {"snli", "scifact", "agnews"} <= set(files)
    data = training_datasets(files, load_config("tiny", ["batch_size=16"]), tiny.config)
    assert {"snli", "scifact", "agnews"} <= {name.split("/")[0] for name in data}
    assert all(len(d) >= 16 for d in data.values()), "each dataset holds a batch"
    assert sum(len(d) for name, d in data.items() if name.split("/")[0] == "snli") <= len(files["snli"])
