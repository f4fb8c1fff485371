"""Validation and conversion of API messages into the pure stages' types.

Every function raises ``ValueError`` (bad input: INVALID_ARGUMENT) or
``NotImplementedError`` (a valid option this release does not serve: UNIMPLEMENTED) with
a message for the user.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch

from .adaptation import AdaptationOptions
from .api.semcom.v1 import semcom_pb2 as pb
from .channel import ChannelOutput, ChannelSpec
from .channel.link import Transmission
from .channel.mimo import MimoChannelOutput, MimoState
from .codecs import FrameHeader
from .symbols import parse_cbr
from .config import SemcomConfig
from .diffusion.modes import parse_mode
from .symbols import pack_complex, parse_cbr, unpack_complex

DEFAULT_CBR = Fraction(1, 24)
DECODER_MODES = ("jscc", "teacher[:N]", "consistency[:s]", "generative[:steps]", "generative-p[:steps]",
                 "finetune")
"""Decoder modes this release serves (:mod:`shared.diffusion.modes`)."""


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
    )
    spec.validate()
    return spec


def transmission_to_wire(transmission: Transmission) -> tuple[bytes, pb.ChannelState]:
    """The received samples (frame payload) and channel state of a one-image transmission."""
    state = pb.ChannelState(channel_uses=transmission.channel_uses, feedback_bits=transmission.feedback_bits)
    if transmission.mimo is not None:
        mimo = transmission.mimo.state
        state.noise_variance = mimo.noise_variance
        state.coherence_symbols = mimo.coherence_uses
        state.num_blocks = mimo.channel.shape[1]
        state.rx_antennas, state.tx_antennas = mimo.channel.shape[-2:]
        state.channel_matrices = pack_complex(mimo.channel[0].flatten())
        if mimo.combiner is not None:
            state.combiners = pack_complex(mimo.combiner[0].flatten())
            state.singular_values = mimo.singular_values[0].float().numpy().astype("<f4").tobytes()
        return pack_complex(transmission.mimo.received[0].flatten()), state
    siso = transmission.siso
    state.noise_variance = siso.noise_variance
    state.coherence_symbols = siso.coherence_symbols
    if siso.block_gains is not None:
        state.block_gains = pack_complex(siso.block_gains[0])
        state.num_blocks = siso.block_gains.shape[1]
    if transmission.received_pilots is not None:
        state.num_blocks, state.pilots_per_block = transmission.received_pilots.shape[1:]
        state.received_pilots = pack_complex(transmission.received_pilots[0].flatten())
    return pack_complex(siso.received[0]), state


def transmission_from_wire(symbols: bytes, n_symbols: int, state: pb.ChannelState, spec: ChannelSpec) -> Transmission:
    """Inverse of :func:`transmission_to_wire` (``ValueError`` on inconsistent sizes)."""
    if spec.kind == "mimo":
        nb, nr, nt = state.num_blocks, state.rx_antennas, state.tx_antennas
        scheme = spec.mimo_scheme
        streams = min(nt, nr) if scheme == "svd" else nt
        uses = -(-n_symbols // streams)
        h = unpack_complex(state.channel_matrices, nb * nr * nt).reshape(1, nb, nr, nt)
        u = sigma = None
        if scheme == "svd":
            u = unpack_complex(state.combiners, nb * nr * streams).reshape(1, nb, nr, streams)
            if len(state.singular_values) != 4 * nb * streams:
                raise ValueError("singular values do not match the MIMO state's size")
            sigma = torch.from_numpy(np.frombuffer(state.singular_values, dtype="<f4").copy()).reshape(1, nb, streams)
        received = unpack_complex(symbols, uses * nr).reshape(1, uses, nr)
        mimo_state = MimoState(scheme, h, u, sigma, state.coherence_symbols, state.noise_variance)
        return Transmission(None, MimoChannelOutput(received, mimo_state, n_symbols), None, state.channel_uses,
                            state.feedback_bits)
    received = unpack_complex(symbols, n_symbols)[None]
    gains = unpack_complex(state.block_gains, state.num_blocks)[None] if state.block_gains else None
    pilots = None
    if state.received_pilots:
        count = state.num_blocks * state.pilots_per_block
        pilots = unpack_complex(state.received_pilots, count).reshape(1, state.num_blocks, state.pilots_per_block)
    siso = ChannelOutput(received, gains, state.coherence_symbols or n_symbols, state.noise_variance)
    return Transmission(siso, None, pilots, state.channel_uses)


def frame_header(frame: pb.SymbolFrame) -> FrameHeader:
    """What a codec reads of a frame's fields (:meth:`~shared.codecs.Codec.check_frame`)."""
    return FrameHeader(frame.num_symbols, (frame.grid_height, frame.grid_width), (frame.image_height, frame.image_width),
                       tuple(frame.token_lengths), frame.side_channel_symbols)


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
    see :func:`shared.diffusion.modes.parse_mode` for the errors."""
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
