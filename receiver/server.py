"""Receiver service: received symbols + channel state -> equalization -> decoding -> PNG.

Frames from every stream are validated on arrival and queued in one bounded
:class:`~receiver.scheduler.FairBatchQueue` (per-user round robin, dynamic batching); a
pool of concurrent workers (asyncio tasks running the model in a thread pool, on the GPU
when present) decodes them. A full queue answers RESOURCE_EXHAUSTED at once; a job whose
deadline passed is answered DEADLINE_EXCEEDED without compute; a cancelled stream's
queued jobs are dropped.

Decoder modes (:mod:`shared.diffusion.modes`): ``jscc``; a latent diffusion denoiser (teacher
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
from shared.adaptation import AdapterCache
from shared.adaptive_codec import DecodedImage, SideInformationLost, decode_adaptive_batch
from shared.codec import equalize_and_decode_batch
from shared.config import SemcomConfig
from shared.imageio import encode_png
from shared.diffusion.modes import DecoderMode, DiffusionDecoders, parse_mode
from shared.messages import channel_spec, transmission_from_wire
from shared.models import DeepJSCC, RateAdaptiveJSCC
from shared.models.latent_adapter import LatentAdapter
from shared.rpc import code_for_exception, error_result
from shared.streaming import StreamSession
from shared.telemetry import (BATCH_SIZE, BUSY_WORKERS, DROPS, QUEUE_DEPTH, STAGE_LATENCY, SYMBOLS, USER_LATENCY,
                              WORKERS, timed, user_label)

from .scheduler import FairBatchQueue, Job

SERVICE = "receiver"
log = logging.getLogger("semcom.receiver")


def check_mode(model: DeepJSCC | RateAdaptiveJSCC, decoders: DiffusionDecoders, mode: DecoderMode) -> None:
    """``NotImplementedError`` unless this receiver can decode ``mode`` (diffusion modes need the
    rate-adaptive codec and the mode's weights)."""
    if not mode.diffusion:
        return
    if not isinstance(model, RateAdaptiveJSCC):
        raise NotImplementedError(f"decoder mode {mode} is served with the rate-adaptive codec; this receiver "
                                  "runs the fixed-rate baseline (use mode jscc)")
    decoders.model_for(mode)


def frame_geometry(model: DeepJSCC | RateAdaptiveJSCC, frame: pb.SymbolFrame) -> int:
    """Check a frame's layout against the model; returns what frames must share to be decoded
    in one pass besides mode and grid: the symbols per token of the fixed-rate model, 0 for the
    rate-adaptive one (any allocations batch together)."""
    tokens = frame.grid_height * frame.grid_width
    scale = model.config.downscale
    if tokens == 0 or not (0 < frame.image_height <= frame.grid_height * scale
                           and 0 < frame.image_width <= frame.grid_width * scale):
        raise ValueError(f"image size {frame.image_height}x{frame.image_width} does not fit the "
                         f"{frame.grid_height}x{frame.grid_width} token grid")
    if isinstance(model, RateAdaptiveJSCC):
        cells = model.config.hyper_downscale
        if frame.grid_height % cells or frame.grid_width % cells:
            raise ValueError(f"token grid {frame.grid_height}x{frame.grid_width} is not a multiple of {cells}")
        if frame.token_lengths or not 0 < frame.side_channel_symbols < frame.num_symbols:
            raise ValueError("frame is not from the rate-adaptive codec this receiver serves "
                             f"({frame.side_channel_symbols} side-channel symbols of {frame.num_symbols})")
        return 0
    if len(frame.token_lengths) != tokens or frame.side_channel_symbols:
        raise ValueError(f"frame has {len(frame.token_lengths)} token lengths for a {frame.grid_height}x"
                         f"{frame.grid_width} grid; the fixed-rate model this receiver serves needs one per token")
    k = frame.token_lengths[0]
    if any(length != k for length in frame.token_lengths) or k not in model.config.trained_symbols_per_token:
        raise ValueError(f"token lengths {sorted(set(frame.token_lengths))} are not served by the fixed-rate model")
    if frame.num_symbols != tokens * k:
        raise ValueError(f"frame holds {frame.num_symbols} symbols, its tokens need {tokens * k}")
    return k


def reconstruct_batch(
    model: DeepJSCC | RateAdaptiveJSCC, batch: list[pb.ReceivedFrame], specs: list[ChannelSpec], k: int,
    decoders: DiffusionDecoders | None = None, adapters: list[LatentAdapter | None] | None = None,
) -> list[pb.ImageResult]:
    """Equalize and decode frames that share a grid, a decoder mode (and, fixed-rate, a rate) in
    one decoder pass; a rate-adaptive frame whose side information was lost is answered
    DATA_LOSS. ``adapters``: each frame's latent adapter (``None``: identity; rate-adaptive only)."""
    frames = [received.frame for received in batch]
    grid = (frames[0].grid_height, frames[0].grid_width)
    sizes = [(f.image_height, f.image_width) for f in frames]
    latency: dict[str, float] = {}
    transmissions = [transmission_from_wire(r.frame.symbols, r.frame.num_symbols, r.state, spec)
                     for r, spec in zip(batch, specs)]
    timer = lambda stage: timed(SERVICE, stage, latency)  # noqa: E731
    if isinstance(model, RateAdaptiveJSCC):
        jscc = [f.num_symbols - f.side_channel_symbols for f in frames]
        outcomes = decode_adaptive_batch(model, transmissions, specs, jscc, grid, sizes, stage_timer=timer,
                                         mode=parse_mode(frames[0].mode), decoders=decoders, adapters=adapters)
    else:
        outcomes = [DecodedImage(image, 0)
                    for image in equalize_and_decode_batch(model, transmissions, specs, k, grid, sizes, stage_timer=timer)]
    results = []
    for received, outcome in zip(batch, outcomes):
        frame = received.frame
        if isinstance(outcome, SideInformationLost):
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


def adapter_from_update(model: DeepJSCC | RateAdaptiveJSCC, update: pb.AdapterUpdate) -> LatentAdapter:
    """The validated adapter of a PublishAdapter call (``ValueError`` on a bad one)."""
    if not update.user_id or update.version == 0:
        raise ValueError("an adapter update needs a user_id and a version > 0")
    if update.model != "rate-adaptive" or not isinstance(model, RateAdaptiveJSCC):
        served = "rate-adaptive" if isinstance(model, RateAdaptiveJSCC) else "deepjscc-baseline (no adapters)"
        raise ValueError(f"adapter is for codec {update.model!r}, this receiver serves {served}")
    return LatentAdapter.from_bytes(update.parameters, 2 * model.config.max_symbols_per_token)


@dataclass
class Pending:
    """A queued frame, the stream that waits for it and its validated channel spec."""

    received: pb.ReceivedFrame
    session: StreamSession
    spec: ChannelSpec
    adapter: LatentAdapter | None = None  # the user's latent adapter the frame asks for


class DecodeWorkerPool:
    """``workers`` concurrent decode workers over one :class:`FairBatchQueue`."""

    def __init__(self, model: DeepJSCC | RateAdaptiveJSCC, config: SemcomConfig, decoders: DiffusionDecoders | None = None):
        self.model = model
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
        if not isinstance(self.model, RateAdaptiveJSCC):
            raise NotImplementedError("latent adapters are served with the rate-adaptive codec; this receiver "
                                      "runs the fixed-rate baseline")
        return self.adapters.get(frame.user_id, frame.adapter_version)

    def submit(self, received: pb.ReceivedFrame, session: StreamSession) -> None:
        """Validate and queue a frame; raises ``asyncio.QueueFull`` when the receiver is saturated."""
        frame = received.frame
        parsed = parse_mode(frame.mode)
        check_mode(self.model, self.decoders, parsed)
        mode = str(parsed)
        k = frame_geometry(self.model, frame)
        spec = channel_spec(frame.channel, self.config)
        adapter = self.adapter_for(frame)
        frame.mode = mode
        deadline = frame.deadline_unix_ms / 1000.0 if frame.deadline_unix_ms else None
        key = (mode, frame.grid_height, frame.grid_width, k)
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
                results = await loop.run_in_executor(self.executor, reconstruct_batch, self.model, frames, specs,
                                                     batch[0].key[3], self.decoders, adapters)
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
    def __init__(self, config: SemcomConfig, model: DeepJSCC | RateAdaptiveJSCC, decoders: DiffusionDecoders | None = None):
        self.pool = DecodeWorkerPool(model, config, decoders)

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
            adapter = adapter_from_update(self.pool.model, request)
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
