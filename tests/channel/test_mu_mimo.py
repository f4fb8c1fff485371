"""Multi-user MIMO uplink (shared/channel/mu_mimo.py) and its per-user BER (shared/channel/multiuser_stats.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from semcom_cli.client import SendOptions, is_ok
from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.channel import ChannelSpec, complex_normal, make_generator, noise_variance
from shared.channel.link import receive, transmit
from shared.channel.mu_mimo import multiuser_channel, user_ber_theory, user_transmissions
from shared.channel.multiuser_stats import simulate_multiuser
from shared.channel.spec import channel_kind
from shared.phy.symbols import pack_complex

from ..serving.test_services import image_bytes, send


def mu_spec(**fields) -> ChannelSpec:
    spec = ChannelSpec(kind="mu_mimo", **({"users": 3, "rx_antennas": 3, "snr_db": 10.0} | fields))
    spec.validate()
    return spec


def gaussian(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    return complex_normal((batch, n), 1.0, make_generator(seed))


def energy(x: torch.Tensor) -> torch.Tensor:
    return x.real**2 + x.imag**2


def test_rows_share_slots_k_at_a_time():
    spec = mu_spec(coherence_symbols=16)
    output = transmit(gaussian(6, 100), spec, make_generator(1)).mimo
    assert output.received.shape == (2, 100, 3) and output.channel.shape == (2, 7, 3, 3)
    assert receive(transmit(gaussian(6, 100), spec), spec).symbols.shape == (6, 100)
    with pytest.raises(ValueError, match="not a multiple of 3"):
        transmit(gaussian(4, 100), spec)


def test_noiseless_slots_are_separated_row_by_row():
    x = gaussian(6, 50, seed=2)
    for detector in ("zf", "mmse"):
        spec = mu_spec(snr_db=80.0, multiuser_detector=detector, coherence_symbols=8)
        eq = receive(transmit(x, spec, make_generator(3)), spec)
        torch.testing.assert_close(eq.symbols / eq.effective_gain, x, rtol=0.0, atol=5e-3)  # float32, ill-conditioned H


def test_each_antenna_sees_the_users_large_scale_gains_plus_noise():
    spec = mu_spec(snr_db=5.0, user_gains_db=(0.0, -3.0, 3.0), coherence_symbols=1)
    output = multiuser_channel(gaussian(3, 100_000, seed=4), spec, make_generator(5))
    expected = 1.0 + 10 ** -0.3 + 10 ** 0.3 + noise_variance(5.0)
    assert energy(output.received).mean().item() == pytest.approx(expected, rel=0.02)
    column_power = energy(output.channel).mean((0, 1, 2))
    torch.testing.assert_close(column_power, torch.tensor([1.0, 10 ** -0.3, 10 ** 0.3]), rtol=0.03, atol=0.0)


@pytest.mark.parametrize("detector", ["zf", "mmse"])
def test_reported_noise_variance_is_the_measured_one(detector):
    """What the decoders are told (per-symbol gain and variance) matches the detector's error."""
    spec = mu_spec(snr_db=5.0, multiuser_detector=detector, coherence_symbols=1)
    x = gaussian(3, 60_000, seed=6)
    eq = receive(transmit(x, spec, make_generator(7)), spec)
    residual = eq.symbols - eq.effective_gain * x
    # normalized per symbol (ZF's variance is heavy-tailed: 1 / Gamma(1) for K = Nr)
    assert (energy(residual) / eq.effective_noise_variance).mean().item() == pytest.approx(1.0, rel=0.03)


def test_per_user_views_decode_their_own_frame_only():
    spec = mu_spec(coherence_symbols=10)
    x = gaussian(6, 40, seed=8)
    transmission = transmit(x, spec, make_generator(9))
    whole = receive(transmission, spec)
    lengths = [40, 31, 25, 40, 12, 7]  # before zero-padding to the slot
    views = user_transmissions(transmission, lengths)
    assert [v.channel_uses for v in views] == lengths
    for row, (view, n) in enumerate(zip(views, lengths)):
        mine = receive(view, spec)
        torch.testing.assert_close(mine.symbols, whole.symbols[row : row + 1, :n])
        torch.testing.assert_close(mine.effective_noise_variance, whole.effective_noise_variance[row : row + 1, :n])


