"""Multi-user scheduling of decode jobs (the MU-GSC receiver).

Jobs wait in per-user FIFO queues served round-robin (one heavy user cannot starve the
others); a worker takes the next job in that order and fills a batch with compatible jobs
(same batch key: model, mode, token grid and rate), one per user per round, up to
``max_batch``, waiting at most ``max_wait_s`` for more. The total number of queued jobs is
bounded: :meth:`FairBatchQueue.put` raises ``asyncio.QueueFull`` beyond it. The per-user
round-robin bounded queue itself is :class:`shared.serving.fairqueue.FairQueue`, which the
transmitter's encoder and the channel emulator use too; batching is added here.

With ``fair=False`` all jobs share one FIFO queue (arrival order); with ``max_batch=1``
and one worker this is the sequential single-worker receiver (GSC) used as the baseline.
"""

from __future__ import annotations

import asyncio

from shared.serving.fairqueue import FairQueue, Job

__all__ = ["FairBatchQueue", "Job"]


class FairBatchQueue(FairQueue):
    """Bounded per-user round-robin queue (:class:`shared.serving.fairqueue.FairQueue`) handing out
    batches of compatible jobs."""

    def __init__(self, capacity: int, max_batch: int, max_wait_s: float, fair: bool = True):
        if capacity < 1 or max_batch < 1 or max_wait_s < 0:
            raise ValueError("capacity and max_batch must be >= 1 and max_wait_s >= 0")
        super().__init__(capacity, fair)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s

    async def get_batch(self) -> list[Job]:
        """Wait for work; return 1..max_batch jobs sharing one key."""
        await self.wait_for_job()
        first = self.pop_next()
        batch = [first]
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            job = self.pop_next(first.key)
            if job is not None:
                batch.append(job)
                continue
            remaining = give_up - loop.time()
            if remaining <= 0 or not await self.wait_for_change(remaining):
                break
        return batch
