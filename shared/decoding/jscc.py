"""``jscc``: the codec's JSCC decoder on the equalized symbols alone (1 network evaluation)."""

from __future__ import annotations

from .base import DecoderPipeline, register_decoder_mode


@register_decoder_mode("jscc")
class JSCCDecoding(DecoderPipeline):
    summary = "the JSCC decoder alone"
