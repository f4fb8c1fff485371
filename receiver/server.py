"""Receiver service: received symbols + channel state -> equalization -> decoding -> PNG.

Frames from every stream enter one bounded queue served by a pool of concurrent workers
(asyncio tasks running the model in a thread pool, on the GPU when present). A full queue
answers RESOURCE_EXHAUSTED at once.
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
from shared.channel import ChannelOutput
from shared.codec import equalize_and_decode
from shared.config import SemcomConfig
from shared.imageio import encode_png
from shared.messages import MODE_NFE, decoder_mode
from shared.models import DeepJSCC
from shared.rpc import code_for_exception, error_result
from shared.streaming import StreamSession
from shared.symbols import unpack_complex
from shared.telemetry import QUEUE_DEPTH, STAGE_LATENCY, SYMBOLS, timed

SERVICE = "receiver"
log = logging.getLogger("semcom.receiver")


def frame_geometry(model: DeepJSCC, frame: pb.SymbolFrame) -> int:
    """Check a frame's layout against the model; returns the symbols per token."""
    tokens = frame.grid_height * frame.grid_width
    if tokens == 0 or len(frame.token_lengths) != tokens:
        raise ValueError(f"frame has {len(frame.token_lengths)} token lengths for a {frame.grid_height}x{frame.grid_width} grid")
    k = frame.token_lengths[0]
    if any(length != k for length in frame.token_lengths) or k not in model.config.trained_symbols_per_token:
        raise ValueError(f"token lengths {sorted(set(frame.token_lengths))} are not served by the fixed-rate model")
    if frame.num_symbols != tokens * k:
        raise ValueError(f"frame holds {frame.num_symbols} symbols, its tokens need {tokens * k}")
    scale = model.config.downscale
    if not (0 < frame.image_height <= frame.grid_height * scale and 0 < frame.image_width <= frame.grid_width * scale):
        raise ValueError(f"image size {frame.image_height}x{frame.image_width} does not fit the token grid")
    return k


def reconstruct(model: DeepJSCC, received: pb.ReceivedFrame) -> pb.ImageResult:
    """Equalize and decode one received frame into the request's result."""
    frame, state = received.frame, received.state
    mode = decoder_mode(frame.mode)
    k = frame_geometry(model, frame)
    symbols = unpack_complex(frame.symbols, frame.num_symbols)[None]
    gains = unpack_complex(state.block_gains, state.num_blocks)[None] if state.num_blocks else None
    channel = ChannelOutput(symbols, gains, state.coherence_symbols or frame.num_symbols, state.noise_variance)
    latency = dict(frame.latency_ms)
    size = (frame.image_height, frame.image_width)
    image = equalize_and_decode(model, channel, state.snr_db, k, (frame.grid_height, frame.grid_width), size,
                                stage_timer=lambda stage: timed(SERVICE, stage, latency))
    with timed(SERVICE, "reconstruct", latency):
        png = encode_png(image)
    SYMBOLS.labels(SERVICE).inc(frame.num_symbols)
    return pb.ImageResult(
        request_id=frame.request_id,
        user_id=frame.user_id,
        status=pb.Status(code=grpc.StatusCode.OK.value[0]),
        image=png,
        width=frame.image_width,
        height=frame.image_height,
        target_cbr=frame.target_cbr,
        achieved_cbr=frame.achieved_cbr,
        num_symbols=frame.num_symbols,
        side_information_bytes=len(frame.side_information),
        mode=mode,
        nfe=MODE_NFE[mode],
        channel=frame.channel,
        latency_ms=latency,
    )


@dataclass
class DecodeJob:
    received: pb.ReceivedFrame
    session: StreamSession
    enqueued: float


class DecodeWorkerPool:
    """A bounded queue shared by all streams and ``workers`` concurrent decode workers."""

    def __init__(self, model: DeepJSCC, workers: int, queue_size: int):
        self.model = model
        self.queue: asyncio.Queue[DecodeJob] = asyncio.Queue(maxsize=queue_size)
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="rx-worker")
        self.workers = [asyncio.ensure_future(self._work()) for _ in range(workers)]

    def submit(self, job: DecodeJob) -> None:
        """Queue ``job``; raises ``asyncio.QueueFull`` when the receiver is saturated."""
        self.queue.put_nowait(job)
        QUEUE_DEPTH.labels(SERVICE).set(self.queue.qsize())

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self.queue.get()
            QUEUE_DEPTH.labels(SERVICE).set(self.queue.qsize())
            frame = job.received.frame
            STAGE_LATENCY.labels(SERVICE, "queue").observe(time.perf_counter() - job.enqueued)
            try:
                result = await loop.run_in_executor(self.executor, reconstruct, self.model, job.received)
            except Exception as exc:
                code = code_for_exception(exc)
                if code is grpc.StatusCode.INTERNAL:
                    log.exception("decoding request %s failed", frame.request_id)
                result = error_result(frame.request_id, frame.user_id, code, str(exc))
            job.session.answer(result)

    async def close(self) -> None:
        for worker in self.workers:
            worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)


class ReceiverService(pb_grpc.ReceiverServicer):
    def __init__(self, config: SemcomConfig, model: DeepJSCC):
        self.pool = DecodeWorkerPool(model, config.receiver_workers, config.receiver_queue_size)

    async def _handle(self, received: pb.ReceivedFrame, session: StreamSession) -> None:
        frame = received.frame
        try:
            self.pool.submit(DecodeJob(received, session, time.perf_counter()))
        except asyncio.QueueFull:
            session.answer(error_result(frame.request_id, frame.user_id, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        f"receiver queue is full ({self.pool.queue.maxsize} jobs); retry later"))

    async def Receive(self, request_iterator, context):
        session = StreamSession(SERVICE, self._handle, lambda r: (r.frame.request_id, r.frame.user_id))
        async for result in session.run(request_iterator):
            yield result

    async def close(self) -> None:
        await self.pool.close()


def register(service: ReceiverService):
    return lambda server: pb_grpc.add_ReceiverServicer_to_server(service, server)
