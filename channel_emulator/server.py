"""Channel emulator service: symbols -> fading and noise -> received symbols + channel state -> receiver.

Frames wait in one bounded per-user round-robin queue (:class:`shared.serving.fairqueue.FairStage`;
``SEMCOM_CHANNEL_WORKERS``, ``SEMCOM_CHANNEL_QUEUE_SIZE``, ``SEMCOM_CHANNEL_SCHEDULER``):
full -> RESOURCE_EXHAUSTED, deadline passed -> DEADLINE_EXCEEDED, cancelled -> dropped.
Frames of a kind whose users share slots (``mu_mimo``) first meet their partners
(:class:`shared.serving.slots.SlotGrouper`, ``SEMCOM_CHANNEL_SLOT_WINDOW_MS``); a slot then
crosses the queue as one job.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.channel import ChannelSpec, channel_kind, make_generator
from shared.channel.link import transmit
from shared.phy.symbols import achieved_cbr
from shared.config import SemcomConfig
from shared.serving.fairqueue import FairStage
from shared.serving.slots import SlotGrouper
from shared.serving.wire import channel_spec, transmission_to_wire
from shared.serving.rpc import open_channel
from shared.serving.streaming import StreamSession
from shared.phy.symbols import unpack_complex
from shared.serving.telemetry import SLOT_USERS, SYMBOLS, timed

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
    return _received(frame, spec, payload, state, transmission.channel_uses, latency)


def propagate_slot(frames: list[pb.SymbolFrame], config: SemcomConfig) -> list[pb.ReceivedFrame]:
    """Superpose the frames of one slot (different users, the same :func:`slot_key`) in the same
    channel uses of their slot-sharing kind; each user's Es/N0 is its own ``snr_db`` (a
    large-scale gain over the first frame's, whose seed draws the slot). Every result carries the
    whole slot, its user's column and the request ids that shared it."""
    specs = [channel_spec(f.channel, config) for f in frames]
    first = specs[0]
    spec = dataclasses.replace(first, users=len(frames), user_gains_db=tuple(s.snr_db - first.snr_db for s in specs))
    spec.validate()
    latency: dict[str, float] = {}
    with timed(SERVICE, "channel", latency):
        symbols = [unpack_complex(f.symbols, f.num_symbols) for f in frames]
        views = channel_kind(spec.kind).transmit_slot(symbols, spec, make_generator(spec.seed))
        wires = [transmission_to_wire(view, spec) for view in views]
    SLOT_USERS.labels(SERVICE).observe(len(frames))
    results = []
    for frame, own, view, (payload, state) in zip(frames, specs, views, wires):
        state.slot_request_ids.extend(f.request_id for f in frames)
        results.append(_received(frame, own, payload, state, view.channel_uses, latency))
    return results


def slot_key(spec: ChannelSpec) -> tuple:
    """What the frames sharing a slot must have in common: the kind, receive antennas, coherence
    length and slot size (SNRs may differ: large-scale gains; the receiver's detector is each user's)."""
    return spec.kind, spec.rx_antennas, spec.coherence_symbols, spec.users


def _received(frame: pb.SymbolFrame, spec: ChannelSpec, payload: bytes, state: pb.ChannelState, channel_uses: int,
              latency: dict[str, float]) -> pb.ReceivedFrame:
    """``frame`` with the received samples in place of its symbols, and its channel state."""
    state.kind, state.snr_db = spec.kind, spec.snr_db
    SYMBOLS.labels(SERVICE).inc(frame.num_symbols)
    received = pb.SymbolFrame()
    received.CopyFrom(frame)
    received.symbols = payload
    received.achieved_cbr = achieved_cbr(channel_uses, (frame.image_height, frame.image_width))
    received.latency_ms.update(latency)
    return pb.ReceivedFrame(frame=received, state=state)


class ChannelEmulatorService(pb_grpc.ChannelEmulatorServicer):
    """Applies each frame's channel and relays it to the receiver; results pass back unchanged."""

    def __init__(self, config: SemcomConfig):
        self.config = config
        self.executor = ThreadPoolExecutor(config.channel_workers, thread_name_prefix="channel")
        self.stage = FairStage(SERVICE, config.channel_workers, config.channel_queue_size, config.channel_scheduler,
                               self.executor, latency_key="channel_queue", user_quota=config.user_quota)
        self.slots = SlotGrouper(config.channel_slot_window_ms / 1000.0, self._send_slot)
        self.channel = open_channel(config.receiver_target, config)
        self.receiver_stub = pb_grpc.ReceiverStub(self.channel)

    async def _handle(self, frame: pb.SymbolFrame, session: StreamSession) -> None:
        spec = channel_spec(frame.channel, self.config)
        if channel_kind(spec.kind).shares_slots:
            received = await self.slots.submit(slot_key(spec), spec.users, frame.user_id, frame)
        else:
            latency: dict[str, float] = {}
            received = await self.stage.run(frame.user_id, frame.deadline_unix_ms / 1000.0 or None, propagate, frame,
                                            self.config, latency=latency)
            received.frame.latency_ms.update(latency)
        session.forward(frame.request_id, received)

    async def _send_slot(self, frames: list[pb.SymbolFrame]) -> list[pb.ReceivedFrame]:
        """One slot through the fair stage (as its first user's job, by the earliest deadline)."""
        deadlines = [f.deadline_unix_ms / 1000.0 for f in frames if f.deadline_unix_ms]
        latency: dict[str, float] = {}
        results = await self.stage.run(frames[0].user_id, min(deadlines) if deadlines else None, propagate_slot,
                                       frames, self.config, latency=latency)
        for received in results:
            received.frame.latency_ms.update(latency)
        return results

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
