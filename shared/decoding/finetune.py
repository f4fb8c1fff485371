"""``finetune``: the JSCC decoder, then the semantic fine-tuning module of paper 002 sec. III-D
(:mod:`shared.models.semantic_finetune`): a T = 4 step diffusion over a compact prior vector
guides a restoration network that adds detail to the JSCC image (T + 2 network evaluations)."""

from __future__ import annotations

import torch

from ..models.semantic_finetune import SemanticFineTuner
from .base import DecoderMode, DecoderPipeline, ModeWeights, register_decoder_mode


@register_decoder_mode("finetune")
class FineTuneDecoding(DecoderPipeline):
    stage = "image"
    summary = ("the semantic fine-tuning module (a 4-step diffusion over a prior vector guiding a restoration net) "
               "after the JSCC decoder")
    weights = ModeWeights("finetune", "finetune", "finetune_weights", "semantic_finetune.safetensors")
    timer = "finetune"

    def refine_image(self, mode: DecoderMode, network: SemanticFineTuner, images: torch.Tensor,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        """Alg. 2 of paper 002; the evaluations are T of eps_theta, N1 and N2."""
        return network.refine(images, generator), network.network_evaluations
