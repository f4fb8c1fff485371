"""Per-user fair queueing where the queue forms, shared by the three services.

:class:`FairQueue` is a bounded set of per-user FIFO queues served round robin: each
user in turn gives up its oldest job, so a user with many jobs waiting delays another
user's job by at most one of its own per round. With ``fair=False`` all jobs share one
FIFO queue (arrival order). ``put`` raises ``asyncio.QueueFull`` beyond ``capacity``.
:meth:`FairQueue.get_batch` hands out batches of compatible jobs (same key).

:class:`FairStage` puts a :class:`FairQueue` in front of a pool of workers that run a
blocking function (the transmitter's encoder, the channel emulator's channel) in a thread
pool, so that requests are computed in per-user round-robin order instead of the thread
pool's arrival order; with a :class:`BatchPolicy` (the receiver's decoder) compatible jobs run
as one batch (:meth:`FairStage.run_first` lets short follow-up work of admitted
requests use the same workers ahead of the queue). A full queue refuses at once
(RESOURCE_EXHAUSTED); a job whose deadline passed while it waited is not computed
(DEADLINE_EXCEEDED); a caller that is cancelled (its stream ended) takes its job out of
the queue. Metrics, with the stage's
``service`` label: ``semcom_queue_depth``, ``semcom_dropped_total{reason=queue_full|deadline|
cancelled}``, ``semcom_stage_latency_seconds{stage="queue"}``, ``semcom_busy_workers`` and
``semcom_workers``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

from .telemetry import BATCH_SIZE, BUSY_WORKERS, DROPS, QUEUE_DEPTH, STAGE_LATENCY, WORKERS

SCHEDULERS = ("fair", "fifo")
FIRST = ("run_first",)
"""The key of :meth:`FairStage.run_first` work (never batched, not counted as queued)."""


@dataclass
class Job:
    """One queued request.

    Attributes:
        user_id: the fairness class.
        key: jobs with equal keys can share a batch (receiver); unused by :class:`FairStage`.
        payload: what the worker needs (opaque here).
        deadline: ``time.time()`` after which the job is not worth computing; ``None``: none.
        enqueued: ``time.perf_counter()`` at arrival.
    """

    user_id: str
    key: Hashable
    payload: Any
    deadline: float | None = None
    enqueued: float = 0.0


class FairQueue:
    """Bounded per-user round-robin queue (one FIFO queue for all with ``fair=False``)."""

    def __init__(self, capacity: int, fair: bool = True):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.fair = fair
        self._queues: OrderedDict[str, deque[Job]] = OrderedDict()
        self._size = 0
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return self._size

    @property
    def active_users(self) -> int:
        """Users with at least one job waiting (1 in FIFO mode while anything waits)."""
        return len(self._queues)

    def put(self, job: Job) -> None:
        """Queue ``job``; ``asyncio.QueueFull`` if ``capacity`` jobs are already waiting."""
        if self._size >= self.capacity:
            raise asyncio.QueueFull
        self._queues.setdefault(job.user_id if self.fair else "", deque()).append(job)
        self._size += 1
        self._changed.set()

    def remove(self, predicate: Callable[[Job], bool]) -> list[Job]:
        """Take out (and return) every queued job for which ``predicate(job)`` holds."""
        removed = []
        for user in list(self._queues):
            kept = deque()
            for job in self._queues[user]:
                (removed if predicate(job) else kept).append(job)
            if kept:
                self._queues[user] = kept
            else:
                del self._queues[user]
        self._size -= len(removed)
        return removed

    def pop_next(self, key: Hashable | None = None) -> Job | None:
        """The next job in round-robin order whose key matches (any key if ``None``)."""
        for user, jobs in self._queues.items():
            if key is None or jobs[0].key == key:
                job = jobs.popleft()
                del self._queues[user]
                if jobs:  # the user goes to the back of the round
                    self._queues[user] = jobs
                self._size -= 1
                return job
        return None

    async def wait_for_job(self) -> None:
        """Return once at least one job is queued."""
        while self._size == 0:
            self._changed.clear()
            await self._changed.wait()

    def wake(self) -> None:
        """Wake the waiters of :meth:`wait_for_change` (new work outside this queue)."""
        self._changed.set()

    async def get_batch(self, max_batch: int, max_wait_s: float) -> list[Job]:
        """Wait for work; return 1..``max_batch`` jobs sharing the first one's key (the first in
        round-robin order, then one per user per round), waiting at most ``max_wait_s`` for more; a job
        without a key (``None``) is not batched."""
        await self.wait_for_job()
        first = self.pop_next()
        batch = [first]
        if first.key is None:
            return batch
        loop = asyncio.get_running_loop()
        give_up = loop.time() + max_wait_s
        while len(batch) < max_batch:
            job = self.pop_next(first.key)
            if job is not None:
                batch.append(job)
                continue
            remaining = give_up - loop.time()
            if remaining <= 0 or not await self.wait_for_change(remaining):
                break
        return batch

    async def wait_for_change(self, timeout_s: float | None) -> bool:
        """Wait until a job is queued or ``timeout_s`` passed (``None``: no limit); ``False`` on timeout."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True


