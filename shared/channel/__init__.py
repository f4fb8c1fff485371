"""Channel kinds as blocks (one file each, on :class:`~.base.ChannelKind`, registered by name)
and the receiver's equalizers; see :mod:`.models` for the SNR convention. Importing the package
registers the shipped kinds."""

from . import awgn, rayleigh, rician, mimo, tdl, mu_mimo  # noqa: F401  # isort: skip  (each registers its kind, in this order)
from .base import ChannelKind, ChannelOption, Transmission, channel_options, register_channel_kind
from .equalizers import EQUALIZERS, EqualizedSymbols, mmse_equalize, per_symbol_gains, zf_equalize
from .flat import apply_channel
from .models import ChannelOutput, complex_normal, expand_blocks, make_generator, noise_variance
from .spec import ChannelSpec, channel_kind, channel_kinds

__all__ = [
    "EQUALIZERS",
    "ChannelKind",
    "ChannelOption",
    "ChannelOutput",
    "ChannelSpec",
    "EqualizedSymbols",
    "Transmission",
    "apply_channel",
    "channel_kind",
    "channel_kinds",
    "channel_options",
    "complex_normal",
    "expand_blocks",
    "make_generator",
    "mmse_equalize",
    "noise_variance",
    "per_symbol_gains",
    "register_channel_kind",
    "zf_equalize",
]
