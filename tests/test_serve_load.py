"""`python -m benchmarks.serve_load` against a real server on 127.0.0.1 (a tiny random export): every request
answered, the server's forward batches hold every text sent, a direct timing after each round, the lone-request
latencies measured; with both client libraries."""

from __future__ import annotations

import json

import pytest
from eval_fixtures import make_data

from benchmarks.serve_load import main


@pytest.mark.parametrize("client", ["http", "openai"])
def test_serve_load_reports_every_request(tiny, tmp_path, one_thread, client):
    folder = tmp_path / "ckpt"
    tiny.save_pretrained(folder)
    sts = make_data(tmp_path / "data") / "stsb" / "test.tsv"
    args = ["--model", str(folder), "--clients", "2", "--requests", "6", "--duration", "120", "--threads", "1"]
    args += ["--data", str(sts), "--direct-texts", "4", "--lone", "2", "--rounds", "2", "--client", client]
    result = main([*args, "--output", str(tmp_path / "load.json")])
    assert result["requests"] == 6 and result["errors"] == 0
    assert sum(size * count for size, count in result["forward_batch_sizes"].items()) == 6  # one text each
    assert len(result["direct_encode_texts_per_s"]) == 3 and result["server_over_direct"] > 0
    assert result["lone_p50_ms"] > 0 and result["lone_over_direct"] > 0
    assert json.loads((tmp_path / "load.json").read_text())["client"] == client
