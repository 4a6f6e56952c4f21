"""The corpus job: plan, manifest, resume, shard writer, and the plain path (N worker processes on one machine).

Rows, in input order, are cut into shards of `shard_size`; shard k holds rows [k*S, (k+1)*S) and is written as
`OUTPUT/part-{k:05d}.parquet` (columns `id`, `embedding`) through a hidden temp file renamed into place, so a shard
exists whole or not at all. `OUTPUT/_manifest.json` is written before the first shard with every setting that changes
the output; a rerun compares them (any difference is refused, naming it), keeps the finished shards and embeds the
rest. At the end every shard is checked (row count, ids) and the manifest records the rows written.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import hashlib
import json
import multiprocessing as mp
import multiprocessing.connection
import os
import queue
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embed.corpus import Corpus, read_corpus
from embed.embedder import DTYPES, PRECISIONS, STORED_TYPES, Embedder, probe, vector_width

MANIFEST = "_manifest.json"  # '_': parquet readers (pyarrow, pandas, Ray, Spark) skip it when reading the folder
LOCK = ".embed.lock"
SHARD = re.compile(r"part-(\d+)\.parquet")
TEMP = re.compile(r"\.part-\d+\.parquet\.tmp-\d+")
SAMPLED = 1 << 20  # model files above this size are fingerprinted by sampled chunks, below it in full
# settings that change the output: a rerun into the same folder must match them all (name -> how errors call it)
COMPARED = {
    "model_fingerprint": "model files (--model)",
    "model_revision": "model revision",
    "input_sha256": "input content (ids and texts, --input)",
    "text_column": "--text-column",
    "id_column": "--id-column",
    "split": "--split",
    "prompt_name": "--prompt-name",
    "dtype": "--dtype",
    "truncate_dim": "--truncate-dim",
    "normalize": "--normalize",
    "precision": "--precision",
    "calibration_rows": "--calibration-rows",
    "shard_size": "--shard-size",
}


class JobError(RuntimeError):
    """The job cannot go on; the message says why and what to do."""


@dataclass
class JobConfig:
    """Every option of `python -m embed` (see its --help)."""

    model: str
    input: str
    output: str
    text_column: str = "text"
    id_column: str = "id"
    split: str = "train"
    prompt_name: str | None = None
    dtype: str = "fp32"
    batch_size: int = 32
    truncate_dim: int | None = None
    normalize: bool = False
    precision: str = "float32"
    calibration_rows: int = 1000
    shard_size: int = 10_000
    rows_per_call: int = 512
    processes: int | None = None
    threads: int | None = None
    device: str = "cpu"
    ray: bool = False
    ray_address: str | None = None
    overwrite: bool = False
    progress: bool = True

    def check(self) -> None:
        for name in ("batch_size", "calibration_rows", "shard_size", "rows_per_call", "processes", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise JobError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        if self.truncate_dim is not None and (not isinstance(self.truncate_dim, int) or self.truncate_dim < 1):
            raise JobError(f"--truncate-dim must be an integer >= 1, got {self.truncate_dim!r}")
        if self.precision not in PRECISIONS:
            raise JobError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.dtype not in DTYPES:
            raise JobError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.ray_address and not self.ray:
            raise JobError("--ray-address needs --ray")
        if not self.device.startswith("cuda") and self.device != "cpu" and (self.processes or 1) > 1:
            raise JobError(f"--processes > 1 runs on cpu or cuda, not {self.device!r}")


@dataclass
class JobResult:
    rows: int
    rows_embedded: int
    shards_written: int
    shards_kept: int
    seconds: float
    manifest: dict[str, Any] = field(repr=False)

    @property
    def texts_per_s(self) -> float:
        return self.rows_embedded / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Plan:
    rows: int
    shard_size: int

    @property
    def shards(self) -> int:
        return -(-self.rows // self.shard_size)

    def bounds(self, k: int) -> tuple[int, int]:
        return k * self.shard_size, min((k + 1) * self.shard_size, self.rows)


def shard_path(output: Path, k: int) -> Path:
    return output / f"part-{k:05d}.parquet"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------------- identity


def model_identity(model: str) -> dict[str, str | None]:
    """`revision`: the Hub commit of a snapshot folder (`.../snapshots/<sha>`) or a git checkout's HEAD, else None;
    `fingerprint`: a hash of the folder's files (config, code, tokenizers in full, large weight files by size and 64
    sampled chunks); the model card (README.md) is left out. A Hub id is identified by its name."""
    path = Path(model)
    if not path.is_dir():
        return {"revision": None, "fingerprint": f"name:{model}"}
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path)
        if rel.parts[0].startswith(".") or rel.name == "README.md" or "__pycache__" in rel.parts:
            continue
        size = file.stat().st_size
        h.update(f"{rel.as_posix()}\0{size}\0".encode())
        with open(file, "rb") as f:
            if size <= SAMPLED:
                h.update(f.read())
            else:
                for offset in np.linspace(0, size - 65536, 64).astype(np.int64):
                    f.seek(int(offset))
                    h.update(f.read(65536))
    return {"revision": _revision(path.resolve()), "fingerprint": h.hexdigest()}


def _revision(path: Path) -> str | None:
    if path.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", path.name):
        return path.name
    head = path / ".git" / "HEAD"
    if head.is_file():
        ref = head.read_text().strip()
        if ref.startswith("ref: ") and (path / ".git" / ref[5:]).is_file():
            return (path / ".git" / ref[5:]).read_text().strip()
        return ref if re.fullmatch(r"[0-9a-f]{40}", ref) else None
    return None


# ---------------------------------------------------------------------------------------------------- output folder


@contextlib.contextmanager
def _locked(output: Path) -> Iterator[None]:
    """One job at a time in a folder (a second would race for the same shards); released when the process ends."""
    output.mkdir(parents=True, exist_ok=True)
    with open(output / LOCK, "w") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): no lock
            pass
        except OSError:
            raise JobError(f"another corpus job is writing {output}") from None
        yield


def _ours(name: str) -> bool:
    return name in (MANIFEST, LOCK) or bool(SHARD.fullmatch(name) or TEMP.fullmatch(name))


def read_manifest(output: str | Path) -> dict[str, Any]:
    return json.loads((Path(output) / MANIFEST).read_text())


def _write_manifest(output: Path, manifest: dict[str, Any]) -> None:
    temp = output / f".{MANIFEST}.tmp-{os.getpid()}"
    temp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(temp, output / MANIFEST)


def _prepare(output: Path, request: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The manifest of the job to resume, or None to start afresh. Refuses a folder written with other settings or
    holding files of its own, unless `overwrite` (which deletes only this job's files: shards and manifest)."""
    for temp in output.iterdir():  # a killed run's half-written shard: never counted, removed
        if TEMP.fullmatch(temp.name) or temp.name.startswith(f".{MANIFEST}.tmp-"):
            temp.unlink()
    old = read_manifest(output) if (output / MANIFEST).is_file() else None
    if overwrite:
        for path in output.iterdir():
            if path.name != LOCK and _ours(path.name):
                path.unlink()
        return None
    if old is None:
        others = sorted(p.name for p in output.iterdir() if p.name != LOCK)
        if others:
            raise JobError(
                f"{output} is not empty and has no {MANIFEST} (not a corpus job's output): {others[:5]}; pass "
                "--overwrite to write into it anyway (only part-*.parquet and the manifest are ever replaced)"
            )
        return None
    changed = [
        f"{COMPARED[key]}: {old.get(key)!r} -> {value!r}" for key, value in request.items() if old.get(key) != value
    ]
    if changed:
        raise JobError(
            f"{output} was written with other settings ({'; '.join(changed)}). Rerun with the same settings to "
            "resume, use another --output, or pass --overwrite to start over"
        )
    return old


