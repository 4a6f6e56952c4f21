"""The efficiency benchmark end to end on a tiny checkpoint and fixture data."""

from __future__ import annotations

import json

import pytest
from eval_fixtures import make_data

from benchmarks.efficiency import main


def test_efficiency_command(tiny, tmp_path):
    root = make_data(tmp_path / "data")
    tiny.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "eff"
    args = [
        "--model",
        str(tmp_path / "ckpt"),
        "--data",
        str(root),
        "--output",
        str(out),
        "--n-sts",
        "8",
        "--n-docs",
        "4",
        "--dtypes",
        "fp32",
        "bf16",
        "--lengths",
        "8",
        "64",
        "--curve-pairs",
        "6",
        "--curve-docs",
        "2",
        "--batch-size",
        "4",
        "--no-gpu",
        "--title",
        "tiny random model",
    ]
    assert main(args) == 0
    results = json.loads((out / "efficiency.json").read_text())
    assert results["title"] == "tiny random model"
    assert (out / "efficiency.png").read_bytes()[:4] == b"\x89PNG"
    rows = results["speed"]
    assert len(rows) == 2 * 2 * 7  # dtypes x text sets x methods
    for dtype in ("fp32", "bf16"):
        group = {r["method"]: r for r in rows if r["dtype"] == dtype and r["texts"] == "stsb-test"}
        assert group["causal2vec"]["time_ratio"] == 1.0 and group["causal2vec"]["decoder_token_ratio"] == 1.0
        assert group["causal2vec"]["encoder_seconds_per_1k"] == group["encoder"]["seconds_per_1k"]
        # decoder lengths: C adds one token to the plain input; Echo doubles the text; demos are long
        assert group["causal2vec"]["decoder_tokens"] == pytest.approx(group["eos"]["decoder_tokens"] + 1)
        assert group["echo"]["decoder_tokens"] > 2 * group["eos"]["decoder_tokens"] - 1
        assert group["incontext"]["decoder_tokens"] > group["echo"]["decoder_tokens"]
        assert all(r["seconds_per_1k"] > 0 for r in group.values())
    curve = results["length_curve"]
    assert [(r["method"], r["decoder_max_length"]) for r in curve] == [
        ("causal2vec", 8),
        ("causal2vec", 64),
        ("eos", 8),
        ("eos", 64),
    ]
    assert all(r["stsb_decoder_tokens"] <= r["decoder_max_length"] for r in curve)
    assert curve[0]["scifact_decoder_tokens"] == 8 and curve[1]["scifact_decoder_tokens"] > 8
    table = (out / "efficiency.md").read_text()
    assert "| echo |" in table and "| causal2vec | 64 |" in table
    assert all(r["cpu_seconds_per_1k"] > 0 and "cpu_time_ratio" in r for r in rows)


def test_chart_title_is_the_folder_name_or_the_given_title(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from benchmarks.efficiency import plot

    titles = []
    original = Figure.suptitle
    monkeypatch.setattr(Figure, "suptitle", lambda self, t, **kw: (titles.append(t), original(self, t, **kw))[1])
    row = {"device": "cpu", "dtype": "fp32", "texts": "stsb-test", "method": "eos", "n": 2, "decoder_tokens": 3.0}
    results = {"model": "/tmp/c2v_default/", "machine": "x86_64", "threads": 1, "speed": [{**row, "seconds_per_1k": 1}]}
    plot(results, tmp_path / "a.png")
    assert titles[-1].startswith("c2v_default  (") and "/tmp" not in titles[-1]
    plot({**results, "title": "SmolLM2 + MiniLM, untrained"}, tmp_path / "b.png")
    assert titles[-1].startswith("SmolLM2 + MiniLM, untrained  (")
    from benchmarks.efficiency import chart_title

    assert chart_title({"model": "runs/x"}) == "x"
