"""Uncoded BER and channel statistics (shared/channel/diagnostics.py) against theory, Sionna's AWGN
block, and the `channel-stats` command (semcom_cli/channel_stats.py).

Statistical tolerances: a measured BER from n symbols of m bits each has standard error at most
``sqrt(p (1 - p) / n)`` (the m bits of a symbol share the gain and, per axis, the noise, so they
are not independent; the bound holds for any correlation between them). BER points are checked
to 4 of those (2 % to 13 % relative), with n chosen for about ``TARGET_ERRORS`` expected bit
errors; points with under 100 expected errors at ``MAX_SYMBOLS`` are left out (QPSK over AWGN at
15 and 20 dB, 16-QAM over AWGN at 20 dB)."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from scipy import integrate

from semcom_cli.channel_stats import KIND_NAMES, MODULATION_NAMES, add_parser
from shared.channel import ChannelSpec, apply_channel, make_generator, noise_variance
from shared.channel.diagnostics import (
    KINDS,
    MODULATIONS,
    ber_awgn,
    ber_rayleigh,
    ber_rician,
    ber_theory,
    estimate_k_factor,
    rician_power_pdf,
    simulate,
    summarize,
)
from shared.channel.models import fading_gains

SNRS_DB = (0, 5, 10, 15, 20)
TARGET_ERRORS = 4000
MIN_SYMBOLS, MAX_SYMBOLS = 100_000, 2_000_000


def symbols_for(modulation: str, p: float) -> int:
    """Symbols for about TARGET_ERRORS expected bit errors at BER ``p``, within [MIN, MAX]_SYMBOLS."""
    wanted = math.ceil(TARGET_ERRORS / (p * MODULATIONS[modulation].bits_per_symbol))
    return min(max(wanted, MIN_SYMBOLS), MAX_SYMBOLS)


def ber_cases():
    for kind in ("awgn", "rayleigh"):
        for modulation in MODULATIONS:
            for snr in SNRS_DB:
                p = ber_theory(modulation, ChannelSpec(kind, snr))
                n = symbols_for(modulation, p)
                if p * n * MODULATIONS[modulation].bits_per_symbol >= 100:
                    yield pytest.param(kind, modulation, snr, n, id=f"{kind}-{modulation}-{snr}dB")


def assert_ber_matches(stats, modulation: str) -> None:
    result = stats.ber[modulation]
    p = result.ber.theory
    sigma = math.sqrt(p * (1 - p) / stats.symbols)
    assert abs(result.ber.measured - p) <= 4 * sigma, (
        f"{modulation}: measured {result.ber.measured:.4e}, theory {p:.4e}, 4 sigma {4 * sigma:.2e}")


# --- BER against closed forms -------------------------------------------------------


@pytest.mark.parametrize("kind, modulation, snr, symbols", list(ber_cases()))
def test_ber_matches_closed_form(kind, modulation, snr, symbols):
    spec = ChannelSpec(kind, float(snr), coherence_symbols=1, seed=100 + snr)
    assert_ber_matches(summarize(simulate(spec, symbols, (modulation,))), modulation)


def test_ber_cases_cover_the_range():
    """Each modulation keeps all five Rayleigh points and AWGN points up to 10 dB (QPSK) / 15 dB (16-QAM)."""
    kept = {case.id for case in ber_cases()}
    assert len(kept) == 17
    assert {"awgn-qpsk-10dB", "awgn-16qam-15dB", "rayleigh-qpsk-20dB", "rayleigh-16qam-20dB"} <= kept


def test_ber_rician_matches_integration():
    spec = ChannelSpec("rician", 10.0, k_factor=3.0, coherence_symbols=1, seed=7)
    stats = summarize(simulate(spec, 200_000))
    for modulation in MODULATIONS:
        assert_ber_matches(stats, modulation)


# --- the theory itself ----------------------------------------------------------------


def test_awgn_closed_forms_at_known_points():
    q = lambda x: 0.5 * math.erfc(x / math.sqrt(2))  # noqa: E731
    assert ber_awgn("qpsk", 0.0) == pytest.approx(q(1.0), rel=1e-12)  # Eb/N0 = -3 dB
    u = math.sqrt(10.0 / 5)  # 16-QAM at Es/N0 = 10 dB
    assert ber_awgn("16qam", 10.0) == pytest.approx((3 * q(u) + 2 * q(3 * u) - q(5 * u)) / 4, rel=1e-12)
    assert ber_rayleigh("qpsk", 10.0) == pytest.approx(0.5 * (1 - math.sqrt(5 / 6)), rel=1e-12)


@pytest.mark.parametrize("k_factor", [0.0, 1.0, 10.0, 100.0])
def test_rician_pdf_is_normalized_with_unit_mean(k_factor):
    mass = sum(integrate.quad(rician_power_pdf, lo, hi, args=(k_factor,))[0] for lo, hi in ((0, 1), (1, math.inf)))
    mean = sum(integrate.quad(lambda x: x * rician_power_pdf(x, k_factor), lo, hi)[0]
               for lo, hi in ((0, 1), (1, math.inf)))
    assert mass == pytest.approx(1.0, abs=1e-7)
    assert mean == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("modulation", list(MODULATIONS))
def test_rician_integration_limits(modulation):
    """K = 0 is the Rayleigh closed form; K -> inf tends to AWGN."""
    for snr in (0.0, 10.0, 20.0, 30.0):
        assert ber_rician(modulation, snr, 0.0) == pytest.approx(ber_rayleigh(modulation, snr), rel=1e-7)
    for snr in (0.0, 5.0, 10.0):
        assert ber_rician(modulation, snr, 1e4) == pytest.approx(ber_awgn(modulation, snr), rel=1e-2)
    assert ber_rician(modulation, 10.0, math.inf) == ber_awgn(modulation, 10.0)


# --- fading statistics and realized SNR -----------------------------------------------------


@pytest.mark.parametrize("k_factor", [0.0, 1.0, 3.0, 10.0])
def test_rician_k_recovered_from_samples(k_factor):
    """Moment estimate from 2e5 gains; tolerance about 4x the spread seen over 20 seeds (and the
    estimator's positive bias at K = 0, where it is clamped)."""
    gains = fading_gains(ChannelSpec("rician", k_factor=k_factor), 1, 200_000, make_generator(3))
    assert estimate_k_factor(gains.abs() ** 2) == pytest.approx(k_factor, abs=0.15, rel=0.03)


@pytest.mark.parametrize("kind", ["awgn", "rayleigh", "rician"])
def test_realized_snr_and_fading_stats(kind):
    """Realized SNR within 0.1 dB of nominal (2 x 4e5 symbols, 1e5 gains); fading figures within
    4 standard errors of theory."""
    spec = ChannelSpec(kind, 10.0, k_factor=3.0, coherence_symbols=8, seed=11)
    stats = summarize(simulate(spec, 400_000))
    assert abs(stats.realized_snr_db.measured - 10.0) < 0.1
    if kind == "awgn":
        assert stats.fading is None and stats.fading_draws is None
        return
    n, f = stats.fading_draws, stats.fading
    assert n == 2 * 400_000 // 8
    var = f["power_variance"].theory
    assert abs(f["mean_power"].measured - 1.0) <= 4 * math.sqrt(var / n)
    assert f["power_variance"].measured == pytest.approx(var, rel=0.05)
    p = f["deep_fade_fraction"].theory
    assert abs(f["deep_fade_fraction"].measured - p) <= 4 * math.sqrt(p * (1 - p) / n)


# --- agreement with Sionna's AWGN block -------------------------------------------------------


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_noise_variance_matches_sionna_awgn(snr):
    """Both add CN(0, N0) for the same N0: total variance N0, N0/2 per real part, 4 standard
    errors with 2e5 samples (|n|^2 is exponential: standard error N0 / sqrt(n))."""
    with torch.random.fork_rng():  # importing Sionna reseeds torch's global generators
        from sionna.phy import config
        from sionna.phy.channel import AWGN
    n, n0 = 200_000, noise_variance(snr)
    x = torch.zeros((1, n), dtype=torch.complex64)
    ours = apply_channel(x, ChannelSpec("awgn", snr, seed=5)).received
    generator = config.torch_rng("cpu")
    state = generator.get_state()
    generator.manual_seed(5)
    try:
        theirs = AWGN(device="cpu")(x, n0)
    finally:
        generator.set_state(state)
    assert ours.dtype == theirs.dtype == torch.complex64
    sem = n0 / math.sqrt(n)
    total = [(z.real.double() ** 2 + z.imag.double() ** 2).mean().item() for z in (ours, theirs)]
    for value in total:
        assert abs(value - n0) <= 4 * sem
    assert abs(total[0] - total[1]) <= 4 * math.sqrt(2) * sem
    for z in (ours, theirs):
        for part in (z.real, z.imag):
            assert abs(part.double().var().item() - n0 / 2) <= 4 * (n0 / 2) * math.sqrt(2 / n)


# --- the channel-stats command ------------------------------------------------------------


@pytest.fixture
def cli():
    parser = argparse.ArgumentParser(prog="semcom")
    add_parser(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> int:
        args = parser.parse_args(["channel-stats", *argv])
        return args.func(args)

    return run


def test_cli_choices_are_the_library_ones():
    assert KIND_NAMES == KINDS and MODULATION_NAMES == tuple(MODULATIONS)


def test_cli_json_and_plot(cli, tmp_path, capsys):
    plot = tmp_path / "const.png"
    code = cli("--channel", "rician", "--k-factor", "2", "--coherence", "4", "--snr", "10",
               "--symbols", "4000", "--seed", "1", "--json", "--plot", str(plot))
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["kind"] == "rician" and record["k_factor"] == 2.0 and record["coherence_symbols"] == 4
    assert record["symbols"] == 4000 and record["fading_draws"] == 2 * 1000 and record["plot"] == str(plot)
    assert set(record["ber"]) == {"qpsk", "16qam"} and record["ber"]["16qam"]["bits"] == 16_000
    assert set(record["fading"]) == {"mean_power", "power_variance", "k_factor", "deep_fade_fraction"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_table_and_default_plot_name(cli, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli("--channel", "awgn", "--snr", "7.5", "--symbols", "2000", "--modulation", "qpsk") == 0
    out = capsys.readouterr().out
    assert "realized SNR (dB)" in out and "BER qpsk" in out and "16qam" not in out and "|h|^2" not in out
    assert (tmp_path / "channel_stats_awgn_7.5dB.png").is_file()


def test_cli_rejects_bad_input(cli, capsys):
    assert cli("--channel", "rician", "--k-factor", "-1", "--snr", "10") == 2
    assert "K factor must be >= 0" in capsys.readouterr().err
    for argv in (["--channel", "awgn", "--snr", "inf"], ["--channel", "awgn", "--snr", "3", "--symbols", "0"],
                 ["--channel", "tdl", "--snr", "3"]):
        with pytest.raises(SystemExit):
            cli(*argv)
