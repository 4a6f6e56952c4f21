"""The `--ray` path: Ray Data runs the same `Embedder` as `map_batches` actors (one per GPU, or N CPU actors with
their share of the cores); the driver reads and checks the input, hands Ray the rows of the unfinished shards with
their row numbers, and writes each shard itself, atomically, as its rows come back in order. Ray is imported only
here, so the plain path never needs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import embed
from embed.corpus import Corpus
from embed.embedder import Embedder, probe
from embed.job import JobConfig, JobError, Plan, cpu_count, write_shard


class RayRunner:
    """Connects to `--ray-address` (a running cluster: `ray://head:10001`, `auto`) or starts a local instance with
    every core, and shuts down only what it started."""

    def __init__(self, config: JobConfig, corpus: Corpus, plan: Plan, output: Path) -> None:
        self.config, self.corpus, self.plan, self.output = config, corpus, plan, output
        self.started = False
        self.processes = self.threads = 0

    def __enter__(self) -> RayRunner:
        import ray

        if not ray.is_initialized():
            if self.config.ray_address:  # a cluster: ship this package to its workers (the model comes from its path)
                ray.init(
                    address=self.config.ray_address,
                    runtime_env={"py_modules": [str(Path(embed.__file__).parent)]},
                    log_to_driver=False,
                )
            else:
                # "local": a new instance of our own, never a cluster that RAY_ADDRESS or an earlier `ray start` names
                ray.init(address="local", num_cpus=cpu_count(), include_dashboard=False, log_to_driver=False)
            self.started = True
        resources = ray.cluster_resources()
        cuda = self.config.device == "cuda"
        gpus = int(resources.get("GPU", 0))
        if cuda and not gpus:
            raise JobError("--device cuda: the Ray cluster has no GPU")
        self.processes = self.config.processes or (gpus if cuda else 1)
        self.threads = self.config.threads or max(1, int(resources.get("CPU", 1)) // self.processes)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            import ray

            ray.shutdown()

    def describe(self) -> dict[str, Any]:
        return {"runner": "ray", "processes": self.processes, "threads": self.threads}

    def _resources(self) -> dict[str, Any]:
        return {"num_cpus": self.threads, "num_gpus": 1 if self.config.device == "cuda" else 0}

    def probe(self, kwargs: dict[str, Any], texts: list[str]) -> dict[str, Any]:
        import ray

        task = ray.remote(**self._resources())(probe)
        return ray.get(task.remote({**kwargs, "device": self.config.device, "threads": self.threads}, texts))

    def run(self, todo: list[int], kwargs: dict[str, Any], on_rows: Callable[[int], None]) -> None:
        import ray.data

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # rows come back in input order: shards fill one by one
        context.enable_progress_bars = False  # the job's own bar counts the texts
        context.print_on_execution_start = False
        blocks = []
        for k in todo:  # one block per shard: only the rows of unfinished shards, with their row numbers
            start, stop = self.plan.bounds(k)
            rows = pa.array(np.arange(start, stop, dtype=np.int64))
            blocks.append(pa.table({"row": rows, "text": self.corpus.texts.slice(start, stop - start)}))
        embedded = ray.data.from_arrow(blocks).map_batches(
            Embedder,
            fn_constructor_kwargs={**kwargs, "device": self.config.device, "threads": self.threads},
            compute=ray.data.ActorPoolStrategy(size=self.processes),
            batch_size=self.config.rows_per_call,
            batch_format="numpy",
            **self._resources(),
        )
        shards = iter(todo)
        k = next(shards)
        start, stop = self.plan.bounds(k)
        parts: list[np.ndarray] = []
        filled = start
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            rows, vectors = batch["row"], batch["embedding"]
            while len(rows):
                take = min(len(rows), stop - filled)
                if not np.array_equal(rows[:take], np.arange(filled, filled + take)):
                    raise JobError(f"Ray returned rows out of order at row {filled}: {rows[:5].tolist()}...")
                parts.append(vectors[:take])
                filled += take
                on_rows(take)
                rows, vectors = rows[take:], vectors[take:]
                if filled == stop:  # the driver writes each shard as soon as its last row is back
                    ids = self.corpus.ids.slice(start, stop - start)
                    write_shard(self.output, k, ids, np.concatenate(parts), kwargs["precision"])
                    parts = []
                    k = next(shards, -1)
                    if k < 0:
                        break
                    start, stop = self.plan.bounds(k)
                    filled = start
        if k >= 0:
            raise JobError(f"Ray returned too few rows: shard {k} stopped at row {filled} of [{start}, {stop})")
