"""``awgn``: ``y = x + n``, ``n ~ CN(0, N0)`` (no fading; one block of gain 1 for pilots)."""

from __future__ import annotations

import torch

from .base import register_channel_kind
from .flat import CSI, PILOTS, FlatChannelKind
from .models import ChannelOutput, complex_normal, noise_variance
from .spec import ChannelSpec
from .theory import ber_awgn


@register_channel_kind("awgn")
class AWGN(FlatChannelKind):
    """Inputs: (B, n) complex64 symbols. Outputs: (B, n) received; no gains (``block_gains`` ``None``)."""

    options = (CSI, PILOTS)
    threshold_table = "awgn"
    block_fading = False

    def k_factor(self, spec: ChannelSpec) -> float:
        return float("inf")

    def apply(self, symbols: torch.Tensor, spec: ChannelSpec, generator: torch.Generator | None = None) -> ChannelOutput:
        batch, n = symbols.shape
        n0 = noise_variance(spec.snr_db)
        return ChannelOutput(symbols + complex_normal((batch, n), n0, generator, symbols.device), None, n, n0)

    def ber_theory(self, modulation: str, spec: ChannelSpec) -> float:
        return ber_awgn(modulation, spec.snr_db)
