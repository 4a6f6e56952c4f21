"""The corpus job (`python -m embed`): equal to `SentenceTransformer.encode()` on 1 and 2 processes and on a local Ray
instance, ids kept, resumable after a kill, int8 / ubinary through sentence-transformers' quantization, truncation,
every input format, clear errors. A real tiny exported model and real files; no mocks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_layout import _imported

from causal2vec import REPO_ROOT
from embed.corpus import CorpusError, read_corpus
from embed.job import MANIFEST, JobConfig, JobError, read_manifest, run_job

WORDS = "the cat sat on a mat while stocks fell sharply and photosynthesis converts light into stored energy".split()


def make_texts(n: int, seed: int = 0, longest: int = 40) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, longest)))) for _ in range(n)]


TEXTS = make_texts(40)
IDS = [f"doc-{(7 * i) % 40:02d}" for i in range(40)]  # not sorted: the order must be the input's


def write_jsonl(path: Path, ids: list[Any], texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts, strict=True)))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from causal2vec.assemble import build_random

    path = tmp_path_factory.mktemp("model") / "tiny"
    build_random(document_prompt="Passage: ").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def st(folder):
    import torch
    from sentence_transformers import SentenceTransformer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", IDS, TEXTS)


@pytest.fixture(scope="module")
def expected(st) -> np.ndarray:
    return st.encode(TEXTS, prompt_name="document")


def job(folder: Path, input: Path | str, output: Path, **options: Any) -> Any:
    settings = {"prompt_name": "document", "shard_size": 16, "rows_per_call": 8, "batch_size": 4, "threads": 1}
    return run_job(JobConfig(str(folder), str(input), str(output), progress=False, **{**settings, **options}))


def read_output(output: Path) -> tuple[list[Any], np.ndarray]:
    table = pq.read_table(output)  # the folder reads as one parquet dataset: the manifest's '_' keeps it out
    return table.column("id").to_pylist(), np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


@pytest.fixture(scope="module")
def plain_output(folder, corpus, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("plain") / "out"
    job(folder, corpus, output)
    return output


def test_one_process_equals_encode_keeps_ids_and_writes_the_manifest(plain_output, expected, folder):
    ids, emb = read_output(plain_output)
    assert ids == IDS
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    assert sorted(p.name for p in plain_output.glob("part-*")) == [f"part-0000{k}.parquet" for k in range(3)]
    assert pq.read_schema(plain_output / "part-00000.parquet").field("embedding").type == pa.list_(pa.float32(), 64)
    m = read_manifest(plain_output)
    assert (m["model"], m["dims"], m["precision"], m["prompt_name"], m["prompt"]) == (
        str(folder),
        64,
        "float32",
        "document",
        "Passage: ",
    )
    assert (m["rows"], m["rows_written"], m["shards"], m["shard_size"], m["complete"]) == (40, 40, 3, 16, True)
    assert m["bytes_per_vector"] == 256 and m["columns"] == {
        "id": "string",
        "embedding": "fixed_size_list<float32>[64]",
    }
    assert m["runs"][-1]["processes"] == 1 and m["model_fingerprint"]


def test_two_processes_equal_encode(folder, corpus, expected, tmp_path):
    result = job(folder, corpus, tmp_path / "out", processes=2)
    ids, emb = read_output(tmp_path / "out")
    assert ids == IDS
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    assert (result.rows_embedded, result.shards_written) == (40, 3)
    run = read_manifest(tmp_path / "out")["runs"][-1]
    assert (run["runner"], run["processes"], run["threads"]) == ("processes", 2, 1)


def test_ray_on_a_local_instance_equals_encode_and_resumes_a_plain_run(
    folder, corpus, expected, plain_output, tmp_path
):
    """Ray Data writes the shards a plain run left undone (0 and 2) and keeps the one it finished (1)."""
    ray = pytest.importorskip("ray")
    output = tmp_path / "out"
    shutil.copytree(plain_output, output)
    (output / "part-00000.parquet").unlink()
    (output / "part-00002.parquet").unlink()
    kept = (output / "part-00001.parquet").stat().st_mtime_ns
    try:
        result = job(folder, corpus, output, ray=True, processes=2)
    finally:
        assert not ray.is_initialized(), "the job shuts down the Ray instance it started"
    assert (result.shards_written, result.shards_kept, result.rows_embedded) == (2, 1, 40 - 16)
    assert (output / "part-00001.parquet").stat().st_mtime_ns == kept
    ids, emb = read_output(output)
    assert ids == IDS
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    assert read_manifest(output)["runs"][-1]["runner"] == "ray"


def children(pid: int) -> list[int]:
    return [int(c) for f in Path(f"/proc/{pid}/task").glob("*/children") for c in f.read_text().split()]


def alive(pid: int) -> bool:
    """Running (a dead orphan nobody reaps stays a zombie, state Z)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the job's worker processes from /proc")
