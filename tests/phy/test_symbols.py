"""Transmitter symbol stages (shared/phy/symbols.py): power normalization and wire packing."""

from __future__ import annotations

import struct

import pytest
import torch

from shared.channel import complex_normal, make_generator
from shared.phy.symbols import pack_complex, power_normalize, unpack_complex


def row_energy(x: torch.Tensor) -> torch.Tensor:
    return (x.real**2 + x.imag**2).mean(dim=1)


def test_power_normalize_gives_unit_mean_energy_per_row():
    raw = complex_normal((4, 300), 1.0, make_generator(0)) * torch.tensor([[0.01], [1.0], [7.0], [1e3]])
    normalized, scale = power_normalize(raw)
    assert normalized.shape == raw.shape and normalized.dtype == torch.complex64
    torch.testing.assert_close(row_energy(normalized), torch.ones(4))
    assert scale.shape == (4,)
    torch.testing.assert_close(scale, row_energy(raw).rsqrt())
    torch.testing.assert_close(normalized, scale[:, None] * raw)


def test_power_normalize_known_scale():
    raw = torch.full((1, 8), 2.0 + 0j)  # energy 4 per symbol
    normalized, scale = power_normalize(raw)
    assert scale.item() == pytest.approx(0.5)
    torch.testing.assert_close(normalized, torch.full((1, 8), 1.0 + 0j))


def test_power_normalize_zero_row_stays_finite():
    normalized, scale = power_normalize(torch.zeros(1, 16, dtype=torch.complex64))
    assert torch.isfinite(scale).all()
    assert torch.equal(normalized, torch.zeros(1, 16, dtype=torch.complex64))


def test_pack_unpack_round_trip():
    symbols = complex_normal((257,), 1.0, make_generator(1))
    data = pack_complex(symbols)
    assert isinstance(data, bytes) and len(data) == 8 * 257
    restored = unpack_complex(data, 257)
    assert restored.dtype == torch.complex64
    assert torch.equal(restored, symbols)


def test_pack_layout_is_little_endian_interleaved_float32():
    data = pack_complex(torch.tensor([1.5 - 2.0j, -0.25 + 0j]))
    assert struct.unpack("<4f", data) == (1.5, -2.0, -0.25, 0.0)


def test_pack_accepts_complex128_and_autograd_tensors():
    symbols = torch.tensor([0.1 + 0.2j, 3.0 - 4.0j], dtype=torch.complex128, requires_grad=True)
    restored = unpack_complex(pack_complex(symbols), 2)
    torch.testing.assert_close(restored, symbols.detach().to(torch.complex64))


def test_unpack_empty_payload():
    assert unpack_complex(b"", 0).numel() == 0


@pytest.mark.parametrize("length, count", [(15, 2), (24, 2), (8, 0), (0, 1)])
def test_unpack_wrong_length_raises(length, count):
    with pytest.raises(ValueError, match=f"holds {length} bytes, expected {8 * count}"):
        unpack_complex(bytes(length), count)
