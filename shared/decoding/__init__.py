"""Decoder modes: one pipeline module each, on :class:`~.base.DecoderPipeline`, registered by
name. Importing the package registers the shipped modes, in the order the help lists them."""

from . import jscc, teacher, consistency, generative, finetune  # noqa: F401  # isort: skip  (registration order)
from .base import (DECODER_MAX_SNR_DB, JSCC, PIPELINES, DecoderMode, DecoderPipeline, DiffusionDecoders,
                   LatentDenoising, ModeWeights, Refined, decoder_input, decoder_snr_db, mode_forms, mode_help,
                   mode_weights, parse_mode, register_decoder_mode)

__all__ = ["DECODER_MAX_SNR_DB", "JSCC", "PIPELINES", "DecoderMode", "DecoderPipeline", "DiffusionDecoders",
           "LatentDenoising", "ModeWeights", "Refined", "decoder_input", "decoder_snr_db", "mode_forms", "mode_help",
           "mode_weights", "parse_mode", "register_decoder_mode"]