def test_a_killed_job_restarts_without_losing_or_duplicating_a_row(folder, st, tmp_path):
    texts = make_texts(3000, seed=1, longest=60)
    ids = list(range(5000, 8000))
    corpus = write_jsonl(tmp_path / "big.jsonl", ids, texts)
    output = tmp_path / "out"
    cmd = [sys.executable, "-m", "embed", "--model", str(folder), "--input", str(corpus), "--output", str(output)]
    cmd += ["--shard-size", "200", "--rows-per-call", "50", "--processes", "2", "--threads", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(output.glob("part-*.parquet")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no shard was written in 120 s"
        time.sleep(0.005)
    workers = children(proc.pid)
    proc.send_signal(signal.SIGKILL)  # the job process; its workers see it die and stop too
    proc.wait()
    proc.stderr.close()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "the workers outlived their killed job"
        time.sleep(0.05)
    done = {p.name: p.stat().st_mtime_ns for p in output.glob("part-*.parquet")}
    assert 1 <= len(done) < 15, f"killed half-way: {sorted(done)}"
    (output / ".part-00014.parquet.tmp-4242").write_bytes(b"PAR1 half a shard")  # what a kill mid-write leaves
    result = job(folder, corpus, output, prompt_name=None, shard_size=200, rows_per_call=50)
    assert (result.shards_kept, result.shards_written) == (len(done), 15 - len(done))
    assert {p: (output / p).stat().st_mtime_ns for p in done} == done, "finished shards were not rewritten"
    assert len(workers) >= 2
    assert not list(output.glob(".part-*")), "the half-written shard was dropped"
    got_ids, emb = read_output(output)
    assert got_ids == ids, "every row exactly once, in input order"
    sample = np.r_[0:5, 195:205, 2995:3000]  # the killed run's first shard, a boundary, the restarted run's last
    np.testing.assert_allclose(emb[sample], st.encode([texts[i] for i in sample]), atol=1e-5)
    assert read_manifest(output)["rows_written"] == 3000


def test_int8_and_ubinary_are_sentence_transformers_quantization(folder, corpus, plain_output, expected, tmp_path):
    from sentence_transformers.util import quantize_embeddings

    _, floats = read_output(plain_output)
    job(folder, corpus, tmp_path / "int8", precision="int8", calibration_rows=10)
    m = read_manifest(tmp_path / "int8")
    ranges = np.asarray(m["ranges"], dtype=np.float32)
    assert ranges.shape == (2, 64) and m["calibration_rows"] == 10 and m["bytes_per_vector"] == 64
    np.testing.assert_allclose(ranges, np.vstack((expected[:10].min(0), expected[:10].max(0))), atol=1e-5)
    ids, q = read_output(tmp_path / "int8")
    assert ids == IDS and q.dtype == np.int8
    # one set of ranges for the whole corpus (per-call ranges would differ from shard to shard)
    np.testing.assert_array_equal(q, quantize_embeddings(floats, "int8", ranges=ranges))
    assert np.abs(q.astype(int) - quantize_embeddings(expected, "int8", ranges=ranges).astype(int)).max() <= 1

    job(folder, corpus, tmp_path / "bin", precision="ubinary")
    ids, b = read_output(tmp_path / "bin")
    assert b.dtype == np.uint8 and b.shape == (40, 8) and read_manifest(tmp_path / "bin")["bytes_per_vector"] == 8
    np.testing.assert_array_equal(b, quantize_embeddings(floats, "ubinary"))
    np.testing.assert_array_equal(b, quantize_embeddings(expected, "ubinary"))


def test_truncate_dim_gives_encodes_prefix_renormalised_with_normalize(folder, corpus, st, expected, tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    job(folder, corpus, tmp_path / "norm", truncate_dim=8, normalize=True)
    _, emb = read_output(tmp_path / "norm")
    assert emb.shape == (40, 8) and read_manifest(tmp_path / "norm")["dims"] == 8
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(emb, expected[:, :8] / np.linalg.norm(expected[:, :8], axis=1, keepdims=True), atol=1e-5)
    st8 = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu", truncate_dim=8)
    np.testing.assert_allclose(emb, st8.encode(TEXTS, prompt_name="document", normalize_embeddings=True), atol=1e-5)
    model = AutoModel.from_pretrained(str(folder), trust_remote_code=True)
    own = model.encode(TEXTS, prompt_name="document", truncate_dim=8, normalize_embeddings=True)
    np.testing.assert_allclose(emb, own, atol=1e-5)

    job(folder, corpus, tmp_path / "plain", truncate_dim=8)  # without --normalize: encode's prefix as it is
    np.testing.assert_allclose(read_output(tmp_path / "plain")[1], expected[:, :8], atol=1e-5)


def test_parquet_and_save_to_disk_inputs_give_the_same_vectors_and_keep_integer_ids(folder, expected, tmp_path):
    from datasets import Dataset, DatasetDict

    ints = list(range(100, 140))
    pq.write_table(pa.table({"body": TEXTS, "key": ints, "other": [1.0] * 40}), tmp_path / "c.parquet")
    job(folder, tmp_path / "c.parquet", tmp_path / "p", text_column="body", id_column="key")
    ids, emb = read_output(tmp_path / "p")
    assert ids == ints and pq.read_schema(tmp_path / "p" / "part-00000.parquet").field("id").type == pa.int64()
    np.testing.assert_allclose(emb, expected, atol=1e-5)

    DatasetDict({"corpus": Dataset.from_dict({"id": IDS, "text": TEXTS})}).save_to_disk(tmp_path / "saved")
    job(folder, tmp_path / "saved", tmp_path / "s", split="corpus")
    ids, emb = read_output(tmp_path / "s")
    assert ids == IDS
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    with pytest.raises(CorpusError, match=r"no split 'train' \(--split\); splits: \['corpus'\]"):
        read_corpus(str(tmp_path / "saved"))


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "a", "text": "x"}', "", '{"id": "b", "text": "y"', ""], r":3: not valid JSON"),
        (['{"id": "a", "text": "x"}', '{"id": "b", "body": "y"}'], r":2: no 'text' field \(--text-column\)"),
        (['{"id": "a", "text": 5}'], r":1: 'text' must be a string, got int"),
        (['{"id": "a", "text": null}'], r":1: 'text' must be a string, got NoneType"),
        (['{"text": "x"}'], r":1: no 'id' field \(--id-column\)"),
        (['{"id": 1, "text": "x"}', '{"id": "2", "text": "y"}'], r":2: 'id' is a str, earlier ids are ints"),
        (['{"id": "a", "text": "x"}', '["a"]'], r":2: expected a JSON object"),
        (['{"id": "a", "text": "x"}', '{"id": "b", "text": "y"}', '{"id": "a", "text": "z"}'], r"'a' \(.*:1, .*:3\)"),
    ],
)
def test_bad_jsonl_is_named_by_file_and_line(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError, match=message) as caught:
        read_corpus(str(path))
    assert str(path) in str(caught.value)


def test_bad_parquet_and_missing_inputs_are_named(tmp_path):
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["x", None, "z"]}), tmp_path / "nulls.parquet")
    with pytest.raises(CorpusError, match=r"'text' is missing \(null\) at .*nulls.parquet row 1"):
        read_corpus(str(tmp_path / "nulls.parquet"))
    with pytest.raises(CorpusError, match=r"no column 'body' \(--text-column\); columns: \['id', 'text'\]"):
        read_corpus(str(tmp_path / "nulls.parquet"), text_column="body")
    pq.write_table(pa.table({"id": [1.5], "text": ["x"]}), tmp_path / "floats.parquet")
    with pytest.raises(CorpusError, match=r"'id' must hold strings or integers, it holds double"):
        read_corpus(str(tmp_path / "floats.parquet"))
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus(str(tmp_path / "nowhere.jsonl"))
    with pytest.warns(UserWarning, match=r"1 empty texts .*empty.jsonl:2"):
        assert len(read_corpus(str(write_jsonl(tmp_path / "empty.jsonl", ["a", "b"], ["x", ""])))) == 2