def finished_shards(output: Path, plan: Plan) -> set[int]:
    """Shards already written whole (renamed into place); a shard of the wrong size was not written by this plan."""
    done = set()
    for k in range(plan.shards):
        path = shard_path(output, k)
        if path.is_file():
            start, stop = plan.bounds(k)
            rows = pq.read_metadata(path).num_rows
            if rows != stop - start:
                raise JobError(f"{path} has {rows} rows, this job's shard {k} has {stop - start}: delete it to redo it")
            done.add(k)
    return done


def write_shard(output: Path, k: int, ids: pa.Array, embeddings: np.ndarray, precision: str) -> Path:
    """Shard k as parquet (`id` as in the input, `embedding` a fixed-size list), written to a hidden temp file and
    renamed into place: a shard is whole or absent, whenever the job is killed."""
    if embeddings.ndim != 2 or len(embeddings) != len(ids) or embeddings.dtype != STORED_TYPES[precision]:
        raise JobError(f"shard {k}: {embeddings.shape} {embeddings.dtype} embeddings for {len(ids)} ids ({precision})")
    values = pa.array(np.ascontiguousarray(embeddings).reshape(-1))
    table = pa.table({"id": ids, "embedding": pa.FixedSizeListArray.from_arrays(values, embeddings.shape[1])})
    final = shard_path(output, k)
    temp = output / f".{final.name}.tmp-{os.getpid()}"
    with open(temp, "wb") as f:
        pq.write_table(table, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, final)
    return final