def test_each_users_view_of_a_slot_round_trips_the_wire():
    block = channel_kind("mu_mimo")
    spec = mu_spec(coherence_symbols=16)
    frames = [gaussian(1, n, seed=10 + n)[0] for n in (70, 52, 64)]
    views = block.transmit_slot(frames, spec, make_generator(11))
    assert [v.channel_uses for v in views] == [70, 52, 64]  # the zero-padding is not counted
    for user, (view, frame) in enumerate(zip(views, frames)):
        samples, fields = block.to_wire(view)
        assert (fields["tx_antennas"], fields["slot_user"]) == (3, user)
        back = block.from_wire(pack_complex(samples), frame.numel(), pb.ChannelState(**fields), spec)
        torch.testing.assert_close(back.mimo.received, view.mimo.received)
        torch.testing.assert_close(back.mimo.channel, view.mimo.channel)
        mine = receive(back, spec)
        torch.testing.assert_close(mine.symbols, receive(view, spec).symbols)
        assert mine.symbols.shape == (1, frame.numel())
    with pytest.raises(ValueError, match="one user's view"):
        block.to_wire(transmit(gaussian(3, 70), spec, make_generator(0)))
    with pytest.raises(ValueError, match="does not fit"):
        block.from_wire(pack_complex(samples), 71, pb.ChannelState(**fields), spec)  # the slot has 70 uses


@pytest.mark.parametrize("fields, message", [
    ({"users": 0}, "users and receive antennas must be >= 1"),
    ({"users": 4, "multiuser_detector": "zf"}, "zero-forcing needs at least as many receive antennas as users"),
    ({"multiuser_detector": "mmse_sic"}, "unknown multi-user detector"),
    ({"user_gains_db": (0.0, 1.0)}, "one large-scale gain per user"),
    ({"user_gains_db": (0.0, 1.0, float("nan"))}, "finite"),
])
def test_validate_rejects_bad_specs(fields, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(ChannelSpec(kind="mu_mimo", users=3, rx_antennas=3), **fields).validate()


@pytest.mark.parametrize("users, n_rx, snr_db", [(2, 3, 0.0), (3, 3, 10.0), (3, 4, 10.0), (2, 4, 0.0)])
def test_zf_ber_per_user_is_within_ten_percent_of_theory(users, n_rx, snr_db):
    spec = mu_spec(users=users, rx_antennas=n_rx, snr_db=snr_db, coherence_symbols=1, seed=12)
    stats = simulate_multiuser(spec, 150_000, ("qpsk",), ("zf",))  # >= 1500 errors per user
    theory = user_ber_theory("qpsk", spec)
    for result, expected in zip(stats.ber["zf"]["qpsk"], theory):
        assert result.ber.theory == expected
        assert result.ber.measured == pytest.approx(expected, rel=0.1)


def test_sic_beats_mmse_and_mmse_beats_zf():
    spec = mu_spec(snr_db=10.0, coherence_symbols=4, seed=13)
    stats = simulate_multiuser(spec, 20_000, ("qpsk",))
    total = {d: sum(r.errors for r in stats.ber[d]["qpsk"]) for d in stats.ber}
    assert total["mmse_sic"] < total["mmse"] < total["zf"]
    assert all(r.ber.theory is None for d in ("mmse", "mmse_sic") for r in stats.ber[d]["qpsk"])


def test_a_frame_alone_in_its_slot_is_served_by_the_three_services(chain):
    """The services send every mu_mimo frame alone (K = 1): maximum-ratio combining over Nr antennas."""
    image = image_bytes(64, 64)
    results = send(chain.target, [
        SendOptions(channel="mu_mimo", snr_db=5.0, seed=3, channel_fields={"rx_antennas": 3}).request("simo", image),
        SendOptions(channel="rayleigh", snr_db=5.0, seed=3).request("siso", image)])
    assert all(is_ok(r) for r in results.values()), [r.status.message for r in results.values()]
    simo, siso = results["simo"], results["siso"]
    assert simo.channel.kind == "mu_mimo" and simo.channel_uses == siso.channel_uses
