"""``rician``: block fading ``h = sqrt(K/(K+1)) + sqrt(1/(K+1)) CN(0, 1)`` (paper 003 eq. 16)."""

from __future__ import annotations

import math

from .base import ChannelOption, register_channel_kind
from .flat import COHERENCE, CSI, PILOTS, FlatChannelKind
from .spec import ChannelSpec
from .theory import ber_rician


@register_channel_kind("rician")
class Rician(FlatChannelKind):
    """Inputs: (B, n) complex64 symbols. Outputs: (B, n) received and (B, ceil(n / coherence)) gains.
    Parameter ``k_factor``: K, linear (0: Rayleigh, inf: no fading)."""

    options = (ChannelOption("--k-factor", ("k_factor",), float, "Rician K (linear); 0 is Rayleigh, inf no fading", metavar="K"),
               COHERENCE, CSI, PILOTS)
    threshold_table = "rayleigh"

    def validate(self, spec: ChannelSpec) -> None:
        if math.isnan(spec.k_factor) or spec.k_factor < 0:
            raise ValueError(f"Rician K factor must be >= 0 (linear), got {spec.k_factor}")
        super().validate(spec)

    def k_factor(self, spec: ChannelSpec) -> float:
        return spec.k_factor

    def ber_theory(self, modulation: str, spec: ChannelSpec) -> float:
        return ber_rician(modulation, spec.snr_db, spec.k_factor)
