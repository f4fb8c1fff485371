"""New blocks registered from this file alone, each served end to end by the three services
(README "Extending semcom"): a codec that sends a downscaled image as symbols, a channel kind
that rotates the phase, and a decoder mode that median-filters the JSCC decoder's image. No
library file knows them; each fixture registers its block and takes it out again."""

from __future__ import annotations

import cmath
import io
import math
from fractions import Fraction

import grpc
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semcom_cli.client import SendOptions, is_ok
from shared.channel import ChannelKind, ChannelOutput, ChannelSpec, Transmission, complex_normal, noise_variance
from shared.channel import register_channel_kind
from shared.channel.link import receive
from shared.channel.spec import KINDS
from shared.codecs import CODECS, Codec, DecodedImage, EncodedFrame, FrameHeader, register_codec
from shared.codecs.rate_adaptive import RateAdaptiveCodec
from shared.config import load_config
from shared.decoding import PIPELINES, DecoderPipeline, register_decoder_mode
from shared.imageio import load_image_file
from shared.models import RateAdaptiveJSCC
from shared.models.layers import pad_to_multiple
from shared.serving.rpc import status_code
from shared.phy.symbols import power_normalize

from .conftest import Chain
from .codecs.test_rate_adaptive import TINY
from .serving.test_services import image_bytes, send

FACTOR = 4  # the toy codec's downscaling: 3 H W / 16 real values, two per complex symbol: CBR 1/32


class Thumbnail(nn.Module):
    """The toy codec's 'network': average pooling by :data:`FACTOR` and bilinear upsampling."""

    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.tensor(0.5))  # the mean pixel, subtracted before sending

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(images, FACTOR) - self.offset