@dataclass(frozen=True)
class BatchPolicy:
    """How a :class:`FairStage` batches (the MU-GSC receiver's dynamic batching): a worker takes
    the next job in round-robin order and fills its batch with queued jobs of the same key, one per
    user per round, up to ``max_batch``, waiting at most ``max_wait_s`` for more. With
    ``max_batch=1``, one worker and ``fifo`` this is the sequential single-worker receiver (GSC)."""

    max_batch: int
    max_wait_s: float

    def __post_init__(self):
        if self.max_batch < 1 or self.max_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")


class StageError(Exception):
    """A request a stage answers without computing it; ``grpc_code`` is its status."""

    grpc_code = grpc.StatusCode.INTERNAL


class QueueFullError(StageError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UserQuotaError(QueueFullError):
    """A user already has its quota of requests in the stage (the others are still admitted)."""


class DeadlineExpiredError(StageError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class StageClosedError(StageError):
    grpc_code = grpc.StatusCode.UNAVAILABLE


class FairStage:
    """A :class:`FairQueue` served by ``workers`` workers running blocking calls in a thread pool.

    Args:
        service: metrics label, and the name in error messages.
        workers: concurrent calls (a worker takes the next job when its call returns).
        capacity: queued jobs at most (not counting those being computed).
        scheduler: ``"fair"`` (per-user round robin) or ``"fifo"`` (arrival order).
        executor: the thread pool to run calls in (shared with other work of the service);
            by default the stage's own pool of ``workers`` threads.
        latency_key: :meth:`run` stores the queue wait in ``latency[latency_key]`` (ms).
        batching: with a :class:`BatchPolicy`, jobs queued with equal (non-``None``) ``key``
            run together: their ``fn`` is called once with the list of their single arguments
            and returns the list of their results. A batch that raises is run again job by job,
            so that one job's fault is its own (the others get their results).
        user_quota: requests one user may have in the stage at once (queued or being computed; 0: no
            quota); beyond it the user is refused RESOURCE_EXHAUSTED while other users are admitted.
    """

    def __init__(self, service: str, workers: int, capacity: int, scheduler: str = "fair",
                 executor: Executor | None = None, latency_key: str = "queue", batching: BatchPolicy | None = None,
                 user_quota: int = 0):
        if scheduler not in SCHEDULERS:
            raise ValueError(f"the {service} scheduler must be 'fair' or 'fifo', got {scheduler!r}")
        if workers < 1:
            raise ValueError(f"the {service} needs at least one worker, got {workers}")
        self.service = service
        self.workers = workers
        self.queue = FairQueue(capacity, fair=scheduler == "fair")
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(workers, thread_name_prefix=f"{service}-stage")
        self.latency_key = latency_key
        self.batching = batching
        if user_quota < 0:
            raise ValueError(f"the {service} per-user quota must be >= 0, got {user_quota}")
        self.user_quota = user_quota
        self._user_jobs: dict[str, int] = {}  # requests of each user in the stage
        self._urgent: deque[Job] = deque()  # run_first jobs: served before the queue, unbounded
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        WORKERS.labels(service).set(workers)
        QUEUE_DEPTH.labels(service).set(0)

    @property
    def capacity(self) -> int:
        return self.queue.capacity

    def _depth(self) -> None:
        QUEUE_DEPTH.labels(self.service).set(len(self.queue))

    async def run(self, user_id: str, deadline: float | None, fn: Callable, *args, latency: dict | None = None,
                  key: Hashable = None):
        """Queue ``fn(*args)`` for ``user_id`` and return its result once a worker ran it (a
        batching stage: ``fn([arg, ...])`` once for the batch of jobs sharing ``key``).

        Raises :class:`UserQuotaError` at once when ``user_id`` has ``user_quota`` requests in the
        stage, :class:`QueueFullError` when ``capacity`` jobs wait, :class:`DeadlineExpiredError`
        when ``deadline`` (``time.time()`` seconds; ``None``: none) passed before a worker took the
        job, and whatever ``fn`` raised. If the caller is cancelled while the job waits, the job
        leaves the queue uncomputed.
        """
        held = self._user_jobs.get(user_id, 0)
        if self.user_quota and held >= self.user_quota:
            DROPS.labels(self.service, "user_quota").inc()
            raise UserQuotaError(f"user {user_id[:64]!r} has {held} requests in the {self.service}, its quota; "
                                 "retry when some are answered")
        job = self._job(user_id, deadline, fn, args, key)
        try:
            self.queue.put(job)
        except asyncio.QueueFull:
            DROPS.labels(self.service, "queue_full").inc()
            raise QueueFullError(f"{self.service} queue is full ({self.queue.capacity} requests); retry later") from None
        self._user_jobs[user_id] = held + 1
        self._depth()
        try:
            result, waited_s = await job.payload[2]
        except asyncio.CancelledError:
            if self.queue.remove(lambda queued: queued is job):
                DROPS.labels(self.service, "cancelled").inc()
                self._depth()
            raise
        finally:
            if (left := self._user_jobs.pop(user_id) - 1) > 0:
                self._user_jobs[user_id] = left
        if latency is not None:
            latency[self.latency_key] = 1000.0 * waited_s
        return result

    async def run_first(self, fn: Callable, *args):
        """Run ``fn(*args)`` on the next free worker, before any queued job (no bound, no deadline).

        For short follow-up work of requests already admitted (the transmitter's quality
        figures of a returned result), so that it shares the workers instead of queueing
        unseen in the thread pool ahead of them.
        """
        job = self._job("", None, fn, args, key=FIRST)
        self._urgent.append(job)
        self.queue.wake()
        try:
            result, _ = await job.payload[2]
        except asyncio.CancelledError:
            self._urgent = deque(queued for queued in self._urgent if queued is not job)
            raise
        return result

    def _job(self, user_id: str, deadline: float | None, fn: Callable, args: tuple, key: Hashable = None) -> Job:
        if self._closed:
            raise StageClosedError(f"{self.service} is shutting down")
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(self._work()) for _ in range(self.workers)]
        future = asyncio.get_running_loop().create_future()
        return Job(user_id, key, (fn, args, future), deadline, time.perf_counter())

    async def _next(self) -> list[Job]:
        """The next job (``run_first`` work first), or the next batch of a batching stage."""
        while not self._urgent and not len(self.queue):
            await self.queue.wait_for_change(None)
        if self._urgent:
            return [self._urgent.popleft()]
        if self.batching is not None:
            batch = await self.queue.get_batch(self.batching.max_batch, self.batching.max_wait_s)
        else:
            batch = [self.queue.pop_next()]
        self._depth()
        return batch

    def _runnable(self, batch: list[Job]) -> list[Job]:
        """Skip jobs whose caller was cancelled, refuse those whose deadline passed; the rest run."""
        now = time.time()
        runnable = []
        for job in batch:
            future = job.payload[2]
            if future.done():  # its caller was cancelled
                continue
            if job.deadline is not None and now > job.deadline:
                DROPS.labels(self.service, "deadline").inc()
                future.set_exception(DeadlineExpiredError(
                    f"deadline passed {1000 * (now - job.deadline):.0f} ms before the {self.service} took the request"))
                continue
            runnable.append(job)
        return runnable

    async def _work(self) -> None:
        while True:
            batch = self._runnable(await self._next())
            if not batch:
                continue
            started = time.perf_counter()
            batched = self.batching is not None and batch[0].key not in (None, FIRST)
            if batch[0].key is not FIRST:  # queued requests (not run_first work)
                for job in batch:
                    STAGE_LATENCY.labels(self.service, "queue").observe(started - job.enqueued)
            if batched:
                BATCH_SIZE.labels(self.service).observe(len(batch))
            BUSY_WORKERS.labels(self.service).inc()
            try:
                if batched and len(batch) > 1:
                    await self._run_batch(batch, started)
                else:
                    await self._run_alone(batch[0], started)
            except asyncio.CancelledError:  # the stage closes
                for job in batch:
                    if not job.payload[2].done():
                        job.payload[2].set_exception(StageClosedError(f"{self.service} is shutting down"))
                raise
            finally:
                BUSY_WORKERS.labels(self.service).dec()

    async def _run_batch(self, batch: list[Job], started: float) -> None:
        """``fn`` once for a batch of jobs; a batch that raises runs again job by job, so that one job's
        fault is its own answer and the others get their results."""
        fn = batch[0].payload[0]
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.executor, fn,
                                                                       [job.payload[1][0] for job in batch])
        except Exception:
            for job in batch:
                await self._run_alone(job, started)
            return
        for job, result in zip(batch, results):
            if not job.payload[2].done():
                job.payload[2].set_result((result, started - job.enqueued))

    async def _run_alone(self, job: Job, started: float) -> None:
        """Run one job (a batching stage's as a batch of one); its result or exception is its answer."""
        fn, args, future = job.payload
        loop = asyncio.get_running_loop()
        try:
            if self.batching is not None and job.key not in (None, FIRST):
                [result] = await loop.run_in_executor(self.executor, fn, [args[0]])
            else:
                result = await loop.run_in_executor(self.executor, fn, *args)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result((result, started - job.enqueued))

    async def close(self) -> None:
        """Stop the workers; queued jobs are answered UNAVAILABLE."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        pending, self._urgent = [*self._urgent, *self.queue.remove(lambda _: True)], deque()
        for job in pending:
            future = job.payload[2]
            if not future.done():
                future.set_exception(StageClosedError(f"{self.service} is shutting down"))
        self._depth()
        if self._own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)
