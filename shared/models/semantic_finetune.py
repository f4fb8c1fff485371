"""Semantic fine-tuning module (paper 002 sec. III-D, eq. 8-12, Algorithms 1-2; a DiffIR-style design).

After the JSCC decoder, the receiver adds detail to its lossy image S_hat instead of generating a
whole image: a diffusion model runs in the space of a compact prior vector Z, not of pixels.

- N1, the prior extraction network (:class:`PriorExtractor`): PixelUnshuffle of its input, a
  convolution and residual blocks, global average pooling and an MLP -> Z (B, 4C'). Stage 1 of
  training reads Concat(S_hat, I) (6 channels: it sees the transmitted image); the deployed
  variant reads S_hat alone (3 channels; Alg. 1 line 8, Alg. 2 line 4) and gives D.
- N2, the restoration network (:class:`RestorationNet`): a small U-shaped net of dynamic
  transformer blocks (:class:`DynamicTransformerBlock`: DMTA, channel-wise "transposed"
  multi-head attention, and DGFN, a gated depthwise feed-forward network, each with its input
  modulated by Z), residual on S_hat: ``I_hat = S_hat + N2(S_hat, Z)`` (eq. 8).
- eps_theta, the prior denoiser (:class:`PriorDenoiser`): an MLP on Concat(Z_t, t / T, D).
  T = 4 steps on a linear beta schedule (DiffIR's 0.1 .. 0.99; constants from diffusers'
  ``DDPMScheduler``); the reverse process is eq. 12,
  ``Z_{t-1} = (Z_t - (1 - alpha_t) / sqrt(1 - abar_t) eps_theta(Z_t, t, D)) / sqrt(alpha_t)``,
  run from t = T to 1 (:meth:`SemanticFineTuner.reverse`).

:class:`SemanticFineTuner` holds the deployed parts (N1 on S_hat, eps_theta, N2);
:meth:`SemanticFineTuner.refine` is Alg. 2 (Z_T ~ N(0, I)) and costs T + 2 network evaluations.

Shapes: images (B, 3, H, W) in [0, 1] (any H, W: padded inside to ``multiple``); priors (B, 4C').
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .layers import pad_to_multiple
from .layers import ChannelConditioning, ResidualBlock
from .stored_config import StoredConfig


@dataclass(frozen=True)
class SemanticFineTunerConfig(StoredConfig):
    """Architecture and prior diffusion schedule of :class:`SemanticFineTuner`.

    Attributes:
        prior_channels: C'; the prior vector Z has 4C' entries.
        extractor_width: N1's channels after its PixelUnshuffle.
        extractor_blocks: N1's residual blocks.
        extractor_unshuffle: N1's PixelUnshuffle factor.
        widths: N2's stage widths (at 1 / ``restoration_unshuffle`` of the resolution), finest first.
        blocks_per_stage: dynamic transformer blocks per N2 stage (encoder and decoder side each).
        heads: attention heads of DMTA (each width divisible by it).
        ffn_expansion: DGFN's hidden width / block width.
        restoration_unshuffle: N2 runs on a PixelUnshuffle view of S_hat by this factor (CPU speed).
        denoiser_hidden: eps_theta's hidden width.
        denoiser_layers: eps_theta's hidden layers.
        diffusion_steps: T.
        beta_start, beta_end: the linear beta schedule's ends (beta_1 and beta_T).
    """

    prior_channels: int = 16
    extractor_width: int = 64
    extractor_blocks: int = 2
    extractor_unshuffle: int = 4
    widths: tuple[int, ...] = field(default=(32, 64))
    blocks_per_stage: int = 1
    heads: int = 2
    ffn_expansion: float = 2.0
    restoration_unshuffle: int = 2
    denoiser_hidden: int = 256
    denoiser_layers: int = 3
    diffusion_steps: int = 4
    beta_start: float = 0.1
    beta_end: float = 0.99


    @property
    def prior_dim(self) -> int:
        """4C': entries of the prior vectors Z, D and Z_hat."""
        return 4 * self.prior_channels

    @property
    def multiple(self) -> int:
        """Image sides are padded to multiples of this (the unshuffles and N2's downsamplings)."""
        return math.lcm(self.restoration_unshuffle * 2 ** (len(self.widths) - 1), self.extractor_unshuffle)


