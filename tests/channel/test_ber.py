"""Uncoded BER and channel statistics (shared/channel/diagnostics.py) against theory, Sionna's AWGN
block, and the `channel-stats` command (semcom_cli/channel_stats.py).

Statistical tolerances: a measured BER from n symbols of m bits each has standard error at most
``sqrt(p (1 - p) / n)`` (the m bits of a symbol share the gain and, per axis, the noise, so they
are not independent; the bound holds for any correlation between them). BER points are checked
to 4 of those (2 % to 13 % relative), with n chosen for about ``TARGET_ERRORS`` expected bit
errors; points with under 100 expected errors at ``MAX_SYMBOLS`` are left out (QPSK over AWGN at
15 and 20 dB, 16-QAM over AWGN at 20 dB).

MIMO: the Ns symbols of a channel use share H, so the same bound holds with n the number of
channel uses, ``ceil(n / Ns)``, independent under coherence 1. TDL: the resource elements of a
link are correlated in time and frequency, so the standard error comes from the spread of the
BER over the independent one-slot links (batch means; calibrated over 12 seeds: |z| < 2.7);
given the realized gains, symbols are independent, so the BER against its conditional mean
``mean_k Pb_AWGN(g |H_k|^2)`` is checked with the binomial bound."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from scipy import integrate

from scipy import stats as scipy_stats

from semcom_cli.channel_stats import KIND_NAMES, MODULATION_NAMES, MULTIUSER_KIND_NAMES, add_parser
from shared.channel import ChannelSpec, apply_channel, channel_kinds, make_generator, noise_variance
from shared.channel.diagnostics import (
    KINDS,
    MODULATIONS,
    ber_awgn,
    ber_gamma,
    ber_rayleigh,
    ber_rician,
    ber_theory,
    ber_wishart,
    estimate_k_factor,
    q_function,
    rician_power_pdf,
    simulate,
    summarize,
    tdl_k_factor,
    wishart_eigenvalue_pdf,
)
from shared.channel.multiuser_stats import KINDS as MULTIUSER_KINDS
from shared.channel.mimo import MIMO_SCHEMES
from shared.channel.flat import rician_gains
from shared.channel.tdl import TDL_MODELS, TDLConfig

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


def assert_ber_matches(stats, modulation: str, independent: int | None = None) -> None:
    """Measured BER within 4 binomial standard errors of theory, over ``independent`` units
    (default: the symbols)."""
    result = stats.ber[modulation]
    p = result.ber.theory
    sigma = math.sqrt(p * (1 - p) / (independent or stats.symbols))
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


MIMO_SYMBOLS = (100_000, 400_000)


def mimo_ber_cases():
    """(scheme, Nt, Nr, SNR, symbols): symbols for about TARGET_ERRORS QPSK errors, within MIMO_SYMBOLS."""
    for scheme, n_tx, n_rx, snrs in (("svd", 2, 2, (0, 10, 20)), ("svd", 2, 4, (0, 5, 10)),
                                     ("open_loop", 2, 4, (0, 5, 10))):
        for snr in snrs:
            p = ber_theory("qpsk", ChannelSpec("mimo", snr, tx_antennas=n_tx, rx_antennas=n_rx, mimo_scheme=scheme))
            n = min(max(math.ceil(TARGET_ERRORS / (2 * p)), MIMO_SYMBOLS[0]), MIMO_SYMBOLS[1])
            yield pytest.param(scheme, n_tx, n_rx, snr, n, id=f"{scheme}-{n_tx}x{n_rx}-{snr}dB")


@pytest.mark.parametrize("scheme, n_tx, n_rx, snr, symbols", list(mimo_ber_cases()))
def test_mimo_ber_matches_theory(scheme, n_tx, n_rx, snr, symbols):
    """svd against the Wishart-averaged BER, open_loop ZF against the Gamma(Nr - Nt + 1) closed
    form; coherence 1, so every channel use draws its own H."""
    spec = ChannelSpec("mimo", float(snr), coherence_symbols=1, seed=200 + snr, tx_antennas=n_tx,
                       rx_antennas=n_rx, mimo_scheme=scheme)
    stats = summarize(simulate(spec, symbols))
    assert stats.detector == "zf" and stats.coherence_symbols == 1
    streams = min(n_tx, n_rx) if scheme == "svd" else n_tx
    for modulation in MODULATIONS:
        assert_ber_matches(stats, modulation, independent=-(-symbols // streams))


def test_mimo_open_loop_with_fewer_receive_antennas_has_no_theory():
    """Nr < Nt: LMMSE detection divided by its gain; residual interference makes it worse than SVD."""
    spec = ChannelSpec("mimo", 10.0, coherence_symbols=1, seed=3, tx_antennas=4, rx_antennas=2, mimo_scheme="open_loop")
    stats = summarize(simulate(spec, 20_000, ("qpsk",)))
    assert stats.detector == "mmse" and stats.ber["qpsk"].ber.theory is None
    assert "zf_gain_mean" not in stats.fading
    assert stats.ber["qpsk"].ber.measured > 2 * ber_wishart("qpsk", 10.0, 4, 2)


TDL_LINK = TDLConfig().grid_symbols


def tdl_link_standard_error(sim, row: int) -> float:
    """Standard error of row ``row``'s BER from the spread of the BER over its one-slot links."""
    m = MODULATIONS[sim.modulations[row]].bits_per_symbol
    per_symbol = (sim.bits[row] != sim.decided_bits[row]).reshape(-1, m).double().mean(1)
    whole = per_symbol.numel() // TDL_LINK * TDL_LINK
    per_link = per_symbol[:whole].reshape(-1, TDL_LINK).mean(1)
    return per_link.std().item() / math.sqrt(per_link.numel())


