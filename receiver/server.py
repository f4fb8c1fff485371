"""Receiver service: received symbols + channel state -> equalization -> decoding -> PNG.

Frames from every stream are validated on arrival and queued in the decoder's
:class:`~shared.serving.fairqueue.FairStage`, the same machinery as the transmitter's encoder
and the channel emulator (per-user round robin), with a :class:`~shared.serving.fairqueue.BatchPolicy`
(dynamic batching); its workers run the codec in a thread pool (on the GPU when present). A full
queue answers RESOURCE_EXHAUSTED at once; a job whose deadline passed is answered
DEADLINE_EXCEEDED without compute; a cancelled stream's queued jobs are dropped.

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

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.channel import ChannelSpec, Transmission
from shared.serving.adapters import AdapterCache
from shared.codecs import Codec, FrameLost
from shared.config import SemcomConfig
from shared.imageio import encode_png
from shared.decoding import DecoderMode, DiffusionDecoders, parse_mode
from shared.serving.wire import channel_spec, frame_header, transmission_from_wire
from shared.models.latent_adapter import LatentAdapter
from shared.serving.rpc import code_for_exception, error_result
from shared.serving.streaming import StreamSession
from shared.serving.fairqueue import BatchPolicy, FairStage
from shared.serving.telemetry import DROPS, SYMBOLS, USER_LATENCY, timed, user_label


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
    codec: Codec, batch: list[pb.ReceivedFrame], transmissions: list[Transmission], specs: list[ChannelSpec],
    decoders: DiffusionDecoders | None = None, adapters: list[LatentAdapter | None] | None = None,
) -> list[pb.ImageResult]:
    """Equalize and decode frames that share a grid, a decoder mode and the codec's batch key in
    one decoder pass (``transmissions``: each frame's, :func:`~shared.serving.wire.transmission_from_wire`);
    a frame the codec reports lost (e.g. its side information) is answered DATA_LOSS. ``adapters``:
    each frame's latent adapter (``None``: identity)."""
    latency: dict[str, float] = {}
    timer = lambda stage: timed(SERVICE, stage, latency)  # noqa: E731
    headers = [frame_header(r.frame) for r in batch]
    outcomes = codec.decode_batch(transmissions, specs, headers, parse_mode(batch[0].frame.mode), decoders, adapters,
                                  timer)
    results = []
    for received, outcome in zip(batch, outcomes):
        frame = received.frame
        if isinstance(outcome, FrameLost):
            DROPS.labels(SERVICE, "side_information_lost").inc()
            results.append(error_result(frame.request_id, frame.user_id, code_for_exception(outcome), str(outcome)))
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
            slot_users=len(received.state.slot_request_ids),
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
    """A queued frame and what validating it made of it: its channel spec, its transmission (the
    received samples and channel state, sizes checked) and its adapter."""

    received: pb.ReceivedFrame
    spec: ChannelSpec
    transmission: Transmission
    adapter: LatentAdapter | None = None  # the user's latent adapter the frame asks for


class ReceiverService(pb_grpc.ReceiverServicer):
    """Validates each frame on arrival, then queues it in the decoder's :class:`FairStage` (per-user
    round robin, dynamic batching by :class:`BatchPolicy`: frames of one codec, mode, grid and
    batch key decode together)."""

    def __init__(self, config: SemcomConfig, codec: Codec, decoders: DiffusionDecoders | None = None):
        self.config = config
        self.codec = codec
        self.decoders = decoders or DiffusionDecoders()
        self.executor = ThreadPoolExecutor(config.receiver_workers, thread_name_prefix="rx-worker")
        self.stage = FairStage(SERVICE, config.receiver_workers, config.receiver_queue_size,
                               config.receiver_scheduler, self.executor, latency_key="queue",
                               batching=BatchPolicy(config.receiver_max_batch, config.receiver_max_wait_ms / 1000.0),
                               user_quota=config.user_quota)
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

    def validate(self, received: pb.ReceivedFrame) -> tuple[tuple, Pending]:
        """A frame's batch key and :class:`Pending` (``ValueError``/``NotImplementedError`` for a
        frame this receiver cannot decode); normalizes ``frame.mode``."""
        frame = received.frame
        parsed = parse_mode(frame.mode)
        if frame.model and frame.model != self.codec.name:
            raise ValueError(f"frame is from codec {frame.model!r}; this receiver serves {self.codec.name!r}")
        check_mode(self.codec, self.decoders, parsed)
        frame.mode = str(parsed)
        if frame.image_height * frame.image_width > self.config.max_image_pixels:
            raise ValueError(f"frame is of a {frame.image_height}x{frame.image_width} image, over the limit of "
                             f"{self.config.max_image_pixels} pixels")
        k = self.codec.check_frame(frame_header(frame))
        spec = channel_spec(frame.channel, self.config)
        transmission = transmission_from_wire(frame.symbols, frame.num_symbols, received.state, spec)
        pending = Pending(received, spec, transmission, self.adapter_for(frame))
        return (frame.model, frame.mode, frame.grid_height, frame.grid_width, k), pending

    def _decode(self, batch: list[Pending]) -> list[pb.ImageResult]:
        return reconstruct_batch(self.codec, [p.received for p in batch], [p.transmission for p in batch],
                                 [p.spec for p in batch], self.decoders, [p.adapter for p in batch])

    async def _handle(self, received: pb.ReceivedFrame, session: StreamSession) -> None:
        frame = received.frame
        key, pending = self.validate(received)
        arrived = time.perf_counter()
        latency: dict[str, float] = {}
        deadline = frame.deadline_unix_ms / 1000.0 if frame.deadline_unix_ms else None
        result = await self.stage.run(frame.user_id, deadline, self._decode, pending, latency=latency, key=key)
        result.latency_ms.update(latency)
        USER_LATENCY.labels(user_label(frame.user_id)).observe(time.perf_counter() - arrived)
        session.answer(result)

    async def Receive(self, request_iterator, context):
        session = StreamSession(SERVICE, self._handle, lambda r: (r.frame.request_id, r.frame.user_id))
        async for result in session.run(request_iterator, context):
            yield result

    async def PublishAdapter(self, request: pb.AdapterUpdate, context) -> pb.AdapterAck:
        """Store a user's latent adapter in the bounded cache; bad updates: INVALID_ARGUMENT."""
        try:
            adapter = adapter_from_update(self.codec, request)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        self.adapters.publish(request.user_id, request.version, adapter)
        log.info("adapter version %d of user %r stored (%d users cached)", request.version, request.user_id,
                 len(self.adapters))
        return pb.AdapterAck(user_id=request.user_id, version=request.version, cached_users=len(self.adapters))

    async def close(self) -> None:
        await self.stage.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def register(service: ReceiverService):
    return lambda server: pb_grpc.add_ReceiverServicer_to_server(service, server)
