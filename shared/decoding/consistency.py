"""``consistency[:s]``: the consistency-distilled student, one evaluation at t_m and s - 1
resampling rounds (paper 003 Alg. 4; default s = 1)."""

from __future__ import annotations

import torch

from ..diffusion.sampling import channel_schedule, consistency_sample, karras_times
from ..models.latent_denoiser import LatentDenoiser
from .base import DecoderMode, LatentDenoising, ModeWeights, register_decoder_mode


@register_decoder_mode("consistency")
class ConsistencyDecoding(LatentDenoising):
    count_range = (1, 8)
    count_label = "s"
    summary = "the distilled student, 1 step (s: with s-1 resampling rounds), then the JSCC decoder"
    weights = ModeWeights("student", "consistency", "consistency_weights", "latent_consistency.safetensors")

    def sample(self, mode: DecoderMode, network: LatentDenoiser, x: torch.Tensor, profile: torch.Tensor,
               t: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, list[int]]:
        cfg = network.config
        times = karras_times(cfg.steps, cfg.t_min, cfg.t_max, cfg.rho)
        schedule = channel_schedule(float(t.min()), times)  # resampling stays below every t_m
        estimate, spent = consistency_sample(network, x, profile, t, schedule, mode.count or 1, generator)
        return estimate, [spent] * x.shape[0]
