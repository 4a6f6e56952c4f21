"""Micro-batching: requests that arrive together are embedded together, by one worker thread.

Each request is a `Job` (its texts and prompt). The worker takes the oldest job, then keeps taking jobs until the
batch holds `max_batch_size` texts or `max_wait_ms` have passed since it started waiting, and hands the merged
batch to `embed` in its thread (the event loop keeps accepting requests meanwhile). At most `max_queue` texts wait;
beyond that `submit` raises `Overloaded` at once rather than letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class Overloaded(RuntimeError):
    """The queue holds `max_queue` texts already."""


@dataclass
class Job:
    texts: list[str]
    prompt: str | None
    future: asyncio.Future = field(repr=False)


# embed(jobs) -> one result per job, in order; runs in the worker thread
EmbedFn = Callable[[list[Job]], list[Any]]


@dataclass
class MicroBatcher:
    embed: EmbedFn
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    waiting: collections.deque[Job] = field(default_factory=collections.deque, repr=False)
    queued_texts: int = 0
    batches: int = 0
    _wake: asyncio.Event | None = field(default=None, repr=False)
    _task: asyncio.Task | None = field(default=None, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_queue < 1 or self.max_wait_ms < 0:
            raise ValueError(
                f"need max_batch_size >= 1, max_queue >= 1 and max_wait_ms >= 0, got "
                f"{self.max_batch_size}, {self.max_queue}, {self.max_wait_ms}"
            )

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for job in self.waiting:
            job.future.cancel()

    async def submit(self, texts: list[str], prompt: str | None) -> Any:
        """Queue `texts` (one request) and wait for its result; `Overloaded` when the queue is full."""
        if self._wake is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if self.queued_texts + len(texts) > self.max_queue:
            raise Overloaded(f"the server is busy: {self.queued_texts} texts are queued (at most {self.max_queue})")
        job = Job(texts, prompt, asyncio.get_running_loop().create_future())
        self.waiting.append(job)
        self.queued_texts += len(texts)
        self._wake.set()
        return await job.future

    def _take(self, batch: list[Job], size: int) -> int:
        """Move waiting jobs into `batch` while they fit in `max_batch_size` (the first job always does)."""
        while self.waiting and (not batch or size + len(self.waiting[0].texts) <= self.max_batch_size):
            job = self.waiting.popleft()
            self.queued_texts -= len(job.texts)
            if job.future.cancelled():  # its client went away
                continue
            batch.append(job)
            size += len(job.texts)
        return size

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch: list[Job] = []
            size = self._take(batch, 0)
            deadline = time.monotonic() + self.max_wait_ms / 1000
            while size < self.max_batch_size and (left := deadline - time.monotonic()) > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except asyncio.TimeoutError:
                    break
                self._wake.clear()
                size = self._take(batch, size)
            if self.waiting:
                self._wake.set()  # what did not fit goes in the next batch
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._pool, self.embed, batch)
            except Exception as err:  # the error goes to the requests of this batch
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            self.batches += 1
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)
