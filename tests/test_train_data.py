"""Training data: validation with file:line errors, and the seeded, task-homogeneous, resumable batch stream."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import SHARED_TRAIN

from train.data import BatchStream, DataError, load_files, read_jsonl


def prompt(instruction: str | None) -> str:
    return f"Instruct: {instruction or 'default'}\nQuery: "


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def good(i: int, **kw) -> dict:
    return {"query": f"q{i}", "pos": [f"p{i}"], "neg": [f"n{i}a", f"n{i}b"], "instruction": "find", **kw}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"query": "q", "pos": ["p"]', "invalid JSON"),
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
    rows, skipped = read_jsonl(tmp_path / "a.jsonl")
    assert [r.query for r in rows] == ["q0", "q2"] and skipped == 1
    with caplog.at_level(logging.WARNING):
        files = load_files(tmp_path / "a.jsonl")
    assert list(files) == ["a"] and "skipped 1 row(s) without a positive" in caplog.text


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_files(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="no \\*.jsonl files"):
        load_files(tmp_path)


def make_stream(files, batch_size=4, k=1, seed=0) -> BatchStream:
    return BatchStream(files, batch_size, k, seed, prompt)


def test_batches_are_homogeneous_distinct_and_seeded(tmp_path):
    write(tmp_path / "a.jsonl", [good(i, instruction="task a") for i in range(10)])
    # b: rows 0-4 share one positive, so at most one of them fits in a batch
    write(tmp_path / "b.jsonl", [good(i, pos=["shared"] if i < 5 else [f"b{i}"]) for i in range(13)])
    files = load_files(tmp_path)
    stream = make_stream(files, batch_size=4, k=1)
    epoch = stream.plan(0)
    assert len(stream.plan(0)) == len(epoch)
    for batch in epoch:
        assert len(batch) == 4 and len(batch.positives) == 4
        assert all(len(n) <= 1 for n in batch.negatives)
        texts = batch.positives + batch.flat_negatives
        assert len(set(texts)) == len(texts), "no duplicate document in a batch"
        assert len(set(batch.queries)) == len(batch.queries)
        expected = "task a" if batch.source == "a" else "find"
        assert all(q.startswith(f"Instruct: {expected}\nQuery: q") for q in batch.queries)
        assert batch.positives.count("shared") <= 1
    assert {b.source for b in epoch} == {"a", "b"}
    assert stream.skipped_duplicates >= 2  # 5 rows share a positive; 13 rows give at most 3 batches
    same = [(b.queries, b.negatives) for b in make_stream(files).plan(0)]
    assert same == [(b.queries, b.negatives) for b in epoch]
    other = [(b.queries, b.negatives) for b in make_stream(files, seed=1).plan(0)]
    assert other != same
    assert [b.queries for b in stream.plan(1)] != [b.queries for b in epoch], "each epoch reshuffles"


def test_duplicates_skipped_in_the_first_epoch_are_logged(tmp_path, caplog):
    # 6 of 10 rows share a positive: at most one of them per batch, and there are at most 3 batches (of 4)
    write(tmp_path / "a.jsonl", [good(i, pos=["shared"] if i < 6 else [f"a{i}"]) for i in range(10)])
    stream = make_stream(load_files(tmp_path), batch_size=4)
    with caplog.at_level(logging.INFO, logger="train.data"):
        next(stream)
    assert "epoch 0:" in caplog.text and f"{stream.skipped_duplicates} rows skipped as duplicates" in caplog.text
    assert stream.skipped_duplicates >= 3


def test_hard_negative_count_is_configurable(tmp_path):
    write(tmp_path / "a.jsonl", [good(i) for i in range(8)])
    files = load_files(tmp_path)
    for k in (0, 1, 2, 5):
        for batch in make_stream(files, k=k).plan(0):
            assert [len(n) for n in batch.negatives] == [min(k, 2)] * 4


def test_stream_resumes_from_its_state(tmp_path):
    write(tmp_path / "a.jsonl", [good(i) for i in range(9)])
    write(tmp_path / "b.jsonl", [good(100 + i) for i in range(6)])
    files = load_files(tmp_path)
    stream = make_stream(files, batch_size=3)
    full = [next(stream).queries for _ in range(12)]  # crosses epoch boundaries (5 batches an epoch)
    again = make_stream(files, batch_size=3)
    head = [next(again).queries for _ in range(7)]
    state = again.state_dict()
    resumed = make_stream(files, batch_size=3)
    resumed.load_state_dict(state)
    assert head + [next(resumed).queries for _ in range(5)] == full


def test_batch_too_large_for_every_file(tmp_path):
    write(tmp_path / "a.jsonl", [good(i) for i in range(3)])
    with pytest.raises(DataError, match="lower batch_size"):
        next(make_stream(load_files(tmp_path), batch_size=4))


def test_shared_training_files_load():
    if not SHARED_TRAIN.is_dir():
        pytest.skip(f"{SHARED_TRAIN} is not there")
    files = load_files(SHARED_TRAIN)
    assert {"snli", "scifact", "agnews"} <= set(files)
    batch = next(make_stream(files, batch_size=16))
    assert len(batch) == 16 and len(batch.shard(1, 2)) == 8
