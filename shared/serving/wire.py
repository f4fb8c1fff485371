"""Validation and conversion of API messages into the pure stages' types.

Every function raises ``ValueError`` (bad input: INVALID_ARGUMENT) or
``NotImplementedError`` (a valid option this release does not serve: UNIMPLEMENTED) with
a message for the user.
"""

from __future__ import annotations

import math
from fractions import Fraction

from ..adaptation.options import AdaptationOptions
from ..api.semcom.v1 import semcom_pb2 as pb
from ..channel import ChannelSpec, Transmission, channel_kind
from ..codecs import FrameHeader
from ..config import SemcomConfig
from ..decoding import parse_mode
from ..phy.symbols import pack_complex, parse_cbr

DEFAULT_CBR = Fraction(1, 24)


def channel_spec(message: pb.ChannelSpec, config: SemcomConfig) -> ChannelSpec:
    """The validated :class:`ChannelSpec` of a request (zero fields take the defaults)."""
    if not config.min_snr_db <= message.snr_db <= config.max_snr_db:
        raise ValueError(
            f"SNR {message.snr_db} dB is outside the served range [{config.min_snr_db}, {config.max_snr_db}] dB")
    defaults = ChannelSpec()
    spec = ChannelSpec(
        kind=(message.kind or defaults.kind).strip().lower(),
        snr_db=message.snr_db,
        k_factor=message.k_factor,
        coherence_symbols=message.coherence_symbols or defaults.coherence_symbols,
        seed=message.seed if message.HasField("seed") else None,
        tx_antennas=message.tx_antennas or defaults.tx_antennas,
        rx_antennas=message.rx_antennas or defaults.rx_antennas,
        mimo_scheme=(message.mimo_scheme or defaults.mimo_scheme).strip().lower(),
        csi=(message.csi or defaults.csi).strip().lower(),
        pilots=message.pilots or defaults.pilots,
        tdl_model=(message.tdl_model or defaults.tdl_model).strip().upper(),
        delay_spread_ns=message.delay_spread_ns or defaults.delay_spread_ns,
        speed_mps=message.speed_mps,
        users=message.users or defaults.users,
        multiuser_detector=(message.multiuser_detector or defaults.multiuser_detector).strip().lower(),
    )
    spec.validate()
    return spec


def transmission_to_wire(transmission: Transmission, spec: ChannelSpec) -> tuple[bytes, pb.ChannelState]:
    """The received samples (frame payload) and channel state of a one-image transmission over
    ``spec``'s kind (:meth:`~shared.channel.ChannelKind.to_wire`). The wire format is the one of
    every earlier release: each kind fills the ``ChannelState`` fields it uses."""
    samples, fields = channel_kind(spec.kind).to_wire(transmission)
    return pack_complex(samples), pb.ChannelState(**fields)


def transmission_from_wire(symbols: bytes, n_symbols: int, state: pb.ChannelState, spec: ChannelSpec) -> Transmission:
    """Inverse of :func:`transmission_to_wire` (``ValueError`` on inconsistent sizes)."""
    return channel_kind(spec.kind).from_wire(symbols, n_symbols, state, spec)


def frame_header(frame: pb.SymbolFrame) -> FrameHeader:
    """What a codec reads of a frame's fields (:meth:`~shared.codecs.Codec.check_frame`)."""
    return FrameHeader(frame.num_symbols, (frame.grid_height, frame.grid_width), (frame.image_height, frame.image_width),
                       tuple(frame.token_lengths), frame.side_channel_symbols, frame.power_scale)


def target_cbr(value: float) -> Fraction:
    """A request's CBR (0 means the default 1/24)."""
    if value == 0:
        return DEFAULT_CBR
    if not math.isfinite(value):
        raise ValueError(f"target CBR must be a finite number, got {value}")
    return parse_cbr(value)


def deadline_unix_ms(deadline_ms: float, now_s: float) -> float:
    """Absolute deadline (Unix epoch ms) of a request with a ``deadline_ms`` budget; 0 = none."""
    if not math.isfinite(deadline_ms) or deadline_ms < 0:
        raise ValueError(f"deadline_ms must be a finite number >= 0, got {deadline_ms}")
    return now_s * 1000.0 + deadline_ms if deadline_ms else 0.0


def decoder_mode(text: str) -> str:
    """A request's decoder mode, normalized ('' means jscc; 'teacher:50', 'consistency:2', ...);
    see :func:`shared.decoding.parse_mode` for the errors."""
    return str(parse_mode(text))


def adaptation_options(request: pb.AdaptRequest, config: SemcomConfig) -> AdaptationOptions:
    """The validated options of an Adapt request (zero fields take the defaults)."""
    if not request.user_id:
        raise ValueError("an adapter is learned per user: user_id is required")
    if not 1 <= len(request.images) <= config.adapt_max_images:
        raise ValueError(f"adaptation takes 1 to {config.adapt_max_images} images, got {len(request.images)}")
    if any(len(image) > config.max_image_bytes for image in request.images):
        raise ValueError(f"an adaptation image is over the limit of {config.max_image_bytes} bytes")
    defaults = AdaptationOptions()
    snr = (request.snr_min_db, request.snr_max_db)
    if not all(math.isfinite(value) for value in snr):
        raise ValueError(f"adaptation SNR range {snr} must be finite")
    options = AdaptationOptions(snr_range_db=snr if any(snr) else defaults.snr_range_db,
                                steps=request.steps or defaults.steps)
    options.validate()
    return options
