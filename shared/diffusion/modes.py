"""Decoder modes of the receiver and the latent refinement that serves them.

A request names its mode (API field ``mode``, CLI ``--mode``):

- ``jscc``: the JSCC decoder on the equalized symbols, no diffusion (1 network evaluation);
- ``teacher[:N]``: the diffusion teacher, Heun's ODE from the channel's t_m on the EDM schedule
  of N steps (default the model's, 100); NFE grows as the SNR drops;
- ``consistency[:s]``: the consistency-distilled student, one evaluation at t_m and s - 1
  resampling rounds (paper 003 Alg. 4; default s = 1);
- ``generative[:steps]`` / ``generative-p[:steps]``: the JSCC decoder, then the conditional
  diffusion image decoder of paper 000 sec. II-B (:mod:`shared.models.generative_decoder`) in
  its distortion-oriented (eta = 0.1) or perception-oriented (eta = 0.5) setting, ``steps`` DDIM
  steps (default the model's: 1 for the shipped weights);
- ``finetune``: the JSCC decoder, then the semantic fine-tuning module of paper 002 sec. III-D
  (:mod:`shared.models.semantic_finetune`): a T = 4 step diffusion over a compact prior vector
  guides a restoration network that adds detail to the JSCC image (T + 2 network evaluations).

After a latent mode's refinement the estimate of the sent symbols is unbiased with a calibrated error; it is
handed to the JSCC decoder as the MMSE output of an AWGN channel at the SNR that leaves that
error (:func:`~.channel_state.effective_snr_db`), the form the decoder was trained on.

Shapes: latents (B, 2K, h, w) real (the rate-adaptive codec's zero-filled grid), ``sent`` the
bool mask of sent elements, t (B,).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.generative_decoder import GenerativeDecoder
from ..models.latent_denoiser import LatentDenoiser
from ..models.semantic_finetune import SemanticFineTuner
from .channel_state import as_mmse_observation, effective_snr_db
from .sampling import channel_schedule, consistency_sample, heun_nfe, heun_sample, karras_times

MODE_NAMES = ("jscc", "teacher", "consistency", "generative", "generative-p", "finetune")
COUNT_LIMITS = {"teacher": (2, 1000), "consistency": (1, 8), "generative": (1, 50), "generative-p": (1, 50)}
"""Allowed counts after ':' (teacher: schedule steps N; consistency: rounds s; generative: steps)."""
DECODER_MAX_SNR_DB = 20.0
"""Top of the SNR range the JSCC decoder was trained on; a refined estimate is decoded at no
higher SNR condition than this (or the channel's own SNR, if higher)."""


@dataclass(frozen=True)
class DecoderMode:
    """A parsed decoder mode: ``name`` and its optional count (teacher: schedule steps N;
    consistency: rounds s; generative: steps); ``None`` takes the default."""

    name: str
    count: int | None = None

    def __str__(self) -> str:
        return self.name if self.count is None else f"{self.name}:{self.count}"

    @property
    def diffusion(self) -> bool:
        return self.name != "jscc"

    @property
    def latent(self) -> bool:
        """A mode that denoises the received latent before the JSCC decoder."""
        return self.name in ("teacher", "consistency")

    @property
    def generative(self) -> bool:
        """A mode that refines the JSCC decoder's image with the conditional diffusion decoder."""
        return self.name.startswith("generative")

    @property
    def finetune(self) -> bool:
        """A mode that refines the JSCC decoder's image with the semantic fine-tuning module."""
        return self.name == "finetune"

    @property
    def setting(self) -> str:
        """The generative decoder's setting (:data:`~shared.models.generative_decoder.SETTINGS`)."""
        return "perception" if self.name == "generative-p" else "distortion"


def parse_mode(text: str) -> DecoderMode:
    """'', 'jscc', 'teacher:50', 'consistency:2', 'generative-p:4' ... -> :class:`DecoderMode`;
    ``ValueError`` for an unknown name or a bad count."""
    raw = (text or "jscc").strip().lower()
    name, _, count_text = raw.partition(":")
    if name not in MODE_NAMES:
        raise ValueError(f"unknown decoder mode {text!r}; choose jscc, teacher[:N], consistency[:s], "
                         "generative[:steps], generative-p[:steps] or finetune")
    if not count_text:
        return DecoderMode(name)
    if name not in COUNT_LIMITS:
        raise ValueError(f"decoder mode {name!r} takes no count")
    try:
        count = int(count_text)
    except ValueError:
        raise ValueError(f"decoder mode {text!r}: the count after ':' must be an integer") from None
    low, high = COUNT_LIMITS[name]
    if not low <= count <= high:
        raise ValueError(f"decoder mode {text!r}: count must be in [{low}, {high}]")
    return DecoderMode(name, count)


JSCC = DecoderMode("jscc")


@dataclass
class Refined:
    """Outcome of :meth:`DiffusionDecoders.refine` for a batch.

    Attributes:
        estimate: (B, 2K, h, w) unbiased estimate of the sent symbols (zeros where unsent).
        decoder_snr_db: (B,) SNR condition the JSCC decoder gets.
        nfe: network evaluations spent on each image.
    """

    estimate: torch.Tensor
    decoder_snr_db: torch.Tensor
    nfe: list[int]


class DiffusionDecoders:
    """The diffusion networks of one codec behind the decoder modes: the latent teacher, its
    consistency student, the generative image decoder and the semantic fine-tuning module. Any
    may be ``None`` (weights absent); :meth:`model_for` then refuses its modes."""

    def __init__(self, teacher: LatentDenoiser | None = None, student: LatentDenoiser | None = None,
                 generative: GenerativeDecoder | None = None, finetune: SemanticFineTuner | None = None):
        self.teacher, self.student, self.generative = teacher, student, generative
        self.finetune = finetune

    def model_for(self, mode: DecoderMode) -> LatentDenoiser | GenerativeDecoder | SemanticFineTuner:
        """The network serving ``mode``; ``NotImplementedError`` when its weights are not loaded."""
        role = "generative" if mode.generative else mode.name
        model = {"teacher": self.teacher, "consistency": self.student, "generative": self.generative,
                 "finetune": self.finetune}.get(role)
        if model is None:
            raise NotImplementedError(f"decoder mode {mode} needs {role} weights, which are not loaded")
        return model

    def generate(self, mode: DecoderMode, images: torch.Tensor, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, int]:
        """JSCC reconstructions (B, 3, H, W) in [0, 1] (sides multiples of the decoder's
        ``multiple``) -> the generative decoder's images and the steps it spent."""
        model = self.model_for(mode)
        steps = mode.count or model.config.default_steps
        device = next(model.parameters()).device
        return model.sample(images.to(device).clamp(0, 1), mode.setting, steps, generator), steps

    def fine_tune(self, mode: DecoderMode, images: torch.Tensor, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, int]:
        """JSCC reconstructions (B, 3, H, W) in [0, 1] -> the semantic fine-tuning module's images
        (Alg. 2 of paper 002) and the network evaluations each took (T of eps_theta, N1, N2)."""
        model = self.model_for(mode)
        return model.refine(images, generator), model.network_evaluations

    @torch.inference_mode()
    def refine(self, mode: DecoderMode, values: torch.Tensor, sigma: torch.Tensor, sent: torch.Tensor,
               t: torch.Tensor, snr_db: torch.Tensor, generator: torch.Generator | None = None) -> Refined:
        """Denoise a batch of received latents (module doc). ``values``/``sigma``: the diffusion
        state in the latent layout (unsent elements: 0 and :data:`SIGMA_MAX`); ``snr_db`` (B,)
        the channels' SNRs."""
        model = self.model_for(mode)
        device = next(model.parameters()).device
        x, sigma, t = values.to(device), sigma.to(device), t.to(device, torch.float32)
        profile = sigma / t.view(-1, 1, 1, 1)
        cfg = model.config
        nfe = [0] * x.shape[0]
        if mode.name == "teacher":
            times = karras_times(mode.count or cfg.steps, cfg.t_min, cfg.t_max, cfg.rho)
            estimate = torch.empty_like(x)
            for t_value in t.unique().tolist():  # images at the same t share one schedule
                rows = (t == t_value).nonzero().flatten()
                schedule = channel_schedule(t_value, times)
                estimate[rows] = heun_sample(model, x[rows], profile[rows], schedule)
                for row in rows.tolist():
                    nfe[row] = heun_nfe(schedule)
        else:
            times = karras_times(cfg.steps, cfg.t_min, cfg.t_max, cfg.rho)
            rounds = mode.count or 1
            schedule = channel_schedule(float(t.min()), times)  # resampling stays below every t_m
            estimate, spent = consistency_sample(model, x, profile, t, schedule, rounds, generator)
            nfe = [spent] * x.shape[0]
        sent = sent.to(device)
        return Refined(estimate * sent, decoder_snr_db(model, sigma, sent, snr_db.to(device)), nfe)


def decoder_snr_db(model: LatentDenoiser, sigma: torch.Tensor, sent: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """(B,) SNR condition of the JSCC decoder after ``model``'s refinement of states with noise
    ``sigma`` (sent elements ``sent``) from channels at ``snr_db``: the SNR that leaves its
    calibrated error, at most :data:`DECODER_MAX_SNR_DB` (or the channel's SNR, if higher)."""
    error = model.symbol_error(sigma, sent)
    return torch.minimum(effective_snr_db(error), snr_db.float().clamp_min(DECODER_MAX_SNR_DB))


def decoder_input(refined: Refined) -> tuple[torch.Tensor, torch.Tensor]:
    """What the JSCC decoder gets for a refined batch: (latent (B, 2K, h, w) in the MMSE form of
    :func:`~.channel_state.as_mmse_observation`, SNR condition (B,))."""
    return as_mmse_observation(refined.estimate, refined.decoder_snr_db), refined.decoder_snr_db
