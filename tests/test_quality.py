"""Image quality metrics (shared/quality.py)."""

from __future__ import annotations

import pytest
import torch
from pytorch_msssim import ms_ssim as reference_ms_ssim

from shared.quality import psnr, ms_ssim


def noisy(image: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (image + std * torch.randn(image.shape, generator=gen)).clamp(0, 1)


@pytest.fixture
def batch(make_image):
    """Two different (3, 64, 64) images as a (2, 3, 64, 64) batch."""
    return torch.stack([make_image(64, 64, seed=1), make_image(64, 64, seed=2)])


# --- PSNR ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset, expected_db", [(0.1, 20.0), (0.01, 40.0), (0.5, 20 * torch.log10(torch.tensor(2.0)).item())])
def test_psnr_known_values(offset, expected_db):
    reference = torch.full((1, 3, 8, 8), 0.25)
    assert psnr(reference, reference + offset).item() == pytest.approx(expected_db, abs=1e-4)


def test_psnr_per_image_and_symmetric(batch):
    estimate = torch.stack([batch[0] + 0.1, batch[1] + 0.01])
    values = psnr(batch, estimate)
    assert values.shape == (2,)
    torch.testing.assert_close(values, torch.tensor([20.0, 40.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(psnr(estimate, batch), values)


def test_psnr_of_identical_images_is_finite():
    image = torch.rand(1, 3, 4, 4)
    assert psnr(image, image).item() == pytest.approx(100.0)  # MSE floored at 1e-10


# --- MS-SSIM ------------------------------------------------------------------------


@pytest.mark.parametrize("side", [12, 32, 64, 161, 256])
def test_ms_ssim_identical_images_is_one(make_image, side):
    image = make_image(side, side + 7)[None]
    assert ms_ssim(image, image).item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("side", [32, 64, 256])
def test_ms_ssim_decreases_with_noise(make_image, side):
    image = make_image(side, side)[None]
    scores = [ms_ssim(image, noisy(image, std)).item() for std in (0.01, 0.05, 0.2)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_ms_ssim_per_image(batch):
    estimate = torch.stack([batch[0], noisy(batch[1], 0.1)])
    values = ms_ssim(batch, estimate)
    assert values.shape == (2,)
    assert values[0].item() == pytest.approx(1.0, abs=1e-5)
    assert values[1].item() < 0.99


def test_ms_ssim_full_scales_match_pytorch_msssim(make_image):
    image = make_image(200, 240)[None]
    estimate = noisy(image, 0.1)
    expected = reference_ms_ssim(image, estimate, data_range=1.0, size_average=False)
    torch.testing.assert_close(ms_ssim(image, estimate), expected)


@pytest.mark.parametrize("shape", [(11, 11), (11, 200), (300, 8)])
def test_ms_ssim_too_small_raises(shape):
    image = torch.rand(1, 3, *shape)
    with pytest.raises(ValueError, match="MS-SSIM needs images larger than 11 pixels"):
        ms_ssim(image, image)
