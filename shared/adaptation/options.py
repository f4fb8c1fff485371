"""The options of :func:`~shared.adaptation.learning.learn_adapter`, apart from its loop so that
the wire conversion (:mod:`shared.serving.wire`) can validate them without importing it."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

ADAPTER_CHANNEL_KINDS = ("awgn", "rayleigh")


@dataclass(frozen=True)
class AdaptationOptions:
    """How :func:`learn_adapter` fits an adapter.

    Attributes:
        snr_range_db: (low, high) SNR range, dB, the channel draws are spread over (uniform).
        kinds: channel kinds drawn from (block fading of 64 symbols for Rayleigh).
        cbrs: CBRs drawn from; they set the allocation's mean symbols per token.
        draws: channel draws per image.
        steps: Adam steps.
        learning_rate: Adam's step size.
        crop_tokens: side, in tokens (16 px), of the random latent crops decoded per step.
        crops_per_step: crops in each step's batch.
        penalty: rho, the weight of (||W - I||^2 + ||b||^2) / C.
        seed: seed of the draws, crops and channel noise.
    """

    snr_range_db: tuple[float, float] = (0.0, 20.0)
    kinds: tuple[str, ...] = ADAPTER_CHANNEL_KINDS
    cbrs: tuple[Fraction, ...] = (Fraction(1, 48), Fraction(1, 24))
    draws: int = 4
    steps: int = 200
    learning_rate: float = 5e-3
    crop_tokens: int = 8
    crops_per_step: int = 4
    penalty: float = 1e-3
    seed: int = 0

    def validate(self) -> None:
        low, high = self.snr_range_db
        if not (-10.0 <= low <= high <= 40.0):
            raise ValueError(f"adaptation SNR range [{low}, {high}] dB must be ordered and within [-10, 40] dB")
        if not 1 <= self.steps <= 5000:
            raise ValueError(f"adaptation steps must be in 1..5000, got {self.steps}")
        if self.draws < 1 or self.crop_tokens < 1 or self.crops_per_step < 1:
            raise ValueError("adaptation draws, crop size and crops per step must be positive")
        unknown = set(self.kinds) - set(ADAPTER_CHANNEL_KINDS)
        if not self.kinds or unknown:
            raise ValueError(f"adaptation channel kinds must be among {ADAPTER_CHANNEL_KINDS}, got {self.kinds}")
