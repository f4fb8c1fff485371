"""Channel emulator service: symbols -> fading and noise -> received symbols + channel state -> receiver.

Frames wait in one bounded per-user round-robin queue (:class:`shared.serving.fairqueue.FairStage`;
``SEMCOM_CHANNEL_WORKERS``, ``SEMCOM_CHANNEL_QUEUE_SIZE``, ``SEMCOM_CHANNEL_SCHEDULER``):
full -> RESOURCE_EXHAUSTED, deadline passed -> DEADLINE_EXCEEDED, cancelled -> dropped.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.channel import make_generator
from shared.channel.link import transmit
from shared.phy.symbols import achieved_cbr
from shared.config import SemcomConfig
from shared.serving.fairqueue import FairStage
from shared.serving.wire import channel_spec, transmission_to_wire
from shared.serving.rpc import open_channel
from shared.serving.streaming import StreamSession
from shared.phy.symbols import unpack_complex
from shared.serving.telemetry import SYMBOLS, timed

SERVICE = "channel_emulator"


def propagate(frame: pb.SymbolFrame, config: SemcomConfig) -> pb.ReceivedFrame:
    """Pass one frame's symbols through its channel; the result carries the channel state.

    The achieved CBR is updated to the channel uses actually spent (MIMO streams, pilots).
    """
    if frame.num_symbols < 1 or frame.image_height < 1 or frame.image_width < 1:
        raise ValueError(f"a frame holds at least one symbol of an image of at least 1x1 pixels, got "
                         f"{frame.num_symbols} symbols of {frame.image_height}x{frame.image_width}")
    spec = channel_spec(frame.channel, config)
    symbols = unpack_complex(frame.symbols, frame.num_symbols)
    latency: dict[str, float] = {}
    with timed(SERVICE, "channel", latency):
        transmission = transmit(symbols[None], spec, make_generator(spec.seed))
        payload, state = transmission_to_wire(transmission, spec)
    state.kind, state.snr_db = spec.kind, spec.snr_db
    SYMBOLS.labels(SERVICE).inc(frame.num_symbols)
    received = pb.SymbolFrame()
    received.CopyFrom(frame)
    received.symbols = payload
    received.achieved_cbr = achieved_cbr(transmission.channel_uses, (frame.image_height, frame.image_width))
    received.latency_ms.update(latency)
    return pb.ReceivedFrame(frame=received, state=state)


class ChannelEmulatorService(pb_grpc.ChannelEmulatorServicer):
    """Applies each frame's channel and relays it to the receiver; results pass back unchanged."""

    def __init__(self, config: SemcomConfig):
        self.config = config
        self.executor = ThreadPoolExecutor(config.channel_workers, thread_name_prefix="channel")
        self.stage = FairStage(SERVICE, config.channel_workers, config.channel_queue_size, config.channel_scheduler,
                               self.executor, latency_key="channel_queue", user_quota=config.user_quota)
        self.channel = open_channel(config.receiver_target, config)
        self.receiver_stub = pb_grpc.ReceiverStub(self.channel)

    async def _handle(self, frame: pb.SymbolFrame, session: StreamSession) -> None:
        latency: dict[str, float] = {}
        received = await self.stage.run(frame.user_id, frame.deadline_unix_ms / 1000.0 or None, propagate, frame,
                                        self.config, latency=latency)
        received.frame.latency_ms.update(latency)
        session.forward(frame.request_id, received)

    async def Propagate(self, request_iterator, context):
        session = StreamSession(SERVICE, self._handle, lambda f: (f.request_id, f.user_id))

        async def passthrough(result: pb.ImageResult, _context) -> pb.ImageResult:
            return result

        session.open_downstream(self.receiver_stub.Receive, f"receiver at {self.config.receiver_target}", passthrough,
                                self.config.max_message_bytes)
        async for result in session.run(request_iterator, context):
            yield result

    async def close(self) -> None:
        await self.stage.close()
        await self.channel.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def register(service: ChannelEmulatorService):
    return lambda server: pb_grpc.add_ChannelEmulatorServicer_to_server(service, server)
