"""Kodak PSNR per user over a shared mu_mimo slot (benchmarks/multi_user.py), on a tiny codec."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from benchmarks.multi_user import slot_psnr
from shared.channel import ChannelSpec
from shared.codecs.rate_adaptive import RateAdaptiveCodec
from shared.decoding import JSCC
from shared.models import RateAdaptiveJSCC

from ..codecs.test_rate_adaptive import TINY
from ..conftest import smooth_image


def test_users_sharing_a_noiseless_slot_decode_as_if_alone():
    torch.manual_seed(0)
    codec = RateAdaptiveCodec(RateAdaptiveJSCC(TINY).eval())
    images = [smooth_image(64, 64, seed=0), smooth_image(64, 96, seed=1), smooth_image(96, 64, seed=2)]  # two grids
    shared = ChannelSpec("mu_mimo", 60.0, users=3, rx_antennas=3, multiuser_detector="zf", seed=1)
    frames = [codec.encode(image, shared, Fraction(1, 24)) for image in images]
    together = slot_psnr(codec, frames, images, shared, JSCC, None, seed=1)
    alone = [slot_psnr(codec, [f], [i], ChannelSpec("mu_mimo", 60.0, users=1, rx_antennas=3, seed=1), JSCC, None, 1)[0]
             for f, i in zip(frames, images)]
    assert together == pytest.approx(alone, abs=0.05)
