"""Image decoding with validation and PNG encoding (shared/imageio.py)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from shared.imageio import decode_image, encode_png, load_image_file

MAX_PIXELS = 1_000_000


def to_pil(image: torch.Tensor) -> Image.Image:
    array = image.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array)


def quantize(image: torch.Tensor) -> torch.Tensor:
    return image.mul(255).round().div(255)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def with_png_size(png: bytes, width: int, height: int) -> bytes:
    """``png`` with its IHDR rewritten to claim ``width`` x ``height`` (CRC fixed, data unchanged)."""
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    return png[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + png[33:]


# --- accepted inputs ----------------------------------------------------------------


@pytest.mark.parametrize("fmt, options", [("PNG", {}), ("WEBP", {"lossless": True})])
def test_lossless_round_trip_is_exact(make_image, fmt, options):
    image = quantize(make_image(37, 50))
    decoded = decode_image(encoded(to_pil(image), fmt, **options), MAX_PIXELS)
    assert decoded.dtype == torch.float32 and decoded.shape == (3, 37, 50)
    torch.testing.assert_close(decoded, image, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fmt, options", [("JPEG", {"quality": 95}), ("WEBP", {"quality": 90})])
def test_lossy_round_trip_is_close(make_image, fmt, options):
    image = make_image(48, 64)
    decoded = decode_image(encoded(to_pil(image), fmt, **options), MAX_PIXELS)
    assert decoded.shape == (3, 48, 64)
    assert 0 <= decoded.min() and decoded.max() <= 1
    assert (decoded - image).abs().mean().item() < 0.02


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_other_pixel_modes_become_rgb(make_image, mode):
    pil = to_pil(make_image(20, 30)).convert(mode)
    decoded = decode_image(encoded(pil, "PNG"), MAX_PIXELS)
    assert decoded.shape == (3, 20, 30)
    expected = torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(decoded, expected, rtol=0, atol=1e-6)


def test_16bit_grayscale_is_scaled_over_its_full_range():
    levels = np.linspace(0, 65535, 24 * 32).reshape(24, 32).astype(np.uint16)
    decoded = decode_image(encoded(Image.fromarray(levels), "PNG"), MAX_PIXELS)
    expected = torch.from_numpy(levels.astype(np.float32) / 65535).expand(3, -1, -1)
    torch.testing.assert_close(decoded, expected, rtol=0, atol=1e-6)


def test_min_side_is_inclusive():
    assert decode_image(encoded(Image.new("RGB", (16, 16)), "PNG"), MAX_PIXELS).shape == (3, 16, 16)


def test_max_pixels_is_inclusive():
    assert decode_image(encoded(Image.new("RGB", (40, 25)), "PNG"), max_pixels=1000).shape == (3, 25, 40)


# --- rejected inputs ----------------------------------------------------------------


def test_decompression_cost_is_bounded_by_the_input_size():
    bomb = encoded(Image.new("1", (3000, 3000)), "PNG")  # about 1.2 kB for 9 MP
    with pytest.raises(ValueError, match="pixels per byte"):
        decode_image(bomb, MAX_PIXELS * 1000, max_pixels_per_byte=1000)
    photo = encoded(to_pil(quantize(torch.rand(3, 64, 64))), "PNG")
    assert decode_image(photo, MAX_PIXELS, max_pixels_per_byte=1000).shape == (3, 64, 64)


def test_empty_bytes_rejected():
    with pytest.raises(ValueError, match="image bytes are empty"):
        decode_image(b"", MAX_PIXELS)


@pytest.mark.parametrize("data", [b"not an image at all", bytes(range(256)) * 4, b"\x89PNG\r\n\x1a\n"])
def test_garbage_bytes_rejected(data):
    with pytest.raises(ValueError, match="cannot decode image"):
        decode_image(data, MAX_PIXELS)


def test_truncated_image_data_rejected(make_image):
    png = encoded(to_pil(make_image(64, 64)), "PNG")
    with pytest.raises(ValueError, match="cannot decode image"):
        decode_image(png[: len(png) // 2], MAX_PIXELS)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_unsupported_format_rejected(fmt):
    data = encoded(Image.new("RGB", (32, 32), (10, 200, 30)), fmt)
    with pytest.raises(ValueError, match=f"unsupported image format {fmt}; send PNG, JPEG or WebP"):
        decode_image(data, MAX_PIXELS)


@pytest.mark.parametrize("size", [(15, 40), (40, 15), (1, 1)])
def test_too_small_image_rejected(size):
    width, height = size
    with pytest.raises(ValueError, match=f"image is {width}x{height}; both sides must be at least 16 pixels"):
        decode_image(encoded(Image.new("RGB", size), "PNG"), MAX_PIXELS)


def test_large_compressible_png_rejected_from_header_without_decoding(monkeypatch):
    bomb = encoded(Image.new("L", (4000, 4000), 128), "PNG")  # 16 Mpx in about 25 kB
    assert len(bomb) < 100_000

    def no_decoding(self):
        raise AssertionError("pixel data was decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ValueError, match="4000x4000 = 16000000 pixels, over the limit of 10000"):
        decode_image(bomb, max_pixels=10_000)


def test_header_size_checked_before_pixel_data():
    # The header claims 8000x6000 but the data holds 16x16 pixels: only a header check
    # (not a decode attempt) yields the size message.
    forged = with_png_size(encoded(Image.new("RGB", (16, 16)), "PNG"), 8000, 6000)
    with pytest.raises(ValueError, match="8000x6000 = 48000000 pixels, over the limit of 1000000"):
        decode_image(forged, MAX_PIXELS)


def test_header_beyond_pillow_bomb_limit_rejected_even_with_generous_max_pixels():
    forged = with_png_size(encoded(Image.new("RGB", (16, 16)), "PNG"), 20_000, 20_000)
    with pytest.raises(ValueError, match="cannot decode image: .*exceeds limit"):
        decode_image(forged, max_pixels=10**9)


# --- encoding -----------------------------------------------------------------------


def test_encode_png_round_trip_equals_8bit_quantized_input(make_image):
    image = make_image(37, 50)
    png = encode_png(image)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    decoded = decode_image(png, MAX_PIXELS)
    torch.testing.assert_close(decoded, quantize(image), rtol=0, atol=1e-6)


def test_encode_png_clamps_out_of_range_values():
    image = torch.tensor([-0.5, 0.5, 1.7]).view(3, 1, 1).expand(3, 16, 16)
    decoded = decode_image(encode_png(image), MAX_PIXELS)
    torch.testing.assert_close(decoded[:, 0, 0], torch.tensor([0.0, 128 / 255, 1.0]))


def test_load_image_file_reads_any_size(tmp_path, make_image):
    image = quantize(make_image(8, 12))  # below decode_image's min_side: trusted local files are not limited
    path = tmp_path / "small.png"
    to_pil(image).save(path)
    torch.testing.assert_close(load_image_file(path), image, rtol=0, atol=1e-6)
