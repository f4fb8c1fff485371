"""Validation and conversion of API messages into the pure stages' types.

Every function raises ``ValueError`` (bad input: INVALID_ARGUMENT) or
``NotImplementedError`` (a valid option this release does not serve: UNIMPLEMENTED) with
a message for the user.
"""

from __future__ import annotations

import math
from fractions import Fraction

from .api.semcom.v1 import semcom_pb2 as pb
from .channel import ChannelSpec
from .codec import parse_cbr
from .config import SemcomConfig

DEFAULT_CBR = Fraction(1, 24)
DEFAULT_MODE = "jscc"
# Decoder modes this release serves (diffusion modes arrive with the generative receiver).
DECODER_MODES = ("jscc",)
# Network evaluations each mode spends.
MODE_NFE = {"jscc": 1}


def channel_spec(message: pb.ChannelSpec, config: SemcomConfig) -> ChannelSpec:
    """The validated :class:`ChannelSpec` of a request."""
    kind = (message.kind or "awgn").strip().lower()
    if not config.min_snr_db <= message.snr_db <= config.max_snr_db:
        raise ValueError(
            f"SNR {message.snr_db} dB is outside the served range [{config.min_snr_db}, {config.max_snr_db}] dB")
    if max(message.tx_antennas, message.rx_antennas) > 1:
        raise NotImplementedError("MIMO channels are not served by this release; use a SISO channel")
    spec = ChannelSpec(
        kind=kind,
        snr_db=message.snr_db,
        k_factor=message.k_factor,
        coherence_symbols=message.coherence_symbols or ChannelSpec.coherence_symbols,
        seed=message.seed if message.HasField("seed") else None,
    )
    spec.validate()
    return spec


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
    """A request's decoder mode, normalized ('' means the default)."""
    mode = (text or DEFAULT_MODE).strip().lower()
    if mode not in DECODER_MODES:
        raise ValueError(f"unknown decoder mode {text!r}; this release serves: {', '.join(DECODER_MODES)}")
    return mode