class PriorExtractor(nn.Module):
    """N1: images (B, in_channels, H, W) -> prior vector (B, 4C'); H, W multiples of the unshuffle.

    ``in_channels`` 6 (Concat(S_hat, I), stage 1 of training) or 3 (S_hat alone, deployed)."""

    def __init__(self, config: SemanticFineTunerConfig, in_channels: int):
        super().__init__()
        width, r = config.extractor_width, config.extractor_unshuffle
        self.body = nn.Sequential(
            nn.PixelUnshuffle(r), nn.Conv2d(in_channels * r * r, width, 3, padding=1), nn.GELU(),
            *[ResidualBlock(width) for _ in range(config.extractor_blocks)],
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        dim = config.prior_dim
        self.mlp = nn.Sequential(nn.Linear(width, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.body(images))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class DynamicAttention(nn.Module):
    """DMTA: multi-head "transposed" attention across channels (a C/heads x C/heads map per
    head, linear in H*W), its input modulated by the prior.

    Shapes: x (B, C, H, W), prior (B, 4C') -> (B, C, H, W)."""

    def __init__(self, channels: int, prior_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = ChannelLayerNorm(channels)
        self.modulation = ChannelConditioning(channels, prior_dim, prior_dim)
        self.qkv = nn.Sequential(nn.Conv2d(channels, 3 * channels, 1),
                                 nn.Conv2d(3 * channels, 3 * channels, 3, padding=1, groups=3 * channels))
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.project = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.modulation(self.norm(x), prior))
        q, k, v = qkv.reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        attention = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.temperature
        return self.project((attention.softmax(dim=-1) @ v).reshape(b, c, h, w))


class DynamicFeedForward(nn.Module):
    """DGFN: gated depthwise feed-forward network, ``W_o(GELU(a) * b)`` with (a, b) a depthwise 3x3
    of ``W_i x``, its input modulated by the prior. Shapes: x (B, C, H, W), prior (B, 4C') -> (B, C, H, W)."""

    def __init__(self, channels: int, prior_dim: int, expansion: float):
        super().__init__()
        hidden = int(channels * expansion)
        self.norm = ChannelLayerNorm(channels)
        self.modulation = ChannelConditioning(channels, prior_dim, prior_dim)
        self.expand = nn.Sequential(nn.Conv2d(channels, 2 * hidden, 1),
                                    nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden))
        self.project = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        gate, value = self.expand(self.modulation(self.norm(x), prior)).chunk(2, dim=1)
        return self.project(F.gelu(gate) * value)


class DynamicTransformerBlock(nn.Module):
    """``x + DMTA(x, Z)`` then ``+ DGFN(., Z)``: (B, C, H, W), prior (B, 4C') -> (B, C, H, W)."""

    def __init__(self, channels: int, config: SemanticFineTunerConfig):
        super().__init__()
        self.attention = DynamicAttention(channels, config.prior_dim, config.heads)
        self.feed_forward = DynamicFeedForward(channels, config.prior_dim, config.ffn_expansion)

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(x, prior)
        return x + self.feed_forward(x, prior)


class TransformerStage(nn.Module):
    """``blocks_per_stage`` dynamic transformer blocks: (B, C, H, W), prior (B, 4C') -> (B, C, H, W)."""

    def __init__(self, channels: int, config: SemanticFineTunerConfig):
        super().__init__()
        self.blocks = nn.ModuleList(DynamicTransformerBlock(channels, config) for _ in range(config.blocks_per_stage))

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, prior)
        return x


class RestorationNet(nn.Module):
    """N2: S_hat (B, 3, H, W) in [0, 1] and the prior (B, 4C') -> I_hat (B, 3, H, W) (eq. 8), a
    residual on S_hat from a U-net of dynamic transformer stages on a PixelUnshuffle view; the last
    layer starts at zero, so an untrained N2 returns S_hat. H, W multiples of ``config.multiple``."""

    def __init__(self, config: SemanticFineTunerConfig):
        super().__init__()
        r, widths = config.restoration_unshuffle, config.widths
        self.embed = nn.Sequential(nn.PixelUnshuffle(r), nn.Conv2d(3 * r * r, widths[0], 3, padding=1))
        self.encoder = nn.ModuleList(TransformerStage(w, config) for w in widths[:-1])
        self.down = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        self.bottleneck = TransformerStage(widths[-1], config)
        self.up = nn.ModuleList(nn.Sequential(nn.Conv2d(b, 4 * a, 1), nn.PixelShuffle(2))
                                for a, b in zip(widths[:-1], widths[1:]))
        self.merge = nn.ModuleList(nn.Conv2d(2 * w, w, 1) for w in widths[:-1])
        self.decoder = nn.ModuleList(TransformerStage(w, config) for w in widths[:-1])
        self.out = nn.Sequential(nn.Conv2d(widths[0], 3 * r * r, 3, padding=1), nn.PixelShuffle(r))
        nn.init.zeros_(self.out[0].weight)
        nn.init.zeros_(self.out[0].bias)

    def forward(self, decoded: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        x = self.embed(decoded * 2 - 1)
        skips = []
        for stage, down in zip(self.encoder, self.down):
            x = stage(x, prior)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x, prior)
        for stage, up, merge, skip in zip(reversed(self.decoder), reversed(self.up), reversed(self.merge),
                                          reversed(skips)):
            x = stage(merge(torch.cat([up(x), skip], dim=1)), prior)
        return decoded + self.out(x)