def test_changed_settings_are_refused_by_name_and_overwrite_starts_over(folder, corpus, plain_output, tmp_path):
    from embed.job import _locked

    output = tmp_path / "out"
    shutil.copytree(plain_output, output)
    with _locked(output), pytest.raises(JobError, match="another corpus job is writing"):
        job(folder, corpus, output)
    with pytest.raises(JobError, match=r"--precision: 'float32' -> 'int8'.*--overwrite"):
        job(folder, corpus, output, precision="int8")
    with pytest.raises(JobError, match=r"--prompt-name: 'document' -> 'query'; --shard-size: 16 -> 8"):
        job(folder, corpus, output, prompt_name="query", shard_size=8)
    changed = write_jsonl(tmp_path / "changed.jsonl", IDS, [*TEXTS[:-1], "another text"])
    with pytest.raises(JobError, match=r"input content \(ids and texts, --input\)"):
        job(folder, changed, output)
    before = read_manifest(output)
    pq.write_table(pa.table({"id": ["x", "y"], "embedding": [[0.0], [0.0]]}), output / "part-00001.parquet")
    with pytest.raises(JobError, match=r"part-00001.parquet has 2 rows, this job's shard 1 has 16: delete it"):
        job(folder, corpus, output)
    (output / "part-00001.parquet").unlink()
    result = job(folder, corpus, output)  # the same settings: the finished shards are kept
    assert (result.shards_kept, result.rows_embedded) == (2, 16) and len(read_manifest(output)["runs"]) == 2
    assert read_manifest(output)["created"] == before["created"]
    result = job(folder, changed, output, overwrite=True, shard_size=32)
    assert (result.shards_written, result.shards_kept) == (2, 0) and not (output / "part-00002.parquet").exists()

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(JobError, match=r"not empty and has no _manifest.json.*notes.txt"):
        job(folder, corpus, tmp_path / "mine")
    with pytest.raises(
        JobError, match=r"the model has no prompt named 'passage'; its prompts: \['document', 'query'\]"
    ):
        job(folder, corpus, tmp_path / "new", prompt_name="passage")
    with pytest.raises(JobError, match=r"--truncate-dim must be from 1 to 64"):
        job(folder, corpus, tmp_path / "new", truncate_dim=65)
    assert not (tmp_path / "new" / MANIFEST).exists()