def verify(output: Path, plan: Plan, corpus: Corpus, precision: str, dims: int) -> None:
    """Every shard there, with its rows' ids in order and the embedding type the manifest promises."""
    expected = pa.list_(pa.from_numpy_dtype(STORED_TYPES[precision]), vector_width(dims, precision))
    for k in range(plan.shards):
        path = shard_path(output, k)
        if not path.is_file():
            raise JobError(f"{path} is missing after the run")
        start, stop = plan.bounds(k)
        table = pq.read_table(path)
        if table.schema.field("embedding").type != expected:
            raise JobError(f"{path}: embedding type {table.schema.field('embedding').type}, expected {expected}")
        if not table.column("id").equals(corpus.ids.slice(start, stop - start)):
            raise JobError(f"{path} does not hold the ids of rows {start} to {stop - 1} of the input")


# ---------------------------------------------------------------------------------------------------- the plain path


def embed_rows(embedder: Embedder, texts: list[str], rows_per_call: int, on_rows: Callable[[int], None]) -> np.ndarray:
    """`embedder` on `texts` in calls of `rows_per_call` rows (what Ray's `map_batches` hands it too)."""
    width = vector_width(embedder.dims, embedder.precision)
    parts = [np.zeros((0, width), dtype=STORED_TYPES[embedder.precision])]
    for start in range(0, len(texts), rows_per_call):
        parts.append(embedder({"text": texts[start : start + rows_per_call]})["embedding"])
        on_rows(len(parts[-1]))
    return np.concatenate(parts)


