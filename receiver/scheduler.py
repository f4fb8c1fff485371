"""Multi-user scheduling of decode jobs (the MU-GSC receiver).

Jobs wait in per-user FIFO queues served round-robin (one heavy user cannot starve the
others); a worker takes the next job in that order and fills a batch with compatible jobs
(same batch key: model, mode, token grid and rate), one per user per round, up to
``max_batch``, waiting at most ``max_wait_s`` for more. The total number of queued jobs is
bounded: :meth:`FairBatchQueue.put` raises ``asyncio.QueueFull`` beyond it.

With ``fair=False`` all jobs share one FIFO queue (arrival order); with ``max_batch=1``
and one worker this is the sequential single-worker receiver (GSC) used as the baseline.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any


@dataclass
class Job:
    """One queued request.

    Attributes:
        user_id: the fairness class.
        key: jobs with equal keys can share a batch.
        payload: what the worker needs (opaque here).
        deadline: ``time.time()`` after which the job is not worth computing; ``None``: none.
        enqueued: ``time.perf_counter()`` at arrival.
    """

    user_id: str
    key: Hashable
    payload: Any
    deadline: float | None = None
    enqueued: float = 0.0


class FairBatchQueue:
    """Bounded per-user round-robin queue handing out batches of compatible jobs."""

    def __init__(self, capacity: int, max_batch: int, max_wait_s: float, fair: bool = True):
        if capacity < 1 or max_batch < 1 or max_wait_s < 0:
            raise ValueError("capacity and max_batch must be >= 1 and max_wait_s >= 0")
        self.capacity = capacity
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.fair = fair
        self._queues: OrderedDict[str, deque[Job]] = OrderedDict()
        self._size = 0
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return self._size

    def put(self, job: Job) -> None:
        """Queue ``job``; ``asyncio.QueueFull`` if ``capacity`` jobs are already waiting."""
        if self._size >= self.capacity:
            raise asyncio.QueueFull
        self._queues.setdefault(job.user_id if self.fair else "", deque()).append(job)
        self._size += 1
        self._changed.set()

    def remove(self, predicate) -> list[Job]:
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

    def _pop_next(self, key: Hashable | None = None) -> Job | None:
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

    async def get_batch(self) -> list[Job]:
        """Wait for work; return 1..max_batch jobs sharing one key."""
        while self._size == 0:
            self._changed.clear()
            await self._changed.wait()
        first = self._pop_next()
        batch = [first]
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            job = self._pop_next(first.key)
            if job is not None:
                batch.append(job)
                continue
            remaining = give_up - loop.time()
            if remaining <= 0:
                break
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return batch