def conditional_ber(sim, row: int) -> float:
    """``mean_k Pb_AWGN(g |H_k|^2)`` over the realized gains of row ``row``."""
    g = 10.0 ** (sim.spec.snr_db / 10.0)
    x = sim.channel.block_gains[row].abs().double() ** 2
    terms = MODULATIONS[sim.modulations[row]].ber_terms
    return sum(w * 0.5 * torch.special.erfc(a * torch.sqrt(g * x) / math.sqrt(2)) for w, a in terms).mean().item()


@pytest.mark.parametrize("model, snr, delay_spread, speed, symbols",
                         [("A", 0, 1000, 30, 400_000), ("A", 10, 1000, 30, 400_000), ("A", 20, 1000, 30, 400_000),
                          ("D", 5, 300, 3, 200_000)])
def test_tdl_ber_matches_theory(model, snr, delay_spread, speed, symbols):
    """TDL-A against Rayleigh theory, TDL-D against Rician theory with the profile's K (about 400
    and 200 one-slot links per modulation; TDL-A with a long delay spread and a fast terminal
    for more independent gains per link): within 4 link standard errors (3 % to 22 % of the BER
    at these points); and within 4 binomial standard errors of the BER conditioned on the
    realized gains."""
    spec = ChannelSpec("tdl", float(snr), seed=300 + snr, tdl_model=model, delay_spread_ns=delay_spread, speed_mps=speed)
    sim = simulate(spec, symbols)
    stats = summarize(sim)
    theory = ber_rayleigh if model == "A" else lambda m, s: ber_rician(m, s, tdl_k_factor("D"))
    for row, modulation in enumerate(sim.modulations):
        result = stats.ber[modulation]
        assert result.ber.theory == pytest.approx(theory(modulation, float(snr)), rel=1e-9)
        sigma = tdl_link_standard_error(sim, row)
        assert abs(result.ber.measured - result.ber.theory) <= 4 * sigma, (
            f"{modulation}: measured {result.ber.measured:.4e}, theory {result.ber.theory:.4e}, 4 sigma {4 * sigma:.2e}")
        p = conditional_ber(sim, row)
        assert abs(result.ber.measured - p) <= 4 * math.sqrt(p * (1 - p) / stats.symbols)


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


@pytest.mark.parametrize("n_tx, n_rx", [(1, 1), (2, 2), (2, 4), (4, 2), (3, 5), (4, 4)])
def test_wishart_eigenvalue_pdf_is_normalized_with_mean_n_and_variance_mn(n_tx, n_rx):
    m, n = min(n_tx, n_rx), max(n_tx, n_rx)
    moment = lambda k: sum(integrate.quad(lambda x: x**k * wishart_eigenvalue_pdf(x, n_tx, n_rx), lo, hi)[0]  # noqa: E731
                           for lo, hi in ((0, n), (n, math.inf)))
    assert moment(0) == pytest.approx(1.0, abs=1e-9)
    assert moment(1) == pytest.approx(n, rel=1e-9)
    assert moment(2) - moment(1) ** 2 == pytest.approx(m * n, rel=1e-7)  # E tr(W^2) = m n (m + n)


