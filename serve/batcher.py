"""Micro-batching: requests that arrive together are embedded together, by one worker thread.

Each request is a `Job` (its texts and prompt). The worker takes the oldest job, then keeps taking jobs until the
batch holds `max_batch_size` texts or `max_wait_ms` have passed since it started waiting, and hands the merged
batch to `embed` in its thread (the event loop keeps accepting requests meanwhile). Batches are formed by length:
after the oldest job come the waiting jobs with its prompt and texts nearest to its length, so that a forward pads
little (a job waits behind newer ones only until it is the oldest, so none waits for ever). At most `max_queue`
texts wait; beyond that `submit` raises `Overloaded` at once rather than letting latency grow without bound.

Every job's future is resolved, whatever happens: with its result, with the error `embed` raised for its batch,
or with `Unavailable` when the worker task has died (then `healthy` is False, `failure` says why, and every later
`submit` raises `Unavailable` at once: the process must be restarted, e.g. by whatever watches its health route)
or when `stop` gave up waiting for it at shutdown.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("serve")


class Overloaded(RuntimeError):
    """The queue holds `max_queue` texts already."""


class Unavailable(RuntimeError):
    """The batcher takes no more work: it is shutting down, or its worker has died."""


@dataclass(eq=False)  # a job is itself: the queue removes jobs by identity
class Job:
    texts: list[str]
    prompt: str | None
    future: asyncio.Future = field(repr=False)
    length: float = field(init=False)  # mean characters per text: what batches are formed by

    def __post_init__(self) -> None:
        self.length = sum(map(len, self.texts)) / max(len(self.texts), 1)


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
    failure: str | None = None  # why the worker died, when it did
    closing: bool = False  # `stop` has begun
    _running: list[Job] = field(default_factory=list, repr=False)  # the batch `embed` is working on
    _wake: asyncio.Event | None = field(default=None, repr=False)
    _idle: asyncio.Event | None = field(default=None, repr=False)  # set while nothing waits or runs
    _task: asyncio.Task | None = field(default=None, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    _stopping: asyncio.Future | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_queue < 1 or self.max_wait_ms < 0:
            raise ValueError(
                f"need max_batch_size >= 1, max_queue >= 1 and max_wait_ms >= 0, got "
                f"{self.max_batch_size}, {self.max_queue}, {self.max_wait_ms}"
            )

    @property
    def healthy(self) -> bool:
        """Started, not stopping, and the worker task alive."""
        return self._task is not None and not self._task.done() and not self.closing

    async def start(self) -> None:
        self._wake, self._idle = asyncio.Event(), asyncio.Event()
        self._idle.set()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._task = asyncio.create_task(self._run(), name="micro-batcher")
        self._task.add_done_callback(self._worker_ended)

    async def stop(self, timeout: float | None = None) -> None:
        """Take no new jobs; give the queued and running ones up to `timeout` seconds (None: as long as they need)
        to finish, then resolve what is left with `Unavailable`. Never blocks the event loop: a forward still running
        in the worker thread is left to end there, its result discarded. A second call waits for the first."""
        if self._task is None:
            return
        self.closing = True
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(timeout))
        await asyncio.shield(self._stopping)

    async def _stop(self, timeout: float | None) -> None:
        assert self._task is not None
        if not self._task.done():
            assert self._idle is not None
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                logger.warning("shutdown: %d queued and %d running requests get 503", *self._pending())
        self._fail_all("the server is shutting down")
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str], prompt: str | None) -> Any:
        """Queue `texts` (one request) and wait for its result; `Overloaded` when the queue is full, `Unavailable`
        when the batcher is stopping or its worker has died."""
        if self._wake is None or self._idle is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if self.closing:
            raise Unavailable("the server is shutting down")
        if self.failure is not None:
            raise Unavailable(self.failure)
        if self.queued_texts + len(texts) > self.max_queue:
            raise Overloaded(f"the server is busy: {self.queued_texts} texts are queued (at most {self.max_queue})")
        job = Job(texts, prompt, asyncio.get_running_loop().create_future())
        self.waiting.append(job)
        self.queued_texts += len(texts)
        self._idle.clear()
        self._wake.set()
        return await job.future

    def _pending(self) -> tuple[int, int]:
        return len(self.waiting), len(self._running)

    def _fail_all(self, message: str) -> None:
        """Resolve every queued and running job that is not done yet with `Unavailable(message)`."""
        for job in [*self._running, *self.waiting]:
            if not job.future.done():
                job.future.set_exception(Unavailable(message))
        self.waiting.clear()
        self._running = []
        self.queued_texts = 0
        if self._idle is not None:
            self._idle.set()

    def _worker_ended(self, task: asyncio.Task) -> None:
        """Done-callback of the worker task: unless `stop` ended it, it died, and its jobs must not hang."""
        if self.closing:
            return
        err = None if task.cancelled() else task.exception()
        logger.error("the embedding worker died: %r", err or "cancelled", exc_info=err)
        self.failure = "the embedding worker has stopped; the server must be restarted"
        self._fail_all(self.failure)

    def _take(self, batch: list[Job], size: int) -> int:
        """Move waiting jobs into `batch` while they fit in `max_batch_size`: into an empty batch the oldest job
        (it always fits), then the others nearest to the batch's first job, those with its prompt first (one
        forward per prompt), then by mean text length (less padding); ties go to the older job."""
        self._drop_abandoned()
        if not batch and self.waiting:
            size = self._move(self.waiting[0], batch, size)
        if not batch:
            return size
        first = batch[0]
        for job in sorted(self.waiting, key=lambda j: (j.prompt != first.prompt, abs(j.length - first.length))):
            if size + len(job.texts) <= self.max_batch_size:
                size = self._move(job, batch, size)
        return size

    def _move(self, job: Job, batch: list[Job], size: int) -> int:
        """Move `job` from the waiting queue into `batch`; the batch's new size in texts."""
        self.waiting.remove(job)
        self.queued_texts -= len(job.texts)
        batch.append(job)
        return size + len(job.texts)

    def _drop_abandoned(self) -> None:
        """Forget the waiting jobs whose clients went away (their futures are done)."""
        gone = [job for job in self.waiting if job.future.done()]
        for job in gone:
            self.waiting.remove(job)
            self.queued_texts -= len(job.texts)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None and self._idle is not None
        while True:
            if not self.waiting:
                self._idle.set()
            await self._wake.wait()
            self._wake.clear()
            batch = self._running = []
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
                self._running = []
                continue
            self.batches += 1
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)
            self._running = []
