"""``teacher[:N]``: the latent diffusion teacher, Heun's ODE from the channel's t_m on the EDM
schedule of N steps (default the model's, 100); NFE grows as the SNR drops."""

from __future__ import annotations

import torch

from ..diffusion.sampling import channel_schedule, heun_nfe, heun_sample, karras_times
from ..models.latent_denoiser import LatentDenoiser
from .base import DecoderMode, LatentDenoising, ModeWeights, register_decoder_mode


@register_decoder_mode("teacher")
class TeacherDecoding(LatentDenoising):
    count_range = (2, 1000)
    count_label = "N"
    summary = ("the diffusion teacher's ODE from the channel's noise level on an N-step schedule (default 100; "
               "more steps at lower SNR), then the JSCC decoder")
    weights = ModeWeights("teacher", "teacher", "teacher_weights", "latent_teacher.safetensors")

    def sample(self, mode: DecoderMode, network: LatentDenoiser, x: torch.Tensor, profile: torch.Tensor,
               t: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, list[int]]:
        cfg = network.config
        times = karras_times(mode.count or cfg.steps, cfg.t_min, cfg.t_max, cfg.rho)
        estimate = torch.empty_like(x)
        nfe = [0] * x.shape[0]
        for t_value in t.unique().tolist():  # images at the same t share one schedule
            rows = (t == t_value).nonzero().flatten()
            schedule = channel_schedule(t_value, times)
            estimate[rows] = heun_sample(network, x[rows], profile[rows], schedule)
            for row in rows.tolist():
                nfe[row] = heun_nfe(schedule)
        return estimate, nfe
