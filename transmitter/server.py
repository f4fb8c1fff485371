"""Transmitter service: image -> semantic encoder -> power-normalized symbols -> channel emulator.

Results come back through the same stream; the transmitter, which holds the sent image,
adds the quality figures and the end-to-end latency.

``Adapt`` learns a user's out-of-distribution latent adapter (:mod:`shared.adaptation.learning`) on the
encoder's workers and publishes it to every receiver replica behind the receiver address (a
``dns:///`` name resolves to all of them); that user's ``use_adapter`` requests are then stamped
with its version (``SymbolFrame.adapter_version``).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import torch

from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.adaptation.learning import learn_adapter
from shared.serving.adapters import AdapterMissing
from shared.codecs import Codec
from shared.config import SemcomConfig
from shared.serving.fairqueue import FairStage
from shared.imageio import decode_image, load_image_file
from shared.serving.wire import adaptation_options, channel_spec, deadline_unix_ms, decoder_mode, target_cbr
from shared.quality import ms_ssim, psnr
from shared.serving.rpc import code_for_exception, open_channel, replica_targets, status_code
from shared.serving.streaming import StreamSession
from shared.phy.symbols import pack_complex
from shared.serving.telemetry import SYMBOLS, STAGE_LATENCY, timed

SERVICE = "transmitter"
log = logging.getLogger("semcom.transmitter")


@dataclass
class SentImage:
    """What the transmitter keeps of a request until its result returns."""

    image: torch.Tensor  # (3, H, W) in [0, 1]
    started: float  # time.perf_counter() at arrival
    scored: bool = True  # PSNR/MS-SSIM wanted in the result (the request's skip_quality off)


def decode_input(data: bytes, config: SemcomConfig) -> torch.Tensor:
    """A client's image bytes -> (3, H, W) in [0, 1] under the configured limits (``ValueError``)."""
    return decode_image(data, config.max_image_pixels, config.min_image_side, config.max_image_pixels_per_byte)


def encode_request(codec: Codec, request: pb.ImageRequest, config: SemcomConfig) -> tuple[pb.SymbolFrame, torch.Tensor]:
    """Validate and encode one request: the frame to send (named after the codec, which the
    receiver reads to pick its decoder) and the decoded input image."""
    spec = channel_spec(request.channel, config)
    cbr = target_cbr(request.target_cbr)
    mode = decoder_mode(request.mode)
    deadline = deadline_unix_ms(request.deadline_ms, time.time())
    if len(request.image) > config.max_image_bytes:
        raise ValueError(f"image is {len(request.image)} bytes, over the limit of {config.max_image_bytes}")
    latency: dict[str, float] = {}
    with timed(SERVICE, "decode_input", latency):
        image = decode_input(request.image, config)
    with timed(SERVICE, "encode", latency):
        encoded = codec.encode(image, spec, cbr)
    n = encoded.symbols.numel()
    SYMBOLS.labels(SERVICE).inc(n)
    frame = pb.SymbolFrame(
        request_id=request.request_id,
        user_id=request.user_id,
        channel=request.channel,
        mode=mode,
        model=codec.name,
        symbols=pack_complex(encoded.symbols),
        num_symbols=n,
        token_lengths=encoded.token_lengths,
        power_scale=encoded.power_scale,
        grid_height=encoded.grid[0],
        grid_width=encoded.grid[1],
        image_height=encoded.image_size[0],
        image_width=encoded.image_size[1],
        target_cbr=float(cbr),
        achieved_cbr=encoded.cbr,
        latency_ms=latency,
        deadline_unix_ms=deadline,
        side_channel_symbols=encoded.side_symbols,
    )
    return frame, image


def score(result: pb.ImageResult, sent: SentImage) -> None:
    """Add PSNR and MS-SSIM of the returned PNG against the sent image (in place)."""
    latency: dict[str, float] = {}
    with timed(SERVICE, "quality", latency):
        received = load_image_file(io.BytesIO(result.image))
        if received.shape != sent.image.shape:
            raise RuntimeError(f"receiver returned a {tuple(received.shape)} image for a {tuple(sent.image.shape)} input")
        reference, estimate = sent.image[None], received[None]
        result.quality.psnr_db = float(psnr(reference, estimate)[0])
        result.quality.ms_ssim = float(ms_ssim(reference, estimate)[0])
    result.latency_ms.update(latency)