def test_wishart_pdf_special_cases():
    """1 x 1: Exp(1); 1 x n and n x 1: Gamma(n, 1) (chi-square with 2n degrees of freedom, halved)."""
    for x in (0.01, 0.5, 1.0, 3.0, 10.0):
        assert wishart_eigenvalue_pdf(x, 1, 1) == pytest.approx(math.exp(-x), rel=1e-12)
        for n_tx, n_rx in ((1, 3), (3, 1)):
            assert wishart_eigenvalue_pdf(x, n_tx, n_rx) == pytest.approx(scipy_stats.gamma.pdf(x, 3), rel=1e-12)
    assert wishart_eigenvalue_pdf(0.0, 2, 2) == 1.0 and wishart_eigenvalue_pdf(0.0, 2, 3) == 0.0


@pytest.mark.parametrize("modulation", list(MODULATIONS))
def test_mimo_ber_theory_limits(modulation):
    """Wishart 1 x 1 is Rayleigh, 1 x 4 and 4 x 1 the Gamma(4) (MRC) closed form, which matches
    quadrature over the Gamma pdf; 2 x 4 equals 4 x 2."""
    for snr in (0.0, 10.0, 20.0, 30.0):
        assert ber_wishart(modulation, snr, 1, 1) == pytest.approx(ber_rayleigh(modulation, snr), rel=1e-7)
        assert ber_wishart(modulation, snr, 1, 4) == pytest.approx(ber_gamma(modulation, snr, 4), rel=1e-7)
        assert ber_wishart(modulation, snr, 4, 1) == pytest.approx(ber_gamma(modulation, snr, 4), rel=1e-7)
        assert ber_wishart(modulation, snr, 2, 4) == pytest.approx(ber_wishart(modulation, snr, 4, 2), rel=1e-12)
        g = 10.0 ** (snr / 10.0)
        quad = integrate.quad(lambda x: sum(w * q_function(a * math.sqrt(g * x)) for w, a in MODULATIONS[modulation].ber_terms)
                              * scipy_stats.gamma.pdf(x, 3), 0, math.inf, epsabs=0, epsrel=1e-10, limit=200)[0]
        assert ber_gamma(modulation, snr, 3) == pytest.approx(quad, rel=1e-6)
    assert ber_gamma(modulation, 10.0, 1) == ber_rayleigh(modulation, 10.0)
    # more antennas, more diversity; open-loop ZF 2 x 4 (diversity 3) loses to SVD 2 x 4 on average at low SNR
    assert ber_wishart(modulation, 10.0, 2, 4) < ber_wishart(modulation, 10.0, 2, 2) < ber_rayleigh(modulation, 10.0)
    spec = ChannelSpec("mimo", 5.0, tx_antennas=2, rx_antennas=4, mimo_scheme="open_loop")
    assert ber_theory(modulation, spec) == ber_gamma(modulation, 5.0, 3)
    assert ber_theory(modulation, ChannelSpec("mimo", 5.0, tx_antennas=4, rx_antennas=2, mimo_scheme="open_loop")) is None


def test_tdl_k_factors_from_the_profiles():
    """NLOS profiles: 0. TDL-D (TR 38.901 Table 7.7.2-4): LoS -0.2 dB over all the scattered taps."""
    assert [tdl_k_factor(m) for m in "ABC"] == [0.0, 0.0, 0.0]
    scattered = (-13.5, -18.8, -21, -22.8, -17.9, -20.1, -21.9, -22.9, -27.8, -23.6, -24.8, -30.0, -27.7)
    assert tdl_k_factor("D") == pytest.approx(10 ** -0.02 / sum(10 ** (p / 10) for p in scattered), rel=1e-5)
    assert 8.0 < tdl_k_factor("E") < 9.0
    assert ber_theory("qpsk", ChannelSpec("tdl", 10.0, tdl_model="E")) == ber_rician("qpsk", 10.0, tdl_k_factor("E"))


# --- fading statistics and realized SNR -----------------------------------------------------


@pytest.mark.parametrize("k_factor", [0.0, 1.0, 3.0, 10.0])
def test_rician_k_recovered_from_samples(k_factor):
    """Moment estimate from 2e5 gains; tolerance about 4x the spread seen over 20 seeds (and the
    estimator's positive bias at K = 0, where it is clamped)."""
    gains = rician_gains(k_factor, 1, 200_000, make_generator(3))
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


