"""``generative[:steps]`` / ``generative-p[:steps]``: the JSCC decoder, then the conditional
diffusion image decoder of paper 000 sec. II-B (:mod:`shared.models.generative_decoder`) in its
distortion-oriented (eta = 0.1) or perception-oriented (eta = 0.5) setting, ``steps`` DDIM steps
(default the model's: 1 for the shipped weights)."""

from __future__ import annotations

from typing import ClassVar

import torch

from ..models.generative_decoder import GenerativeDecoder
from .base import DecoderMode, DecoderPipeline, ModeWeights, register_decoder_mode

WEIGHTS = ModeWeights("generative", "generative", "generative_weights", "generative_decoder.safetensors")


class GenerativeDecoding(DecoderPipeline):
    stage = "image"
    count_range = (1, 50)
    count_label = "steps"
    weights = WEIGHTS
    timer = "generate"
    setting: ClassVar[str] = "distortion"
    """The generative decoder's setting (:data:`~shared.models.generative_decoder.SETTINGS`)."""

    def refine_image(self, mode: DecoderMode, network: GenerativeDecoder, images: torch.Tensor,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        """Images with sides multiples of the decoder's ``multiple``; the steps spent."""
        steps = mode.count or network.config.default_steps
        device = next(network.parameters()).device
        return network.sample(images.to(device).clamp(0, 1), self.setting, steps, generator), steps


@register_decoder_mode("generative")
class DistortionOrientedDecoding(GenerativeDecoding):
    summary = "the conditional diffusion image decoder after the JSCC decoder, distortion-oriented, 1 step by default"


@register_decoder_mode("generative-p")
class PerceptionOrientedDecoding(GenerativeDecoding):
    summary = "the same, perception-oriented"
    setting = "perception"
