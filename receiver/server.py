"""Receiver service: received symbols + channel state -> equalization -> decoding -> PNG.

Frames from every stream are validated on arrival and queued in one bounded
:class:`~receiver.scheduler.FairBatchQueue` (per-user round robin, dynamic batching); a
pool of concurrent workers (asyncio tasks running the model in a thread pool, on the GPU
when present) decodes them. A full queue answers RESOURCE_EXHAUSTED at once; a job whose
deadline passed is answered DEADLINE_EXCEEDED without compute; a cancelled stream's
queued jobs are dropped.

Decoder modes (:mod:`shared.decoding`): ``jscc``; a latent diffusion denoiser (teacher
ODE or consistency student) between equalization and the JSCC decoder; or the generative image
decoder, or the semantic fine-tuning module (``finetune``), after it. Frames batch only with
frames of the same mode.

Cached: the codec and the diffusion networks, loaded once per process and shared by all
workers (warm); and the users' out-of-distribution latent adapters (``PublishAdapter``, a bounded
LRU of ``SEMCOM_RECEIVER_ADAPTER_CACHE`` users): a frame with ``adapter_version`` > 0 is decoded
through that user's adapter between f_d and g_s, and answered FAILED_PRECONDITION when the
receiver does not hold that version (never decoded without it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.channel import ChannelSpec
from shared.serving.adapters import AdapterCache
from shared.codecs import Codec, FrameLost
from shared.config import SemcomConfig
from shared.imageio import encode_png
from shared.decoding import DecoderMode, DiffusionDecoders, parse_mode
from shared.serving.wire import channel_spec, frame_header, transmission_from_wire
from shared.models.latent_adapter import LatentAdapter
from shared.serving.rpc import code_for_exception, error_result
from shared.serving.streaming import StreamSession
from shared.serving.telemetry import (BATCH_SIZE, BUSY_WORKERS, DROPS, QUEUE_DEPTH, STAGE_LATENCY, SYMBOLS, USER_LATENCY,
                              WORKERS, timed, user_label)

from .scheduler import FairBatchQueue, Job

SERVICE = "receiver"
log = logging.getLogger("semcom.receiver")


def check_mode(codec: Codec, decoders: DiffusionDecoders, mode: DecoderMode) -> None:
    """``NotImplementedError`` unless this receiver can decode ``mode`` (diffusion modes need a
    codec serving their stage and the mode's weights)."""
    if not mode.diffusion:
        return
    if not codec.decoder_stages:
        raise NotImplementedError(f"decoder mode {mode} is served with the rate-adaptive codec; this receiver "
                                  f"runs {codec.describe()} (use mode jscc)")
    decoders.model_for(mode)


def reconstruct_batch(
    codec: Codec, batch: list[pb.ReceivedFrame], specs: list[ChannelSpec],
    decoders: DiffusionDecoders | None = None, adapters: list[LatentAdapter | None] | None = None,
) -> list[pb.ImageResult]:
    """Equalize and decode frames that share a grid, a decoder mode and the codec's batch key in
    one decoder pass; a frame the codec reports lost (e.g. its side information) is answered
    DATA_LOSS. ``adapters``: each frame's latent adapter (``None``: identity)."""
    latency: dict[str, float] = {}
    transmissions = [transmission_from_wire(r.frame.symbols, r.frame.num_symbols, r.state, spec)
                     for r, spec in zip(batch, specs)]
    timer = lambda stage: timed(SERVICE, stage, latency)  # noqa: E731
    headers = [frame_header(r.frame) for r in batch]
    outcomes = codec.decode_batch(transmissions, specs, headers, parse_mode(batch[0].frame.mode), decoders, adapters,
                                  timer)
    results = []
    for received, outcome in zip(batch, outcomes):
        frame = received.frame
        if isinstance(outcome, FrameLost):
            DROPS.labels(SERVICE, "side_information_lost").inc()
            results.append(error_result(frame.request_id, frame.user_id, grpc.StatusCode.DATA_LOSS, str(outcome)))
            continue
        image = outcome.image
        stage_latency = {**frame.latency_ms, **latency}
        with timed(SERVICE, "reconstruct", stage_latency):
            png = encode_png(image)
        SYMBOLS.labels(SERVICE).inc(frame.num_symbols)
        results.append(pb.ImageResult(
            request_id=frame.request_id,
            user_id=frame.user_id,
            status=pb.Status(code=grpc.StatusCode.OK.value[0]),
            image=png,
            width=frame.image_width,
            height=frame.image_height,
            target_cbr=frame.target_cbr,
            achieved_cbr=frame.achieved_cbr,
            num_symbols=frame.num_symbols,
            side_information_bytes=outcome.side_information_bytes,
            mode=frame.mode,
            nfe=outcome.nfe,
            channel=frame.channel,
            latency_ms=stage_latency,
            batch_size=len(batch),
            channel_uses=received.state.channel_uses,
            feedback_bits=received.state.feedback_bits,
        ))
    return results


def adapter_from_update(codec: Codec, update: pb.AdapterUpdate) -> LatentAdapter:
    """The validated adapter of a PublishAdapter call (``ValueError`` on a bad one)."""
    if not update.user_id or update.version == 0:
        raise ValueError("an adapter update needs a user_id and a version > 0")
    if update.model != codec.name or codec.adapter_channels is None:
        served = codec.name if codec.adapter_channels is not None else f"{codec.name} (no adapters)"
        raise ValueError(f"adapter is for codec {update.model!r}, this receiver serves {served}")
    return LatentAdapter.from_bytes(update.parameters, codec.adapter_channels)


@dataclass
class Pending:
    """A queued frame, the stream that waits for it and its validated channel spec."""

    received: pb.ReceivedFrame
    session: StreamSession
    spec: ChannelSpec
    adapter: LatentAdapter | None = None  # the user's latent adapter the frame asks for


class DecodeWorkerPool:
    """``workers`` concurrent decode workers over one :class:`FairBatchQueue`."""

    def __init__(self, codec: Codec, config: SemcomConfig, decoders: DiffusionDecoders | None = None):
        self.codec = codec
        self.decoders = decoders or DiffusionDecoders()
        self.config = config
        if config.receiver_scheduler not in ("fair", "fifo"):
            raise ValueError(f"SEMCOM_RECEIVER_SCHEDULER must be 'fair' or 'fifo', got {config.receiver_scheduler!r}")
        self.queue = FairBatchQueue(config.receiver_queue_size, config.receiver_max_batch,
                                    config.receiver_max_wait_ms / 1000.0, fair=config.receiver_scheduler == "fair")
        self.executor = ThreadPoolExecutor(config.receiver_workers, thread_name_prefix="rx-worker")
        self.workers = [asyncio.ensure_future(self._work()) for _ in range(config.receiver_workers)]
        WORKERS.labels(SERVICE).set(config.receiver_workers)
        self.adapters = AdapterCache(config.receiver_adapter_cache)

    def adapter_for(self, frame: pb.SymbolFrame) -> LatentAdapter | None:
        """The latent adapter a frame asks for (``None``: version 0, identity);
        ``AdapterMissing`` (FAILED_PRECONDITION) when this receiver does not hold that version."""
        if not frame.adapter_version:
            return None
        if self.codec.adapter_channels is None:
            raise NotImplementedError("latent adapters are served with the rate-adaptive codec; this receiver "
                                      f"runs {self.codec.describe()}")
        return self.adapters.get(frame.user_id, frame.adapter_version)

    def submit(self, received: pb.ReceivedFrame, session: StreamSession) -> None:
        """Validate and queue a frame; raises ``asyncio.QueueFull`` when the receiver is saturated."""
        frame = received.frame
        parsed = parse_mode(frame.mode)
        if frame.model and frame.model != self.codec.name:
            raise ValueError(f"frame is from codec {frame.model!r}; this receiver serves {self.codec.name!r}")
        check_mode(self.codec, self.decoders, parsed)
        mode = str(parsed)
        k = self.codec.check_frame(frame_header(frame))
        spec = channel_spec(frame.channel, self.config)
        adapter = self.adapter_for(frame)
        frame.mode = mode
        deadline = frame.deadline_unix_ms / 1000.0 if frame.deadline_unix_ms else None
        key = (frame.model, mode, frame.grid_height, frame.grid_width, k)
        self.queue.put(Job(frame.user_id, key, Pending(received, session, spec, adapter), deadline, time.perf_counter()))
        QUEUE_DEPTH.labels(SERVICE).set(len(self.queue))

    def drop_stream(self, session: StreamSession) -> None:
        """Forget the queued jobs of a cancelled stream."""
        dropped = self.queue.remove(lambda job: job.payload.session is session)
        if dropped:
            DROPS.labels(SERVICE, "cancelled").inc(len(dropped))
            QUEUE_DEPTH.labels(SERVICE).set(len(self.queue))

    def _runnable(self, batch: list[Job]) -> list[Job]:
        """Answer expired jobs and skip cancelled ones; the rest are worth computing."""
        now = time.time()
        runnable = []
        for job in batch:
            received, session = job.payload.received, job.payload.session
            if session.closed:
                DROPS.labels(SERVICE, "cancelled").inc()
            elif job.deadline is not None and now > job.deadline:
                DROPS.labels(SERVICE, "deadline").inc()
                session.answer(error_result(received.frame.request_id, received.frame.user_id,
                                            grpc.StatusCode.DEADLINE_EXCEEDED,
                                            f"deadline passed {1000 * (now - job.deadline):.0f} ms before decoding"))
            else:
                runnable.append(job)
        return runnable

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self._runnable(await self.queue.get_batch())
            QUEUE_DEPTH.labels(SERVICE).set(len(self.queue))
            if not batch:
                continue
            started = time.perf_counter()
            for job in batch:
                STAGE_LATENCY.labels(SERVICE, "queue").observe(started - job.enqueued)
            BATCH_SIZE.labels(SERVICE).observe(len(batch))
            BUSY_WORKERS.labels(SERVICE).inc()
            frames = [job.payload.received for job in batch]
            specs = [job.payload.spec for job in batch]
            adapters = [job.payload.adapter for job in batch]
            try:
                results = await loop.run_in_executor(self.executor, reconstruct_batch, self.codec, frames, specs,
                                                     self.decoders, adapters)
            except Exception as exc:
                code = code_for_exception(exc)
                log.exception("decoding a batch of %d failed", len(batch))
                results = [error_result(f.frame.request_id, f.frame.user_id, code, str(exc)) for f in frames]
            finally:
                BUSY_WORKERS.labels(SERVICE).dec()
            done = time.perf_counter()
            for job, result in zip(batch, results):
                result.latency_ms["queue"] = 1000.0 * (started - job.enqueued)
                USER_LATENCY.labels(user_label(job.user_id)).observe(done - job.enqueued)
                job.payload.session.answer(result)

    async def close(self) -> None:
        for worker in self.workers:
            worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)