class ThumbnailCodec(Codec):
    """Sends the image downscaled by :data:`FACTOR`, two centred pixel values per complex symbol."""

    def cbrs(self) -> tuple[Fraction, ...]:
        return (Fraction(1, 2 * FACTOR * FACTOR),)

    def encode(self, image: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> EncodedFrame:
        if not self.serves_cbr(cbr):
            raise ValueError(f"CBR {cbr} is not served by the thumbnail codec (only 1/{2 * FACTOR * FACTOR})")
        with torch.no_grad():
            small = self.model(pad_to_multiple(image, FACTOR)[None])[0]
        symbols, scale = power_normalize(torch.view_as_complex(small.reshape(-1, 2).contiguous())[None])
        return EncodedFrame(symbols[0], float(scale[0]), tuple(small.shape[-2:]), tuple(image.shape[-2:]))

    def check_frame(self, header: FrameHeader):
        h, w = header.grid
        if header.num_symbols != 3 * h * w // 2 or header.image_size[0] > FACTOR * h or header.image_size[1] > FACTOR * w:
            raise ValueError("not a thumbnail frame")
        return 0

    def decode_batch(self, transmissions, specs, headers, mode, decoders, adapters=None, timer=None):
        decoded = []
        for transmission, spec, header in zip(transmissions, specs, headers):
            symbols = receive(transmission, spec).symbols[0] / header.power_scale
            small = torch.view_as_real(symbols).reshape(1, 3, *header.grid) + self.model.offset.detach()
            image = F.interpolate(small, scale_factor=FACTOR, mode="bilinear", align_corners=False)[0].clamp(0, 1)
            decoded.append(DecodedImage(image[:, : header.image_size[0], : header.image_size[1]]))
        return decoded

    def forward(self, images: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> torch.Tensor:
        small = self.model(images) + self.model.offset
        return F.interpolate(small, scale_factor=FACTOR, mode="bilinear", align_corners=False)


ROTATION = math.pi / 3


class PhaseRotation(ChannelKind):
    """``y = exp(j pi/3) x + n``: one known gain, so the base class's SISO receiver, wire
    conversion and CSI handling serve it unchanged."""

    block_fading = False
    threshold_table = "awgn"

    def transmit(self, symbols: torch.Tensor, spec: ChannelSpec, generator) -> Transmission:
        batch, n = symbols.shape
        n0 = noise_variance(spec.snr_db)
        gain = torch.full((batch, 1), cmath.exp(1j * ROTATION), dtype=torch.complex64)
        received = gain * symbols + complex_normal((batch, n), n0, generator, symbols.device)
        return Transmission(ChannelOutput(received, gain, n, n0), None, None, n)


def median3(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> the 3 x 3 median of each pixel (edges replicated)."""
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    windows = padded.unfold(2, 3, 1).unfold(3, 3, 1)  # (B, 3, H, W, 3, 3)
    return windows.flatten(-2).median(dim=-1).values


class MedianFilter(DecoderPipeline):
    """After the JSCC decoder, a 3 x 3 median filter: no network, no weights, no count."""

    stage = "image"
    summary = "a 3x3 median filter after the JSCC decoder"
    timer = "median"

    def refine_image(self, mode, network, images, generator=None):
        return median3(images), 0


@pytest.fixture
def median_mode():
    register_decoder_mode("median")(MedianFilter)
    yield "median"
    del PIPELINES["median"]


@pytest.fixture
def thumbnail_codec():
    register_codec("thumbnail", Thumbnail)(ThumbnailCodec)
    yield ThumbnailCodec(Thumbnail())
    del CODECS["thumbnail"]


@pytest.fixture
def phase_rotation():
    register_channel_kind("phase-rotation")(PhaseRotation)
    yield "phase-rotation"
    del KINDS["phase-rotation"]


@pytest.fixture
def toy_chain(tiny_weights, thumbnail_codec):
    config = load_config(weights=str(tiny_weights), bind_host="127.0.0.1", device="cpu")
    running = Chain(config, codec=thumbnail_codec).start()
    yield running
    running.stop()


def test_a_new_codec_is_served_by_the_three_services(toy_chain):
    image = image_bytes(64, 96)
    results = send(toy_chain.target, [SendOptions(snr_db=20.0, cbr=1 / 32, seed=1).request("thumb", image),
                                      SendOptions(snr_db=20.0, cbr=1 / 24, seed=1).request("rate", image)])
    result = results["thumb"]
    assert is_ok(result), result.status.message
    assert result.num_symbols == 3 * 16 * 24 // 2 and result.achieved_cbr == pytest.approx(1 / 32)
    assert (result.width, result.height) == (96, 64)
    assert result.quality.psnr_db > 20  # a smooth image survives 4x downscaling and 20 dB
    assert status_code(results["rate"]) is grpc.StatusCode.INVALID_ARGUMENT
    assert "thumbnail" in results["rate"].status.message


def test_a_new_channel_kind_is_served_by_the_three_services(chain, phase_rotation):
    image = image_bytes(64, 64)
    results = send(chain.target, [SendOptions(channel=phase_rotation, snr_db=15.0, seed=3).request("rotated", image),
                                  SendOptions(channel="awgn", snr_db=15.0, seed=3).request("awgn", image)])
    assert all(is_ok(r) for r in results.values()), [r.status.message for r in results.values()]
    rotated, awgn = results["rotated"], results["awgn"]
    assert rotated.channel.kind == phase_rotation and rotated.channel_uses == awgn.channel_uses
    # equalized with the known rotation: as good as AWGN at the same SNR
    assert rotated.quality.psnr_db == pytest.approx(awgn.quality.psnr_db, abs=0.5)


def test_a_new_decoder_mode_is_served_by_the_three_services(tiny_weights, median_mode):
    torch.manual_seed(0)
    codec = RateAdaptiveCodec(RateAdaptiveJSCC(TINY).eval())
    config = load_config(weights=str(tiny_weights), bind_host="127.0.0.1", device="cpu", teacher_weights="",
                         consistency_weights="", generative_weights="", finetune_weights="")
    running = Chain(config, codec=codec).start()
    try:
        image = image_bytes(64, 64)
        results = send(running.target, [SendOptions(snr_db=10.0, seed=5, mode=median_mode).request("median", image),
                                        SendOptions(snr_db=10.0, seed=5).request("jscc", image),
                                        SendOptions(snr_db=10.0, seed=5, mode="median:3").request("count", image)])
    finally:
        running.stop()
    filtered, plain = results["median"], results["jscc"]
    assert is_ok(filtered) and is_ok(plain), (filtered.status.message, plain.status.message)
    assert filtered.mode == "median" and filtered.nfe == 1 and "median" in filtered.latency_ms
    # the same channel draw: the mode's image is the median of the JSCC image (exact: the median
    # picks a pixel, so it commutes with the 8-bit quantization of the PNG)
    expected = median3(load_image_file(io.BytesIO(plain.image))[None])[0]
    assert torch.equal(load_image_file(io.BytesIO(filtered.image)), expected)
    assert status_code(results["count"]) is grpc.StatusCode.INVALID_ARGUMENT
