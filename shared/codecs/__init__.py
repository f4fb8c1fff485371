"""Codecs: one class per codec on the :class:`~.base.Codec` interface, registered by name."""

from .base import (CODECS, Codec, DecodedImage, EncodedFrame, FrameHeader, FrameLost, codec_for, codec_names,
                   register_codec)
from .fixed_rate import FixedRateCodec
from .rate_adaptive import RateAdaptiveCodec, SideInformationLost

__all__ = ["CODECS", "Codec", "DecodedImage", "EncodedFrame", "FixedRateCodec", "FrameHeader", "FrameLost",
           "RateAdaptiveCodec", "SideInformationLost", "codec_for", "codec_names", "register_codec"]
