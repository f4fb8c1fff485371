"""Decoder modes as pipelines (like diffusers' pipelines: the loop, apart from the networks in
:mod:`shared.models` and the schedules in :mod:`shared.diffusion.sampling`), and their registry.

A request names its mode (API field ``mode``, CLI ``--mode``) as ``name`` or ``name:count``. Each
mode is one module of this package: a :class:`DecoderPipeline` subclass registered with
``@register_decoder_mode("name")`` where it is defined, which declares its allowed counts, the
stage it runs in (``latent``: on the received latent before the codec's decoder; ``image``: on
the decoder's image; ``None``: the decoder alone), the weights it needs (:class:`ModeWeights`:
the config field ``SEMCOM_<FIELD>``, the shipped file) and the loop. The registry generates
mode parsing (:func:`parse_mode`), the CLI's help (:func:`mode_help`), the config's weight
fields and the receiver's loading of the networks (:func:`mode_weights`).

After a latent mode's refinement the estimate of the sent symbols is unbiased with a calibrated
error; it is handed to the JSCC decoder as the MMSE output of an AWGN channel at the SNR that
leaves that error (:func:`~shared.diffusion.channel_state.effective_snr_db`), the form the
decoder was trained on.

Shapes: latents (B, 2K, h, w) real (the rate-adaptive codec's zero-filled grid), ``sent`` the
bool mask of sent elements, t (B,); images (B, 3, H, W) in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..diffusion.channel_state import as_mmse_observation, effective_snr_db
from ..registry import registrar

DECODER_MAX_SNR_DB = 20.0
"""Top of the SNR range the JSCC decoder was trained on; a refined estimate is decoded at no
higher SNR condition than this (or the channel's own SNR, if higher)."""


@dataclass(frozen=True)
class ModeWeights:
    """The network a decoder mode needs.

    Attributes:
        network: its name among the receiver's loaded networks (modes may share one).
        role: what error messages call it ("decoder mode X needs <role> weights").
        config_field: the :class:`~shared.config.SemcomConfig` field of its path (env
            ``SEMCOM_<FIELD>``; "" there: the mode is not served).
        default_file: the shipped file, under ``weights/``.

    A network whose config has ``latent_channels`` is served only with a codec of that latent size.
    """

    network: str
    role: str
    config_field: str
    default_file: str


@dataclass(frozen=True)
class DecoderMode:
    """A parsed decoder mode: ``name`` and its optional count (:attr:`DecoderPipeline.count_range`);
    ``None`` takes the pipeline's default."""

    name: str
    count: int | None = None

    def __str__(self) -> str:
        return self.name if self.count is None else f"{self.name}:{self.count}"

    @property
    def pipeline(self) -> "DecoderPipeline":
        return PIPELINES[self.name]

    @property
    def stage(self) -> str | None:
        return self.pipeline.stage

    @property
    def diffusion(self) -> bool:
        """A mode that runs a network besides the codec's decoder (needs its weights)."""
        return self.stage is not None

    @property
    def latent(self) -> bool:
        """A mode that denoises the received latent before the JSCC decoder."""
        return self.stage == "latent"


@dataclass
class Refined:
    """Outcome of a latent-stage pipeline for a batch.

    Attributes:
        estimate: (B, 2K, h, w) unbiased estimate of the sent symbols (zeros where unsent).
        decoder_snr_db: (B,) SNR condition the JSCC decoder gets.
        nfe: network evaluations spent on each image.
    """

    estimate: torch.Tensor
    decoder_snr_db: torch.Tensor
    nfe: list[int]


class DecoderPipeline:
    """One decoder mode's loop. Subclasses set the class attributes and implement
    :meth:`refine_latent` (stage ``latent``) or :meth:`refine_image` (stage ``image``)."""

    name: ClassVar[str] = ""
    stage: ClassVar[str | None] = None
    count_range: ClassVar[tuple[int, int] | None] = None
    """Allowed counts after ':' (inclusive), or ``None``: the mode takes no count."""
    count_label: ClassVar[str] = ""
    """What the count is called in the help (``N``, ``s``, ``steps``)."""
    summary: ClassVar[str] = ""
    """One sentence for the CLI's ``--mode`` help."""
    weights: ClassVar[ModeWeights | None] = None
    timer: ClassVar[str] = ""
    """The latency stage (``latency_ms`` key) its work is timed as."""

    @classmethod
    def form(cls) -> str:
        """How a request writes it: ``name`` or ``name[:label]``."""
        return f"{cls.name}[:{cls.count_label}]" if cls.count_range else cls.name

    def refine_latent(self, mode: DecoderMode, network: nn.Module, values: torch.Tensor, sigma: torch.Tensor,
                      sent: torch.Tensor, t: torch.Tensor, snr_db: torch.Tensor,
                      generator: torch.Generator | None = None) -> Refined:
        """Denoise a batch of received latents: ``values``/``sigma`` the diffusion state in the latent
        layout (unsent elements: 0 and ``SIGMA_MAX``), ``t`` (B,) its times, ``snr_db`` (B,) the
        channels' SNRs."""
        raise NotImplementedError

    def refine_image(self, mode: DecoderMode, network: nn.Module | None, images: torch.Tensor,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        """The JSCC decoder's (B, 3, H, W) images in [0, 1] -> refined images and the network
        evaluations each took."""
        raise NotImplementedError


class LatentDenoising(DecoderPipeline):
    """A latent-stage pipeline around a :class:`~shared.models.latent_denoiser.LatentDenoiser`: the
    subclass's :meth:`sample` runs the sampler on the state moved to the network's device; the
    estimate is masked to the sent elements and the JSCC decoder's SNR condition follows from
    the network's calibrated error (:func:`decoder_snr_db`)."""

    stage = "latent"
    timer = "denoise"

    def sample(self, mode: DecoderMode, network, x: torch.Tensor, profile: torch.Tensor, t: torch.Tensor,
               generator: torch.Generator | None) -> tuple[torch.Tensor, list[int]]:
        """(B, 2K, h, w) noisy latent ``x`` with noise profile ``sigma / t`` and times ``t`` (B,) ->
        the estimate and the network evaluations per image."""
        raise NotImplementedError

    def refine_latent(self, mode: DecoderMode, network, values: torch.Tensor, sigma: torch.Tensor,
                      sent: torch.Tensor, t: torch.Tensor, snr_db: torch.Tensor,
                      generator: torch.Generator | None = None) -> Refined:
        device = next(network.parameters()).device
        x, sigma, t = values.to(device), sigma.to(device), t.to(device, torch.float32)
        estimate, nfe = self.sample(mode, network, x, sigma / t.view(-1, 1, 1, 1), t, generator)
        sent = sent.to(device)
        return Refined(estimate * sent, decoder_snr_db(network, sigma, sent, snr_db.to(device)), nfe)


PIPELINES: dict[str, DecoderPipeline] = {}
"""Mode name -> its pipeline, filled by :func:`register_decoder_mode`."""


def register_decoder_mode(name: str):
    """Class decorator: register a :class:`DecoderPipeline` subclass (one instance) as mode ``name``."""
    return registrar(PIPELINES, name, "decoder mode", lambda cls: cls())


def mode_forms() -> tuple[str, ...]:
    """Every registered mode as a request writes it (``jscc``, ``teacher[:N]``, ...)."""
    return tuple(pipeline.form() for pipeline in PIPELINES.values())


def mode_help() -> str:
    """The CLI's ``--mode`` help: each mode's form and summary."""
    return "; ".join(f"{p.form()}: {p.summary}" for p in PIPELINES.values()) + ". Default jscc"


def mode_weights() -> dict[str, ModeWeights]:
    """The networks the registered modes need, once each, by network name."""
    weights: dict[str, ModeWeights] = {}
    for pipeline in PIPELINES.values():
        if pipeline.weights is not None:
            weights.setdefault(pipeline.weights.network, pipeline.weights)
    return weights


def parse_mode(text: str) -> DecoderMode:
    """'', 'jscc', 'teacher:50', 'consistency:2', 'generative-p:4' ... -> :class:`DecoderMode`;
    ``ValueError`` for an unknown name or a bad count."""
    raw = (text or "jscc").strip().lower()
    name, _, count_text = raw.partition(":")
    if name not in PIPELINES:
        forms = mode_forms()
        raise ValueError(f"unknown decoder mode {text!r}; choose {', '.join(forms[:-1])} or {forms[-1]}")
    if not count_text:
        return DecoderMode(name)
    limits = PIPELINES[name].count_range
    if limits is None:
        raise ValueError(f"decoder mode {name!r} takes no count")
    try:
        count = int(count_text)
    except ValueError:
        raise ValueError(f"decoder mode {text!r}: the count after ':' must be an integer") from None
    low, high = limits
    if not low <= count <= high:
        raise ValueError(f"decoder mode {text!r}: count must be in [{low}, {high}]")
    return DecoderMode(name, count)


JSCC = DecoderMode("jscc")


class DiffusionDecoders:
    """The networks behind the decoder modes, by :attr:`ModeWeights.network` name (``teacher``,
    ``student``, ``generative``, ``finetune``, ...). Any may be absent or ``None`` (weights not
    loaded): :meth:`model_for` then refuses its modes."""

    def __init__(self, **networks: nn.Module | None):
        self.networks = {name: network for name, network in networks.items() if network is not None}

    def model_for(self, mode: DecoderMode) -> nn.Module | None:
        """The network serving ``mode`` (``None`` for a mode that needs none);
        ``NotImplementedError`` when its weights are not loaded."""
        weights = mode.pipeline.weights
        if weights is None:
            return None
        network = self.networks.get(weights.network)
        if network is None:
            raise NotImplementedError(f"decoder mode {mode} needs {weights.role} weights, which are not loaded")
        return network

    @torch.inference_mode()
    def refine(self, mode: DecoderMode, values: torch.Tensor, sigma: torch.Tensor, sent: torch.Tensor,
               t: torch.Tensor, snr_db: torch.Tensor, generator: torch.Generator | None = None) -> Refined:
        """Run latent-stage ``mode`` (:meth:`DecoderPipeline.refine_latent`) on its network."""
        return mode.pipeline.refine_latent(mode, self.model_for(mode), values, sigma, sent, t, snr_db, generator)

    def refine_image(self, mode: DecoderMode, images: torch.Tensor, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, int]:
        """Run image-stage ``mode`` (:meth:`DecoderPipeline.refine_image`) on its network."""
        return mode.pipeline.refine_image(mode, self.model_for(mode), images, generator)


def decoder_snr_db(model, sigma: torch.Tensor, sent: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """(B,) SNR condition of the JSCC decoder after ``model``'s refinement (a
    :class:`~shared.models.latent_denoiser.LatentDenoiser`) of states with noise ``sigma`` (sent
    elements ``sent``) from channels at ``snr_db``: the SNR that leaves its calibrated error, at
    most :data:`DECODER_MAX_SNR_DB` (or the channel's SNR, if higher)."""
    error = model.symbol_error(sigma, sent)
    return torch.minimum(effective_snr_db(error), snr_db.float().clamp_min(DECODER_MAX_SNR_DB))


def decoder_input(refined: Refined) -> tuple[torch.Tensor, torch.Tensor]:
    """What the JSCC decoder gets for a refined batch: (latent (B, 2K, h, w) in the MMSE form of
    :func:`~shared.diffusion.channel_state.as_mmse_observation`, SNR condition (B,))."""
    return as_mmse_observation(refined.estimate, refined.decoder_snr_db), refined.decoder_snr_db
