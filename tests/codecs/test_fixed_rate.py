"""Codec stage functions (shared/codecs/fixed_rate.py) and the DeepJSCC model and weights I/O
(shared/models/), on a tiny untrained model."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from shared.channel.link import transmit
from shared.channel import ChannelSpec, apply_channel, complex_normal, make_generator
from shared.codecs.fixed_rate import EncodedImage, decode_symbols, encode_image, equalize_and_decode
from shared.models.layers import pad_to_multiple
from shared.phy.symbols import achieved_cbr, parse_cbr
from shared.models import DeepJSCC, DeepJSCCConfig, latent_to_symbols, symbols_to_latent
from shared.models.io import load_model, read_metadata, save_model

TINY = DeepJSCCConfig(widths=(8, 8, 8, 8))
CBR_HIGH = Fraction(1, 24)  # k = 32
CBR_LOW = Fraction(1, 48)  # k = 16


@pytest.fixture(scope="module")
def model() -> DeepJSCC:
    torch.manual_seed(0)
    return DeepJSCC(TINY).eval()


# --- CBR ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [("1/24", Fraction(1, 24)), (" 1/48 ", Fraction(1, 48)), ("0.0416666", Fraction(1, 24)), (1 / 24, Fraction(1, 24)), ("1", Fraction(1))],
)
def test_parse_cbr_accepts(text, expected):
    assert parse_cbr(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "-1/24", "1.5", "abc", "", "1/0", "nan", "inf", float("nan"), float("inf")])
def test_parse_cbr_rejects(text):
    with pytest.raises(ValueError, match="CBR"):
        parse_cbr(text)


def test_achieved_cbr_counts_original_pixels():
    assert achieved_cbr(384, (37, 50)) == pytest.approx(384 / (3 * 37 * 50))


# --- config -------------------------------------------------------------------------


def test_symbols_per_token_for_served_rates():
    assert TINY.symbols_per_token(CBR_HIGH) == 32
    assert TINY.symbols_per_token(CBR_LOW) == 16
    assert TINY.symbols_per_token(1 / 24) == 32  # floats close to a served rate are accepted
    assert TINY.cbr_of(32) == CBR_HIGH and TINY.cbr_of(16) == CBR_LOW


@pytest.mark.parametrize("cbr", [Fraction(1, 10), Fraction(1, 96), 0.04])
def test_symbols_per_token_rejects_unserved_rate(cbr):
    with pytest.raises(ValueError, match="not served by this model; choose one of 1/48, 1/24"):
        TINY.symbols_per_token(cbr)


def test_config_dict_round_trip():
    config = DeepJSCCConfig(widths=(8, 12, 16, 16), max_symbols_per_token=16, trained_symbols_per_token=(8, 16))
    data = config.to_dict()
    assert data["widths"] == (8, 12, 16, 16) and data["downscale"] == 16
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}  # what JSON gives back
    assert DeepJSCCConfig.from_dict(as_json) == config


# --- symbol mapping -----------------------------------------------------------------


@pytest.mark.parametrize("k", [16, 32])
def test_latent_symbols_round_trip_zero_fills_beyond_k(k):
    gen = make_generator(0)
    latent = torch.randn(2, 64, 3, 4, generator=gen)
    symbols = latent_to_symbols(latent, k)
    assert symbols.shape == (2, 3 * 4 * k) and symbols.dtype == torch.complex64
    restored = symbols_to_latent(symbols, k, 32, (3, 4))
    assert restored.shape == latent.shape
    assert torch.equal(restored[:, : 2 * k], latent[:, : 2 * k])
    assert torch.count_nonzero(restored[:, 2 * k :]) == 0


def test_latent_to_symbols_is_token_major():
    latent = torch.randn(1, 64, 3, 4, generator=make_generator(1))
    k = 16
    symbols = latent_to_symbols(latent, k)[0]
    for i, j, s in [(0, 0, 0), (0, 1, 0), (1, 0, 5), (2, 3, 15)]:
        expected = torch.complex(latent[0, 2 * s, i, j], latent[0, 2 * s + 1, i, j])
        assert symbols[(i * 4 + j) * k + s] == expected


# --- padding ------------------------------------------------------------------------


def test_pad_to_multiple_replicates_edges(make_image):
    image = make_image(37, 50)
    padded = pad_to_multiple(image, 16)
    assert padded.shape == (3, 48, 64)
    assert torch.equal(padded[:, :37, :50], image)
    assert torch.equal(padded[:, 40, :50], image[:, 36, :])
    assert torch.equal(padded[:, :37, 63], image[:, :, 49])
    assert pad_to_multiple(padded, 16) is padded
    assert pad_to_multiple(image[None], 16).shape == (1, 3, 48, 64)


# --- encoding and decoding ----------------------------------------------------------


@pytest.mark.parametrize(
    "size, cbr, grid, k",
    [((37, 50), CBR_HIGH, (3, 4), 32), ((48, 64), CBR_LOW, (3, 4), 16), ((16, 16), CBR_HIGH, (1, 1), 32), ((17, 33), CBR_LOW, (2, 3), 16)],
)
def test_encode_image_symbols(model, make_image, size, cbr, grid, k):
    encoded = encode_image(model, make_image(*size), snr_db=10.0, cbr=cbr)
    assert isinstance(encoded, EncodedImage)
    assert encoded.grid == grid and encoded.symbols_per_token == k and encoded.image_size == size
    assert encoded.symbols.shape == (grid[0] * grid[1] * k,) and encoded.symbols.dtype == torch.complex64
    assert (encoded.symbols.abs() ** 2).mean().item() == pytest.approx(1.0, abs=1e-5)
    assert encoded.power_scale > 0 and math.isfinite(encoded.power_scale)
    assert encoded.cbr == achieved_cbr(encoded.symbols.numel(), size)
    if size[0] % 16 == 0 and size[1] % 16 == 0:  # no padding: the achieved CBR is the requested one
        assert encoded.cbr == pytest.approx(float(cbr))
    else:  # the padding is paid by the sender
        assert encoded.cbr > float(cbr)


def test_encode_image_rejects_unserved_cbr(model, make_image):
    with pytest.raises(ValueError, match="not served"):
        encode_image(model, make_image(32, 32), snr_db=10.0, cbr=Fraction(1, 10))


def test_encode_image_is_deterministic_and_snr_conditioned(model, make_image):
    image = make_image(48, 64)
    a = encode_image(model, image, 10.0, CBR_HIGH).symbols
    assert torch.equal(a, encode_image(model, image, 10.0, CBR_HIGH).symbols)
    with torch.no_grad():  # the untrained conditioning is the identity: give it an effect
        for cond in model.encoder.conditioning:
            cond.mlp[-1].weight.normal_(0, 0.5, generator=make_generator(2))
    try:
        b = encode_image(model, image, 10.0, CBR_HIGH).symbols
        c = encode_image(model, image, 0.0, CBR_HIGH).symbols
        assert not torch.allclose(b, c)
    finally:
        with torch.no_grad():
            for cond in model.encoder.conditioning:
                cond.mlp[-1].weight.zero_()


@pytest.mark.parametrize("kind,csi", [("awgn", "perfect"), ("rayleigh", "perfect"), ("rician", "perfect"),
                                      ("rayleigh", "lmmse"), ("mimo", "perfect"), ("tdl", "perfect")])
def test_equalize_and_decode_restores_image_size(model, make_image, kind, csi):
    image = make_image(37, 50)
    encoded = encode_image(model, image, snr_db=5.0, cbr=CBR_HIGH)
    spec = ChannelSpec(kind=kind, snr_db=5.0, k_factor=2.0, coherence_symbols=16, csi=csi, seed=3)
    transmission = transmit(encoded.symbols[None], spec, make_generator(3))
    decoded = equalize_and_decode(model, transmission, spec, encoded.symbols_per_token, encoded.grid, encoded.image_size)
    assert decoded.shape == (3, 37, 50) and decoded.dtype == torch.float32
    assert decoded.min() >= 0 and decoded.max() <= 1


def test_decode_symbols_batch(model):
    symbols = complex_normal((2, 3 * 4 * 16), 1.0, make_generator(4))
    images = decode_symbols(model, symbols, torch.tensor([0.0, 20.0]), 16, (3, 4), (40, 60))
    assert images.shape == (2, 3, 40, 60)
    assert images.min() >= 0 and images.max() <= 1


# --- weights I/O --------------------------------------------------------------------


def test_save_load_round_trip(tmp_path, make_image):
    torch.manual_seed(5)
    original = DeepJSCC(DeepJSCCConfig(widths=(8, 8, 12, 12), trained_symbols_per_token=(16,))).eval()
    path = tmp_path / "nested" / "tiny.safetensors"
    save_model(original, path, provenance={"steps": 3, "dataset": "synthetic"})

    loaded = load_model(path)
    assert loaded.config == original.config
    assert not loaded.training
    metadata = read_metadata(path)
    assert metadata["architecture"] == "deepjscc"
    assert metadata["provenance"] == {"steps": 3, "dataset": "synthetic"}

    image = make_image(37, 50)
    enc_a = encode_image(original, image, 10.0, CBR_LOW)
    enc_b = encode_image(loaded, image, 10.0, CBR_LOW)
    assert torch.equal(enc_a.symbols, enc_b.symbols)
    received = enc_a.symbols[None]
    snr = torch.tensor([10.0])
    assert torch.equal(
        decode_symbols(original, received, snr, 16, enc_a.grid, enc_a.image_size),
        decode_symbols(loaded, received, snr, 16, enc_a.grid, enc_a.image_size),
    )


def test_load_missing_weights_names_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m training\.train_baseline"):
        load_model(tmp_path / "absent.safetensors")
