"""Channel models and receiver equalizers (see :mod:`.models` for the SNR convention)."""

from .equalizers import EQUALIZERS, EqualizedSymbols, mmse_equalize, per_symbol_gains, zf_equalize
from .models import (
    CHANNEL_KINDS,
    ChannelOutput,
    ChannelSpec,
    apply_channel,
    complex_normal,
    expand_blocks,
    make_generator,
    noise_variance,
)

__all__ = [
    "CHANNEL_KINDS",
    "EQUALIZERS",
    "ChannelOutput",
    "ChannelSpec",
    "EqualizedSymbols",
    "apply_channel",
    "complex_normal",
    "expand_blocks",
    "make_generator",
    "mmse_equalize",
    "noise_variance",
    "per_symbol_gains",
    "zf_equalize",
]
