"""Conditional diffusion image decoder (paper 000 sec. II-B, CDM-JSCC's g_d).

The JSCC decoder's output guides a pixel-space diffusion model that restores detail:

- forward process: DDPM, ``x_n = sqrt(abar_n) x_0 + sqrt(1 - abar_n) eps`` over N training
  steps (cosine schedule), images in [-1, 1];
- network: X-prediction ``X_theta(x_n, c, n / N, setting)`` (eq. 6): the source image is predicted
  directly, so a few steps suffice; the step enters normalized, n / N, so fewer steps can be
  used at test time than in training; the prediction is a residual on the condition
  (``c + UNet(...)``, the UNet's last layer zero at initialization), so an untrained decoder
  returns the JSCC image;
- condition c: the content latent z_hat after the codec's (frozen) synthesis transform, i.e. the
  JSCC reconstruction at full resolution (paper 000 feeds z_hat through hierarchical encoders;
  here the codec's own synthesis network plays that part);
- setting: the loss weight eta of eq. 10, as a learned class embedding: ``distortion``
  (eta = 0.1, CDM-JSCC-D) or ``perception`` (eta = 0.5, CDM-JSCC-P); one network serves both;
- sampling (eq. 7): DDIM steps from pure noise with diffusers' ``DDIMScheduler``
  (``prediction_type="sample"``): deterministic (DDIM eta 0) for the distortion setting,
  ancestral (DDIM eta 1) for the perception setting.

For speed the UNet runs on a space-to-depth view (pixel unshuffle by ``patch``, default 4).

Shapes: images (B, 3, H, W), H and W multiples of ``multiple``; step fraction (B,); setting (B,)
int64 -> (B, 3, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from .stored_config import StoredConfig

SETTINGS = {"distortion": 0, "perception": 1}
SETTING_ETA = {"distortion": 0.1, "perception": 0.5}
"""Loss weight eta (paper 000 eq. 10) each setting is trained with."""
SAMPLING_ETA = {"distortion": 0.0, "perception": 1.0}
"""DDIM's eta (0: deterministic, 1: ancestral) each setting samples with."""


@dataclass(frozen=True)
class GenerativeDecoderConfig(StoredConfig):
    """Architecture and diffusion schedule of :class:`GenerativeDecoder`.

    Attributes:
        widths: UNet stage widths (at 1 / ``patch`` of the resolution), finest first.
        layers_per_block: residual blocks per stage.
        patch: side of the space-to-depth patches the UNet sees (pixel unshuffle).
        train_steps: N of the forward process.
        beta_schedule: diffusers' name of the noise schedule.
        default_steps: sampling steps when a request names none.
    """

    widths: tuple[int, ...] = field(default=(64, 96, 128))
    layers_per_block: int = 1
    patch: int = 4
    train_steps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    default_steps: int = 1


    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (unshuffle and the UNet's downsamplings)."""
        return self.patch * 2 ** (len(self.widths) - 1)


class GenerativeDecoder(nn.Module):
    """X-prediction UNet conditioned on the JSCC reconstruction and the eta setting (module doc)."""

    def __init__(self, config: GenerativeDecoderConfig | None = None):
        super().__init__()
        from diffusers import UNet2DModel

        self.config = config or GenerativeDecoderConfig()
        blocks = len(self.config.widths)
        self.unet = UNet2DModel(
            sample_size=None, in_channels=6 * self.config.patch**2, out_channels=3 * self.config.patch**2,
            block_out_channels=self.config.widths,
            down_block_types=("DownBlock2D",) * blocks, up_block_types=("UpBlock2D",) * blocks,
            layers_per_block=self.config.layers_per_block, norm_num_groups=16, num_class_embeds=len(SETTINGS),
        )
        nn.init.zeros_(self.unet.conv_out.weight)  # starts as the condition itself (the JSCC image)
        nn.init.zeros_(self.unet.conv_out.bias)
        self.unshuffle, self.shuffle = nn.PixelUnshuffle(self.config.patch), nn.PixelShuffle(self.config.patch)

    def scheduler(self):
        """A fresh diffusers DDIM scheduler of this model's forward process (one per decode: the
        scheduler keeps per-call state)."""
        from diffusers import DDIMScheduler

        return DDIMScheduler(num_train_timesteps=self.config.train_steps, beta_schedule=self.config.beta_schedule,
                             prediction_type="sample", clip_sample=True, set_alpha_to_one=True,
                             timestep_spacing="trailing")  # the first step at n = N: sampling starts from pure noise

    def forward(self, noisy: torch.Tensor, condition: torch.Tensor, step_fraction: torch.Tensor,
                setting: torch.Tensor) -> torch.Tensor:
        """x_n and the condition in [-1, 1] (B, 3, H, W), n / N (B,), setting (B,) -> X prediction."""
        net_in = self.unshuffle(torch.cat([noisy, condition], dim=1))
        out = self.unet(net_in, 1000.0 * step_fraction.float(), class_labels=setting.long()).sample
        return (condition + self.shuffle(out)).clamp(-1, 1)

    @torch.inference_mode()
    def sample(self, condition: torch.Tensor, setting: str, steps: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """JSCC reconstructions (B, 3, H, W) in [0, 1] -> decoded images in [0, 1] after ``steps``
        DDIM steps (default ``config.default_steps``) in ``setting`` (module doc)."""
        if setting not in SETTINGS:
            raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
        scheduler = self.scheduler()
        scheduler.set_timesteps(steps or self.config.default_steps)
        c = condition * 2 - 1
        b = c.shape[0]
        x = torch.randn(c.shape, generator=generator, dtype=c.dtype).to(c.device)
        labels = torch.full((b,), SETTINGS[setting], device=c.device)
        estimate = c
        for t in scheduler.timesteps:
            estimate = self(x, c, torch.full((b,), float(t) / self.config.train_steps, device=c.device), labels)
            x = scheduler.step(estimate, t, x, eta=SAMPLING_ETA[setting], generator=generator).prev_sample
        return (estimate + 1) / 2