class ReceiverService(pb_grpc.ReceiverServicer):
    def __init__(self, config: SemcomConfig, codec: Codec, decoders: DiffusionDecoders | None = None):
        self.pool = DecodeWorkerPool(codec, config, decoders)

    async def _handle(self, received: pb.ReceivedFrame, session: StreamSession) -> None:
        frame = received.frame
        try:
            self.pool.submit(received, session)
        except asyncio.QueueFull:
            DROPS.labels(SERVICE, "queue_full").inc()
            session.answer(error_result(frame.request_id, frame.user_id, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        f"receiver queue is full ({self.pool.queue.capacity} jobs); retry later"))

    async def Receive(self, request_iterator, context):
        session = StreamSession(SERVICE, self._handle, lambda r: (r.frame.request_id, r.frame.user_id))
        try:
            async for result in session.run(request_iterator):
                yield result
        finally:
            self.pool.drop_stream(session)

    async def PublishAdapter(self, request: pb.AdapterUpdate, context) -> pb.AdapterAck:
        """Store a user's latent adapter in the bounded cache; bad updates: INVALID_ARGUMENT."""
        try:
            adapter = adapter_from_update(self.pool.codec, request)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        self.pool.adapters.publish(request.user_id, request.version, adapter)
        log.info("adapter version %d of user %r stored (%d users cached)", request.version, request.user_id,
                 len(self.pool.adapters))
        return pb.AdapterAck(user_id=request.user_id, version=request.version, cached_users=len(self.pool.adapters))

    async def close(self) -> None:
        await self.pool.close()


def register(service: ReceiverService):
    return lambda server: pb_grpc.add_ReceiverServicer_to_server(service, server)