def test_cli_help_and_bad_options(folder, corpus, tmp_path, capsys):
    from embed.__main__ import main

    proc = subprocess.run([sys.executable, "-m", "embed", "--help"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert (
        proc.returncode == 0 and "--precision {float32,int8,ubinary}" in proc.stdout and "--ray-address" in proc.stdout
    )
    base = ["--model", str(folder), "--input", str(corpus), "--output", str(tmp_path / "o")]
    for bad, message in (
        (["--precision", "float16"], "invalid choice: 'float16'"),
        (["--shard-size", "0"], "expected an integer >= 1, got 0"),
        (["--batch-size", "many"], "expected an integer >= 1, got 'many'"),
        (["--processes", "2", "--device", "mps"], "--processes 2 runs on cpu or cuda"),
    ):
        with pytest.raises(SystemExit) as caught:
            main(base + bad)
        assert caught.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"error: .*bad.jsonl:1: no 'text' field"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"id": 1, "body": "x"}\n')
        main(["--model", str(folder), "--input", str(bad), "--output", str(tmp_path / "o")])
    proc = subprocess.run(
        [sys.executable, "-m", "embed", *base[:2], "--input", "nobody/no-such-corpus", "--output", str(tmp_path / "h")],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "loading it as a Hub dataset (split 'train') failed" in proc.stderr


def test_embed_imports_no_other_layer_and_its_embedder_no_project_module():
    """`embed` sits beside `serve`: model layer and sentence-transformers only. `embedder.py` imports nothing of the
    project, so a Ray cluster can ship the package to its workers as it is."""
    project = {p.stem for p in REPO_ROOT.glob("*.py")} | {p.parent.name for p in REPO_ROOT.glob("*/__init__.py")}

    for path in (REPO_ROOT / "embed").glob("*.py"):
        assert not _imported(path) & {"train", "evaluation", "serve", "benchmarks"}, path
    assert _imported(REPO_ROOT / "embed" / "embedder.py") & project == set()
    assert not _imported(REPO_ROOT / "embed" / "job.py") & {"ray"}, "Ray is imported only by ray_job.py"
