"""Training data from `datasets`: save_to_disk folders and parquet files with sentence-transformers' columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from causal2vec import REPO_ROOT
from train.__main__ import main
from train.data import DataError, Row, load_data

TRIPLETS = {
    "anchor": [f"question {i}" for i in range(10)],
    "positive": [f"answer {i}" for i in range(10)],
    "negative": [f"wrong {i}" for i in range(10)],
}


def test_save_to_disk_folder_with_anchor_positive_negative(tmp_path):
    Dataset.from_dict(TRIPLETS).save_to_disk(tmp_path / "nli")
    files, labels = load_data(tmp_path / "nli")
    assert labels == {"nli": "nli (datasets folder)"}
    assert files["nli"][3] == Row("question 3", ("answer 3",), ("wrong 3",), None)
    assert len(files["nli"]) == 10


def test_dataset_dict_uses_its_train_split(tmp_path):
    splits = DatasetDict(
        train=Dataset.from_dict(TRIPLETS), test=Dataset.from_dict({k: v[:2] for k, v in TRIPLETS.items()})
    )
    splits.save_to_disk(tmp_path / "nli")
    files, labels = load_data(tmp_path / "nli")
    assert len(files["nli"]) == 10 and labels["nli"] == "nli (datasets folder), train split"
    DatasetDict(dev=splits["test"], test=splits["test"]).save_to_disk(tmp_path / "no-train")
    with pytest.raises(DataError, match="no 'train' split to train on; splits found: dev, test"):
        load_data(tmp_path / "no-train")


def test_parquet_with_query_pos_neg_lists_and_instructions(tmp_path):
    data = {
        "query": ["q0", "q1", "q2"],
        "pos": [["p0", "p0b"], ["p1"], []],
        "neg": [["n0"], None, ["n2"]],
        "instruction": ["find it", None, "find it"],
    }
    Dataset.from_dict(data).to_parquet(tmp_path / "part-0.parquet")
    files, labels = load_data(tmp_path / "part-0.parquet")
    assert files["part-0"] == [Row("q0", ("p0", "p0b"), ("n0",), "find it"), Row("q1", ("p1",), (), None)]
    assert labels["part-0"] == "part-0.parquet (1 parquet file)"  # the row without a positive is skipped
    folder = tmp_path / "shards"
    folder.mkdir()
    Dataset.from_dict({k: v[:2] for k, v in data.items()}).to_parquet(folder / "a.parquet")
    Dataset.from_dict({k: v[2:] for k, v in data.items()}).to_parquet(folder / "b.parquet")
    files, labels = load_data(folder)
    assert len(files["shards"]) == 2 and labels["shards"] == "shards (2 parquet files)"


def test_a_hub_style_parquet_folder_trains_on_its_train_split_only(tmp_path):
    """`data/train-*.parquet` next to `data/test-*.parquet` (a downloaded Hub snapshot): test rows never leak in."""
    data = tmp_path / "snapshot" / "data"
    data.mkdir(parents=True)
    Dataset.from_dict(TRIPLETS).to_parquet(data / "train-00000-of-00001.parquet")
    Dataset.from_dict({k: [f"{x} (test)" for x in v[:3]] for k, v in TRIPLETS.items()}).to_parquet(
        data / "test-00000-of-00001.parquet"
    )
    files, labels = load_data(tmp_path / "snapshot")
    assert len(files["snapshot"]) == 10 and labels["snapshot"] == "snapshot (1 parquet file)"
    assert not any("(test)" in row.query for row in files["snapshot"])
    (data / "train-00000-of-00001.parquet").unlink()
    with pytest.raises(DataError, match="split\\(s\\) test only; no train split"):
        load_data(tmp_path / "snapshot")
    DatasetDict(validation=Dataset.from_dict(TRIPLETS)).save_to_disk(tmp_path / "val-only")
    with pytest.raises(DataError, match="no 'train' split to train on; splits found: validation"):
        load_data(tmp_path / "val-only")


def test_numbered_negative_columns(tmp_path):
    Dataset.from_dict({**TRIPLETS, "negative_2": [f"other {i}" for i in range(10)]}).save_to_disk(tmp_path / "d")
    files, _ = load_data(tmp_path / "d")
    assert files["d"][0].neg == ("wrong 0", "other 0")


@pytest.mark.parametrize(
    ("columns", "found"),
    [
        ({"question": ["q"], "answer": ["a"]}, "found question, answer"),
        ({"anchor": ["q"], "negative": ["n"]}, "found anchor, negative"),
        ({"anchor": ["q"], "positive": ["p"], "score": [1.0]}, "found anchor, positive, score"),
        ({"query": ["q"], "positive": ["p"]}, "found query, positive"),
    ],
)
def test_bad_columns_name_the_columns_found(tmp_path, columns, found):
    Dataset.from_dict(columns).save_to_disk(tmp_path / "d")
    with pytest.raises(DataError) as err:
        load_data(tmp_path / "d")
    assert "expected columns anchor, positive, negative" in str(err.value) and found in str(err.value)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"anchor": ["q", "r"], "positive": [3, 7]}, "row 0: column 'positive' holds int"),
        ({"anchor": ["q", None], "positive": ["p", "p2"]}, "row 1: 'query' must be a string"),
        ({"query": ["q"], "pos": [["p", ""]]}, "row 0: pos[1] is an empty string"),
    ],
)
def test_bad_cells_name_the_row(tmp_path, columns, message):
    Dataset.from_dict(columns).save_to_disk(tmp_path / "d")
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_data(tmp_path / "d")


def test_a_hub_id_that_cannot_be_loaded_says_why(tmp_path):
    """A bare owner/name with nothing of it here is tried on the Hub; offline, the error gives both readings."""
    script = (
        "import sys; from pathlib import Path; from train.data import load_data\n"
        "try:\n    load_data(Path(sys.argv[1]), 'causal2vec-tests/no-such-dataset:triplet')\n"
        "except Exception as err:\n    print(type(err).__name__, err)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    missing = tmp_path / "causal2vec-tests" / "no-such-dataset:triplet"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(missing)], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    out = proc.stdout
    assert out.startswith("DataError causal2vec-tests/no-such-dataset:triplet: neither a local file or folder ("), (
        out + proc.stderr[-2000:]
    )
    assert f"({missing} does not exist) nor a Hub dataset that could be loaded (" in out
    assert "check the path, or the dataset id and the network" in out


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("data/tran", "data/ exists locally"),  # a typo under a folder that exists: never a Hub lookup
        ("./qa/set", "it starts with ./"),
        ("../qa/set", "it starts with ../"),
        ("foo/bar.jsonl", "it has a file extension (.jsonl)"),
        ("foo/train.parquet", "it has a file extension (.parquet)"),
        ("data/sub/train", "it is not of the form owner/name[:config]"),
    ],
)
def test_a_missing_local_looking_path_says_it_does_not_exist(tmp_path, monkeypatch, spec, reason):
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = (tmp_path / spec).resolve()
    with pytest.raises(DataError) as err:
        load_data(path, spec)
    assert str(err.value) == f"{spec}: no such file or folder ({path} does not exist; not a Hub dataset id: {reason})"


def test_an_absolute_path_that_does_not_exist(tmp_path):
    spec = str(tmp_path / "owner" / "name")
    with pytest.raises(DataError, match="it starts with /"):
        load_data(Path(spec), spec)


def test_fit_with_a_mistyped_relative_data_path(tmp_path, capsys):
    """`data=train/dta` (relative to the repository root, whose train/ exists) is a missing path, not a Hub id."""
    out = tmp_path / "run"
    assert main(["fit", "--config", "tiny", "--output", str(out), "--set", "data=train/dta"]) == 1
    err = capsys.readouterr().err
    assert f"train/dta: no such file or folder ({REPO_ROOT / 'train' / 'dta'} does not exist" in err, err
    assert "train/ exists locally" in err


def test_fit_trains_on_a_datasets_folder(tmp_path, one_thread):
    Dataset.from_dict({**TRIPLETS, "instruction": ["find the answer"] * 10}).save_to_disk(tmp_path / "qa")
    out = tmp_path / "run"
    assert main(["fit", "--config", "tiny", "--output", str(out), "--set", f"data={tmp_path / 'qa'}",
                 "--set", "steps=2", "--set", "batch_size=4", "--set", "save_every=2"]) == 0  # fmt: skip
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["source"] for m in metrics] == ["qa", "qa"]
    assert "| qa (datasets folder) | 10 |" in (out / "model" / "README.md").read_text()
    assert Path(out / "model" / "handler.py").is_file()