@pytest.mark.parametrize("scheme, n_tx, n_rx", [("svd", 2, 2), ("svd", 4, 2), ("open_loop", 2, 4)])
def test_mimo_realized_snr_and_eigenvalue_stats(scheme, n_tx, n_rx):
    """1e5 matrices H (coherence 1). Realized SNR within 0.1 dB of snr + 10 log10(Nt / Ns); the
    eigenvalue (and post-ZF gain) means and deep-fade fractions within 4 standard errors over the
    matrices (the mean or fraction over one matrix's eigenvalues has variance at most that of one),
    variances within 5 %."""
    spec = ChannelSpec("mimo", 10.0, coherence_symbols=1, seed=13, tx_antennas=n_tx, rx_antennas=n_rx, mimo_scheme=scheme)
    streams = min(n_tx, n_rx) if scheme == "svd" else n_tx
    stats = summarize(simulate(spec, 50_000 * streams))
    assert stats.fading_draws == 2 * 50_000
    assert stats.realized_snr_db.theory == pytest.approx(10.0 + 10 * math.log10(n_tx / streams))
    assert abs(stats.realized_snr_db.measured - stats.realized_snr_db.theory) < 0.1
    m, n = min(n_tx, n_rx), max(n_tx, n_rx)
    expected = {"eigenvalue": (n, m * n)} | ({"zf_gain": (n_rx - n_tx + 1,) * 2} if scheme == "open_loop" else {})
    assert set(stats.fading) == {f"{name}_{what}" for name in expected for what in ("mean", "variance", "deep_fade_fraction")}
    for name, (mean, var) in expected.items():
        f = stats.fading
        assert f[f"{name}_mean"].theory == mean and f[f"{name}_variance"].theory == var
        assert abs(f[f"{name}_mean"].measured - mean) <= 4 * math.sqrt(var / stats.fading_draws)
        assert f[f"{name}_variance"].measured == pytest.approx(var, rel=0.05)
        p = f[f"{name}_deep_fade_fraction"].theory
        assert abs(f[f"{name}_deep_fade_fraction"].measured - p) <= 4 * math.sqrt(p * (1 - p) / stats.fading_draws)


