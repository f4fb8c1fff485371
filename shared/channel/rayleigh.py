"""``rayleigh``: block fading, one CN(0, 1) gain per ``coherence_symbols`` symbols (1: fast fading)."""

from __future__ import annotations

from .base import register_channel_kind
from .flat import FlatChannelKind
from .spec import ChannelSpec
from .theory import ber_rayleigh


@register_channel_kind("rayleigh")
class Rayleigh(FlatChannelKind):
    """Inputs: (B, n) complex64 symbols. Outputs: (B, n) received and (B, ceil(n / coherence)) gains."""

    def k_factor(self, spec: ChannelSpec) -> float:
        return 0.0

    def ber_theory(self, modulation: str, spec: ChannelSpec) -> float:
        return ber_rayleigh(modulation, spec.snr_db)