class PriorDenoiser(nn.Module):
    """eps_theta: Concat(Z_t (B, 4C'), t / T (B,), D (B, 4C')) -> predicted noise (B, 4C')."""

    def __init__(self, config: SemanticFineTunerConfig):
        super().__init__()
        dims = [2 * config.prior_dim + 1] + [config.denoiser_hidden] * config.denoiser_layers
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.1)]
        self.mlp = nn.Sequential(*layers, nn.Linear(dims[-1], config.prior_dim))

    def forward(self, noisy: torch.Tensor, step_fraction: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([noisy, step_fraction[:, None].to(noisy.dtype), condition], dim=1))


class SemanticFineTuner(nn.Module):
    """The deployed semantic fine-tuning module M2 (module doc): N1 on S_hat (``extractor``),
    eps_theta (``denoiser``) and N2 (``restoration``), with the T-step linear beta schedule."""

    def __init__(self, config: SemanticFineTunerConfig | None = None):
        super().__init__()
        from diffusers import DDPMScheduler

        self.config = config or SemanticFineTunerConfig()
        self.extractor = PriorExtractor(self.config, in_channels=3)
        self.denoiser = PriorDenoiser(self.config)
        self.restoration = RestorationNet(self.config)
        schedule = DDPMScheduler(num_train_timesteps=self.config.diffusion_steps, beta_schedule="linear",
                                 beta_start=self.config.beta_start, beta_end=self.config.beta_end)
        self.register_buffer("alphas", schedule.alphas.float(), persistent=False)  # alpha_t, t = 1..T
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod.float(), persistent=False)  # abar_t

    @property
    def network_evaluations(self) -> int:
        """Evaluations per :meth:`refine`: T of eps_theta, one of N1 and one of N2."""
        return self.config.diffusion_steps + 2

    def diffuse(self, prior: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """q(Z_T | Z_0) (eq. 10): (B, 4C') Z_0 and standard normal noise -> Z_T."""
        abar = self.alphas_cumprod[-1]
        return abar.sqrt() * prior + (1 - abar).sqrt() * noise

    def reverse(self, noisy: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Eq. 12 from t = T to 1: Z_T (B, 4C') and D (B, 4C') -> Z_hat = Z_hat_0 (differentiable)."""
        steps = self.config.diffusion_steps
        z = noisy
        for t in range(steps, 0, -1):
            alpha, abar = self.alphas[t - 1], self.alphas_cumprod[t - 1]
            eps = self.denoiser(z, torch.full((z.shape[0],), t / steps, device=z.device), condition)
            z = (z - (1 - alpha) / (1 - abar).sqrt() * eps) / alpha.sqrt()
        return z

    def forward(self, decoded: torch.Tensor, noisy_prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Alg. 1 lines 7-13: S_hat (B, 3, H, W) in [0, 1] (sides multiples of ``config.multiple``)
        and Z_T (B, 4C') -> (I_hat (B, 3, H, W), Z_hat (B, 4C'))."""
        prior = self.reverse(noisy_prior, self.extractor(decoded))
        return self.restoration(decoded, prior), prior

    @torch.inference_mode()
    def refine(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Alg. 2: decoded images S_hat (B, 3, H, W) in [0, 1], any sides -> I_hat (B, 3, H, W)
        in [0, 1], Z_T ~ N(0, I) drawn from ``generator`` (on the CPU; deterministic when seeded)."""
        if decoded.dim() != 4 or decoded.shape[1] != 3:
            raise ValueError(f"refine expects images (B, 3, H, W), got shape {tuple(decoded.shape)}")
        device = next(self.parameters()).device
        height, width = decoded.shape[-2:]
        padded = pad_to_multiple(decoded.to(device).float().clamp(0, 1), self.config.multiple)
        noise = torch.randn((decoded.shape[0], self.config.prior_dim), generator=generator).to(device)
        restored, _ = self(padded, noise)
        return restored[..., :height, :width].clamp(0, 1)