def test_tdl_realized_snr_and_fading_stats():
    """TDL-D, 4e5 resource elements over about 400 one-slot links. The per-resource-element gains
    of a link are correlated, so the mean |H|^2 is checked to 4 standard errors over the links,
    the realized SNR net of that realized mean power to 0.1 dB, and the moment K (seen within
    7.67..8.76 over 12 seeds, profile 7.92) and variance to 15 %."""
    spec = ChannelSpec("tdl", 10.0, seed=17, tdl_model="D")
    sim = simulate(spec, 200_000)
    stats = summarize(sim)
    k = tdl_k_factor("D")
    assert stats.k_factor == k and stats.coherence_symbols is None and stats.fading_draws == 2 * -(-200_000 // TDL_LINK)
    f = stats.fading
    power = sim.channel.block_gains.abs().double() ** 2
    per_link = power[:, : 200_000 // TDL_LINK * TDL_LINK].reshape(-1, TDL_LINK).mean(1)
    assert abs(f["mean_power"].measured - 1.0) <= 4 * per_link.std().item() / math.sqrt(per_link.numel())
    assert abs(stats.realized_snr_db.measured - 10 * math.log10(f["mean_power"].measured) - 10.0) < 0.1
    assert f["k_factor"].theory == k and f["k_factor"].measured == pytest.approx(k, rel=0.15)
    assert f["power_variance"].measured == pytest.approx((2 * k + 1) / (k + 1) ** 2, rel=0.15)


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
    assert KIND_NAMES == KINDS + MULTIUSER_KINDS == channel_kinds() and MODULATION_NAMES == tuple(MODULATIONS)
    assert MULTIUSER_KIND_NAMES == MULTIUSER_KINDS


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


def test_cli_json_mimo(cli, tmp_path, capsys):
    plot = tmp_path / "mimo.png"
    code = cli("--channel", "mimo", "--antennas", "2", "4", "--mimo-scheme", "open_loop", "--coherence", "2",
               "--snr", "5", "--symbols", "4000", "--seed", "1", "--json", "--plot", str(plot))
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["kind"] == "mimo" and (record["tx_antennas"], record["rx_antennas"]) == (2, 4)
    assert record["mimo_scheme"] == "open_loop" and record["detector"] == "zf" and record["tdl_model"] is None
    assert record["coherence_symbols"] == 2 and record["fading_draws"] == 2 * 1000 and record["k_factor"] is None
    assert record["ber"]["qpsk"]["ber"]["theory"] == pytest.approx(ber_gamma("qpsk", 5.0, 3))
    assert set(record["fading"]) == {f"{name}_{what}" for name in ("eigenvalue", "zf_gain")
                                     for what in ("mean", "variance", "deep_fade_fraction")}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_mu_mimo_per_user_table_and_json(cli, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ("--channel", "mu_mimo", "--users", "2", "--antennas", "3", "--user-gains", "0", "-3", "--snr", "10",
            "--symbols", "3000", "--modulation", "qpsk")
    assert cli(*argv) == 0
    out = capsys.readouterr().out
    assert "mu_mimo 2 users x 3 antennas" in out and "MMSE-SIC" in out and "ZF theory" in out
    assert "BER qpsk user 1 (-3 dB)" in out and not list(tmp_path.iterdir())  # no plot
    assert cli(*argv, "--json") == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["users"], record["rx_antennas"], record["user_gains_db"]) == (2, 3, [0.0, -3.0])
    assert set(record["ber"]) == {"zf", "mmse", "mmse_sic"}
    zf = record["ber"]["zf"]["qpsk"]
    assert [r["ber"]["theory"] for r in zf] == pytest.approx([ber_gamma("qpsk", 10.0, 2), ber_gamma("qpsk", 7.0, 2)])


def test_cli_json_tdl(cli, tmp_path, capsys):
    plot = tmp_path / "tdl.png"
    code = cli("--channel", "tdl", "--tdl-model", "D", "--delay-spread", "100", "--speed", "30", "--snr", "10",
               "--symbols", "4000", "--json", "--plot", str(plot))
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["kind"] == "tdl" and record["tdl_model"] == "D" and record["k_factor"] == tdl_k_factor("D")
    assert record["delay_spread_ns"] == 100.0 and record["speed_mps"] == 30.0 and record["tx_antennas"] is None
    assert record["fading_draws"] == 2 * 4 and record["coherence_symbols"] is None
    assert set(record["fading"]) == {"mean_power", "power_variance", "k_factor", "deep_fade_fraction"}
    assert record["ber"]["16qam"]["ber"]["theory"] == pytest.approx(ber_rician("16qam", 10.0, tdl_k_factor("D")))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_table_mimo_without_theory(cli, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli("--channel", "mimo", "--antennas", "4", "2", "--mimo-scheme", "open_loop", "--snr", "10",
               "--symbols", "2000", "--modulation", "16qam") == 0
    out = capsys.readouterr().out
    assert "mimo 4x2 open_loop (LMMSE detection / gain)" in out and "mean sigma_i^2" in out
    assert "BER 16qam" in out and "n/a" in out and "post-ZF" not in out
    assert (tmp_path / "channel_stats_mimo_10dB.png").is_file()


def test_cli_table_and_default_plot_name(cli, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli("--channel", "awgn", "--snr", "7.5", "--symbols", "2000", "--modulation", "qpsk") == 0
    out = capsys.readouterr().out
    assert "realized SNR (dB)" in out and "BER qpsk" in out and "16qam" not in out and "|h|^2" not in out
    assert (tmp_path / "channel_stats_awgn_7.5dB.png").is_file()


def test_cli_rejects_bad_input(cli, capsys):
    assert cli("--channel", "rician", "--k-factor", "-1", "--snr", "10") == 2
    assert "K factor must be >= 0" in capsys.readouterr().err
    assert cli("--channel", "tdl", "--delay-spread", "0", "--snr", "10") == 2
    assert "delay_spread_ns must be a finite number > 0" in capsys.readouterr().err
    for argv in (["--channel", "awgn", "--snr", "inf"], ["--channel", "awgn", "--snr", "3", "--symbols", "0"],
                 ["--channel", "cdl", "--snr", "3"], ["--channel", "tdl", "--tdl-model", "F", "--snr", "3"],
                 ["--channel", "mimo", "--antennas", "0", "2", "--snr", "3"],
                 ["--channel", "mimo", "--antennas", "2", "2", "2", "--snr", "3"],
                 ["--channel", "mimo", "--mimo-scheme", "ml", "--snr", "3"]):
        with pytest.raises(SystemExit):
            cli(*argv)