class TransmitterService(pb_grpc.TransmitterServicer):
    """Streams each client's images through the chain; one downstream stream per client stream."""

    def __init__(self, config: SemcomConfig, codec: Codec):
        self.config = config
        self.codec = codec
        self.executor = ThreadPoolExecutor(config.transmitter_workers, thread_name_prefix="tx")
        # Per-user round robin in front of the encoder, where requests queue (shared/serving/fairqueue.py).
        self.encoder = FairStage(SERVICE, config.transmitter_workers, config.transmitter_queue_size,
                                 config.transmitter_scheduler, self.executor, latency_key="tx_queue",
                                 user_quota=config.user_quota)
        self.channel = open_channel(config.channel_target, config)
        self.channel_stub = pb_grpc.ChannelEmulatorStub(self.channel)
        # Latent adapters (Adapt): the latest version published to the receiver, per user; versions
        # are unique across users and calls, so two adapters never share one.
        self.adapter_versions: dict[str, int] = {}
        self.adapter_serial = itertools.count(1)

    async def _handle(self, request: pb.ImageRequest, session: StreamSession) -> None:
        started = time.perf_counter()
        deadline = deadline_unix_ms(request.deadline_ms, time.time())  # counted from arrival, not from encoding
        latency: dict[str, float] = {}
        adapter_version = self._adapter_version(request)
        frame, image = await self.encoder.run(request.user_id, deadline / 1000.0 or None, encode_request,
                                              self.codec, request, self.config, latency=latency)
        frame.deadline_unix_ms = deadline
        frame.adapter_version = adapter_version
        frame.latency_ms.update(latency)
        session.forward(request.request_id, frame, SentImage(image, started, not request.skip_quality))

    def _adapter_version(self, request: pb.ImageRequest) -> int:
        """The adapter version a request's frame is stamped with (0: identity, ``use_adapter`` off)."""
        if not request.use_adapter:
            return 0
        self._check_adapters("use_adapter")
        version = self.adapter_versions.get(request.user_id)
        if version is None:
            raise AdapterMissing(f"no latent adapter was learned for user {request.user_id!r}: run "
                                 f"`semcom adapt --user {request.user_id} IMAGE ...` first")
        return version

    def _check_adapters(self, what: str) -> None:
        """``NotImplementedError`` (UNIMPLEMENTED) unless the codec takes latent adapters."""
        if self.codec.adapter_channels is None:
            raise NotImplementedError(f"{what} needs a codec with latent adapters (rate-adaptive); this transmitter "
                                      f"serves {self.codec.describe()}, which has none")

    async def Adapt(self, request: pb.AdaptRequest, context) -> pb.AdaptResult:
        """Learn the user's latent adapter on the encoder's workers, publish it, answer with its figures."""
        started = time.perf_counter()
        latency: dict[str, float] = {}
        try:
            self._check_adapters("adaptation")
            options = adaptation_options(request, self.config)
            with timed(SERVICE, "decode_input", latency):
                images = [decode_input(data, self.config) for data in request.images]
            with timed(SERVICE, "adapt", latency):
                learned = await self.encoder.run(request.user_id, None, learn_adapter, self.codec.model, images, options,
                                                 False, latency=latency)
        except (ValueError, NotImplementedError) as exc:
            await context.abort(code_for_exception(exc), str(exc))
        version = next(self.adapter_serial)
        payload = learned.adapter.to_bytes()
        update = pb.AdapterUpdate(user_id=request.user_id, version=version, model=self.codec.name, parameters=payload)
        try:
            with timed(SERVICE, "publish", latency):
                receivers = await self._publish(update)
        except OSError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the receiver address {self.config.receiver_target} "
                                                              f"does not resolve: {exc}")
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                code = grpc.StatusCode.UNAVAILABLE
            await context.abort(code, f"publishing the adapter to the receiver at {self.config.receiver_target} "
                                      f"failed: {exc.code().name}: {exc.details()}")
        self.adapter_versions[request.user_id] = version
        latency["end_to_end"] = 1000.0 * (time.perf_counter() - started)
        return pb.AdaptResult(user_id=request.user_id, version=version, parameters=learned.adapter.parameter_count,
                              parameter_bytes=len(payload), psnr_before_db=learned.psnr_before_db,
                              psnr_after_db=learned.psnr_after_db, receivers=receivers, latency_ms=latency)

    async def _publish(self, update: pb.AdapterUpdate) -> int:
        """Send ``update`` to every receiver replica behind the configured address (each keeps its own
        adapter cache, and a user's frames may reach any of them); returns how many hold it."""
        targets = await asyncio.to_thread(replica_targets, self.config.receiver_target)

        async def publish(target: str) -> None:
            channel = open_channel(target, self.config)
            try:
                await pb_grpc.ReceiverStub(channel).PublishAdapter(update, timeout=30)
            finally:
                await channel.close()

        await asyncio.gather(*(publish(target) for target in targets))
        return len(targets)

    async def _finish(self, result: pb.ImageResult, sent: SentImage) -> pb.ImageResult:
        if sent.scored and status_code(result) is grpc.StatusCode.OK:
            await self.encoder.run_first(score, result, sent)  # on the encoder's workers, ahead of its queue
        seconds = time.perf_counter() - sent.started
        STAGE_LATENCY.labels(SERVICE, "end_to_end").observe(seconds)
        result.latency_ms["end_to_end"] = seconds * 1000.0
        return result

    def _session(self) -> StreamSession:
        session = StreamSession(SERVICE, self._handle, lambda r: (r.request_id, r.user_id))
        session.open_downstream(self.channel_stub.Propagate, f"channel emulator at {self.config.channel_target}", self._finish,
                                self.config.max_message_bytes)
        return session

    async def Transmit(self, request_iterator, context):
        async def with_ids():
            async for request in request_iterator:
                if not request.request_id:
                    request.request_id = uuid.uuid4().hex
                yield request

        async for result in self._session().run(with_ids(), context):
            yield result

    async def TransmitOne(self, request: pb.ImageRequest, context) -> pb.ImageResult:
        async def single():
            yield request

        result = pb.ImageResult()
        async for result in self.Transmit(single(), context):
            pass
        code = status_code(result)
        if code is not grpc.StatusCode.OK:
            await context.abort(code, result.status.message)
        return result

    async def close(self) -> None:
        await self.encoder.close()
        await self.channel.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def register(service: TransmitterService):
    return lambda server: pb_grpc.add_TransmitterServicer_to_server(service, server)