def _exit_with_parent() -> None:
    """A worker whose job process died (killed) stops at once instead of writing on behind a restarted job."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _worker(index: int, kwargs: dict[str, Any], output: str, rows_per_call: int, tasks: Any, results: Any) -> None:
    _exit_with_parent()
    try:
        embedder = Embedder(**kwargs)
        while (task := tasks.get()) is not None:
            k, ids, id_type, texts = task
            emb = embed_rows(embedder, texts, rows_per_call, lambda n: results.put(("rows", n)))
            write_shard(Path(output), k, pa.array(ids, id_type), emb, embedder.precision)
            results.put(("shard", k))
    except BaseException:
        results.put(("error", index, traceback.format_exc()))
        sys.exit(1)


class PlainRunner:
    """N processes on this machine: in the job's own process for one, else spawned workers (one per GPU for cuda),
    each with its share of the CPU threads, taking shards from a queue and writing them itself."""

    def __init__(self, config: JobConfig, corpus: Corpus, plan: Plan, output: Path) -> None:
        self.config, self.corpus, self.plan, self.output = config, corpus, plan, output
        self.cuda = config.device == "cuda"
        if self.cuda:
            import torch

            gpus = torch.cuda.device_count()
            if not gpus:
                raise JobError("--device cuda: no GPU is visible")
            if (config.processes or gpus) > gpus:
                raise JobError(f"--processes {config.processes}: only {gpus} GPUs are visible")
        self.processes = config.processes or (gpus if self.cuda else 1)
        self.threads = config.threads or max(1, cpu_count() // self.processes)
        self.local: Embedder | None = None

    def describe(self) -> dict[str, Any]:
        return {"runner": "processes", "processes": self.processes, "threads": self.threads}

    def device(self, index: int) -> str:
        return f"cuda:{index}" if self.cuda else self.config.device

    def __enter__(self) -> PlainRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.local = None

    def probe(self, kwargs: dict[str, Any], texts: list[str]) -> dict[str, Any]:
        threads = self.config.threads or cpu_count()  # alone for now: all of them
        return probe({**kwargs, "device": self.device(0), "threads": threads}, texts)

    def run(self, todo: list[int], kwargs: dict[str, Any], on_rows: Callable[[int], None]) -> None:
        if self.processes == 1:
            self.local = Embedder(**{**kwargs, "device": self.device(0), "threads": self.threads})
            for k in todo:
                start, stop = self.plan.bounds(k)
                emb = embed_rows(self.local, self.corpus.texts_of(start, stop), self.config.rows_per_call, on_rows)
                write_shard(self.output, k, self.corpus.ids.slice(start, stop - start), emb, self.local.precision)
            return
        gc.collect()
        ctx = mp.get_context("spawn")  # no fork: torch and tokenizers threads do not survive it
        tasks: Any = ctx.Queue(maxsize=2 * self.processes)  # bounded: the corpus is not copied into it at once
        results: Any = ctx.Queue()
        workers = [
            ctx.Process(
                target=_worker,
                args=(
                    i,
                    {**kwargs, "device": self.device(i), "threads": self.threads},
                    str(self.output),
                    self.config.rows_per_call,
                    tasks,
                    results,
                ),
                daemon=True,
            )
            for i in range(self.processes)
        ]
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    tasks.put(item, timeout=0.2)
                    return True
            return False

        def feed() -> None:
            for k in todo:
                start, end = self.plan.bounds(k)
                ids = self.corpus.ids.slice(start, end - start)
                if not put((k, ids.to_pylist(), ids.type, self.corpus.texts_of(start, end))):
                    return
            for _ in workers:  # then one stop sign each
                put(None)

        for worker in workers:
            worker.start()
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        left = set(todo)
        try:
            while left:
                try:
                    message = results.get(timeout=0.5)
                except queue.Empty:
                    dead = [(i, w.exitcode) for i, w in enumerate(workers) if w.exitcode not in (None, 0)]
                    if dead:
                        raise JobError(f"worker {dead[0][0]} died (exit code {dead[0][1]})") from None
                    continue
                if message[0] == "rows":
                    on_rows(message[1])
                elif message[0] == "shard":
                    left.discard(message[1])
                else:
                    raise JobError(f"worker {message[1]} failed:\n{message[2]}")
        finally:
            finished = not left
            stop.set()
            tasks.cancel_join_thread()  # an unfinished run leaves tasks behind: do not wait to flush them
            for worker in workers:
                worker.join(timeout=30 if finished else 0)
                if worker.is_alive():
                    worker.terminate()
                    worker.join()


# ---------------------------------------------------------------------------------------------------- the job


def run_job(config: JobConfig) -> JobResult:
    """Embed `config.input` into `config.output` (resuming what is there); returns what this run did."""
    import torch
    from tqdm.auto import tqdm

    config.check()
    threads_before = torch.get_num_threads()
    corpus = read_corpus(config.input, config.text_column, config.id_column, config.split)
    plan = Plan(len(corpus), config.shard_size)
    output = Path(config.output)
    identity = model_identity(config.model)
    request = {
        "model_fingerprint": identity["fingerprint"],
        "model_revision": identity["revision"],
        "input_sha256": corpus.fingerprint(),
        "text_column": config.text_column,
        "id_column": config.id_column,
        "split": config.split if corpus.format in ("save_to_disk", "hub") else None,
        "prompt_name": config.prompt_name,
        "dtype": config.dtype,
        "truncate_dim": config.truncate_dim,
        "normalize": config.normalize,
        "precision": config.precision,
        "calibration_rows": config.calibration_rows if config.precision == "int8" else None,
        "shard_size": config.shard_size,
    }
    kwargs: dict[str, Any] = {
        "model": config.model,
        "dtype": config.dtype,
        "prompt_name": config.prompt_name,
        "batch_size": config.batch_size,
        "truncate_dim": config.truncate_dim,
        "normalize": config.normalize,
        "precision": config.precision,
    }
    with _locked(output):
        manifest = _prepare(output, request, config.overwrite)
        if config.ray:
            from embed.ray_job import RayRunner

            runner: Any = RayRunner(config, corpus, plan, output)
        else:
            runner = PlainRunner(config, corpus, plan, output)
        try:
            with runner:
                if manifest is None:
                    calibration = config.calibration_rows if config.precision == "int8" else 1
                    try:
                        facts = runner.probe(kwargs, corpus.texts_of(0, min(plan.rows, calibration)))
                    except ValueError as e:  # the model refuses a setting (no such prompt, truncate_dim too large)
                        raise JobError(str(getattr(e, "cause", None) or e)) from e
                    manifest = _new_manifest(config, corpus, plan, identity, request, facts)
                    _write_manifest(output, manifest)
                kwargs["ranges"] = manifest["ranges"]
                done = finished_shards(output, plan)
                todo = [k for k in range(plan.shards) if k not in done]
                kept = sum(plan.bounds(k)[1] - plan.bounds(k)[0] for k in done)
                start = time.perf_counter()
                with tqdm(total=plan.rows, initial=kept, unit="text", desc="embed", disable=not config.progress) as bar:
                    if todo:
                        runner.run(todo, kwargs, bar.update)
                seconds = time.perf_counter() - start
                run_info = runner.describe()
        finally:
            torch.set_num_threads(threads_before)
        verify(output, plan, corpus, config.precision, manifest["dims"])
        now = _now()
        manifest.update(rows_written=plan.rows, complete=True, updated=now)
        manifest["runs"].append(
            {
                "finished": now,
                "rows_embedded": plan.rows - kept,
                "shards_written": len(todo),
                "seconds": round(seconds, 3),  # from starting the workers (model loads included) to the last shard
                "device": config.device,
                "batch_size": config.batch_size,
                "rows_per_call": config.rows_per_call,
                **run_info,
            }
        )
        _write_manifest(output, manifest)
    return JobResult(plan.rows, plan.rows - kept, len(todo), len(done), seconds, manifest)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _new_manifest(
    config: JobConfig,
    corpus: Corpus,
    plan: Plan,
    identity: dict[str, str | None],
    request: dict[str, Any],
    facts: dict[str, Any],
) -> dict[str, Any]:
    dims, precision = facts["dims"], config.precision
    width = vector_width(dims, precision)
    stored = np.dtype(STORED_TYPES[precision]).name
    return {
        "job": "python -m embed (Causal2Vec corpus embeddings)",
        "version": 1,
        "model": config.model,
        "input": str(Path(config.input).resolve()) if corpus.format != "hub" else config.input,
        "input_format": corpus.format,
        **request,
        "prompt": facts["prompt"],
        "dims": dims,
        "ranges": facts["ranges"],
        "columns": {"id": str(corpus.ids.type), "embedding": f"fixed_size_list<{stored}>[{width}]"},
        "bytes_per_vector": width * np.dtype(STORED_TYPES[precision]).itemsize,
        "rows": plan.rows,
        "shards": plan.shards,
        "rows_written": 0,
        "complete": False,
        "created": _now(),
        "updated": None,
        "runs": [],
    }
