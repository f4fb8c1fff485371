"""The separation baseline: codec at a byte budget, LDPC + QAM link, cliff, capacity bound."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from shared.eval import separation
from shared.phy import digital_link
from shared.channel import ChannelSpec, channel_kind, make_generator, per_symbol_gains
from shared.channel.diagnostics import ber_awgn
from shared.channel.link import receive, transmit

CBR = Fraction(1, 6)


@pytest.mark.parametrize("codec", ["jpeg", "avif"])
def test_budget_search_fits_and_quality_grows_with_budget(codec, make_image):
    image = make_image(64, 64)
    assert separation.encode_image_to_budget(image, codec, 100) is None
    qualities = []
    for budget in (600, 1200, 2400):
        data, quality = separation.encode_image_to_budget(image, codec, budget)
        assert len(data) <= budget
        assert len(separation.compress_image(image, codec, quality + 1)) > budget or quality == separation.CODECS[codec][1][1]
        qualities.append(quality)
    assert qualities == sorted(qualities) and qualities[0] < qualities[-1]


def test_link_is_error_free_at_high_snr_and_fails_at_low_snr():
    rate = Fraction(5, 6)
    assert digital_link.block_error_rate("64qam", rate, 25.0, codewords=2) == 0.0
    assert digital_link.block_error_rate("64qam", rate, -5.0, codewords=2) == 1.0


@pytest.mark.parametrize(
    "spec",
    [
        ChannelSpec("awgn", 20.0),
        ChannelSpec("rayleigh", 30.0, coherence_symbols=8),
        ChannelSpec("rician", 25.0, k_factor=3.0, coherence_symbols=8, csi="ls"),
        ChannelSpec("mimo", 25.0, coherence_symbols=8),
        ChannelSpec("tdl", 30.0, seed=3),
    ],
    ids=lambda spec: spec.kind,
)
def test_send_bits_over_every_channel_kind(spec):
    generator = make_generator(0)
    bits = torch.randint(0, 2, (2, 200), generator=generator).float()
    decoded, errors, channel_uses = digital_link.send_bits(bits, "16qam", Fraction(1, 2), spec, generator)
    assert errors == 0 and torch.equal(decoded, bits)
    symbols = 2 * 400 // 4
    assert channel_uses == transmit(torch.ones(1, symbols, dtype=torch.complex64), spec, make_generator(0)).channel_uses


def _qpsk_through(spec: ChannelSpec, bits: torch.Tensor):
    """QPSK symbols of ``bits`` through ``spec``: (transmission, LLRs)."""
    mapping, _, _ = digital_link._sionna()
    symbols = mapping.Mapper("qam", 2, device="cpu")(bits)[None]
    transmission = transmit(symbols, spec, make_generator(1))
    return transmission, digital_link.bit_llrs(receive(transmission, spec), "qpsk")[0]


def test_llr_hard_decisions_match_qpsk_ber():
    bits = torch.randint(0, 2, (200_000,), generator=make_generator(0)).float()
    _, llrs = _qpsk_through(ChannelSpec("awgn", 5.0), bits)
    ber = ((llrs > 0).float() != bits).float().mean().item()
    assert ber == pytest.approx(ber_awgn("qpsk", 5.0), rel=0.05)  # Q(sqrt(10^0.5)) = 0.0377


def test_llr_scale_after_mmse_equals_exact_llr_over_fading():
    # y = h x + n, x = ((1 - 2 b0) + j (1 - 2 b1)) / sqrt(2): LLR(b0) = -2 sqrt(2) Re(conj(h) y) / N0.
    bits = torch.randint(0, 2, (4000,), generator=make_generator(0)).float()
    spec = ChannelSpec("rayleigh", 5.0, coherence_symbols=4)
    transmission, llrs = _qpsk_through(spec, bits)
    channel = transmission.siso
    z = (per_symbol_gains(channel).conj() * channel.received)[0] * (-2 * math.sqrt(2) / channel.noise_variance)
    torch.testing.assert_close(llrs, torch.stack([z.real, z.imag], dim=1).flatten(), rtol=1e-3, atol=1e-3)


SNRS = [snr / 4 for snr in range(-20, 161)]  # -5 to 40 dB in 0.25 dB steps


@pytest.mark.parametrize("kind", ["awgn", "rayleigh", "rician", "mimo", "tdl"])
def test_scheme_choice_meets_its_threshold_and_grows_with_snr(kind):
    table = channel_kind(kind).threshold_table
    assert table == ("awgn" if kind == "awgn" else "rayleigh")  # every fading kind: the Rayleigh table
    thresholds, margin = digital_link.THRESHOLDS_DB[table], digital_link.SELECTION_MARGIN_DB[table]
    chosen = [digital_link.choose_scheme(snr, kind) for snr in SNRS]
    assert chosen[0] == ("qpsk", Fraction(1, 3))  # below every threshold: the most robust pair
    efficiency = [digital_link.MODULATIONS[m] * r for m, r in chosen]
    assert efficiency == sorted(efficiency) and efficiency[-1] == 5  # monotone in SNR
    for snr, pair in zip(SNRS, chosen):
        feasible = [p for p, threshold in thresholds.items() if threshold + margin <= snr]
        if not feasible:
            assert pair == ("qpsk", Fraction(1, 3))
            continue
        assert pair in feasible  # the margin is met ...
        assert digital_link.MODULATIONS[pair[0]] * pair[1] == max(digital_link.MODULATIONS[m] * r for m, r in feasible)


def test_scheme_choice_is_more_conservative_on_fading():
    awgn = [digital_link.MODULATIONS[m] * r for m, r in (digital_link.choose_scheme(snr, "awgn") for snr in SNRS)]
    faded = [digital_link.MODULATIONS[m] * r for m, r in (digital_link.choose_scheme(snr, "rayleigh") for snr in SNRS)]
    assert all(f <= a for f, a in zip(faded, awgn))
    assert sum(f < a for f, a in zip(faded, awgn)) > len(SNRS) // 2  # strictly so over most of -5..40 dB
    assert digital_link.choose_scheme(20.0, "awgn") == ("64qam", Fraction(5, 6))
    assert digital_link.choose_scheme(20.0, "rayleigh") != ("64qam", Fraction(5, 6))


def test_threshold_tables_are_plausible():
    awgn, rayleigh = digital_link.THRESHOLDS_DB["awgn"], digital_link.THRESHOLDS_DB["rayleigh"]
    pairs = {(m, r) for m in digital_link.MODULATIONS for r in digital_link.CODE_RATES}
    assert set(awgn) == set(rayleigh) == pairs and digital_link.AWGN_THRESHOLDS_DB is awgn
    for m in digital_link.MODULATIONS:
        for table in (awgn, rayleigh):
            row = [table[m, r] for r in digital_link.CODE_RATES]
            assert row == sorted(row)  # a higher rate needs more SNR
    for (m, r), threshold in awgn.items():
        shannon = 10 * math.log10(2 ** float(digital_link.MODULATIONS[m] * r) - 1)
        assert shannon + 0.5 < threshold < shannon + 4.0  # a practical code of 8448 bits, not a typo
        assert rayleigh[m, r] > threshold  # fading costs SNR at every pair
    assert all(margin > 0 for margin in digital_link.SELECTION_MARGIN_DB.values())


def test_scrambling_sequence_is_the_5g_gold_sequence():
    from sionna.phy.nr.utils import generate_prng_seq

    sequence = digital_link.scrambling_sequence(5000)
    assert sequence.dtype == torch.float32 and set(sequence.unique().tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(sequence.numpy(), generate_prng_seq(5000, digital_link.SCRAMBLING_C_INIT))
    assert torch.equal(digital_link.scrambling_sequence(70_000)[:5000], sequence)  # a prefix of any longer one
    assert 0.45 < float(digital_link.scrambling_sequence(70_000).mean()) < 0.55


def test_scrambling_round_trip_and_constant_data():
    k = math.floor(digital_link.MAX_CODEWORD_BITS * 2 / 3)
    zeros = torch.zeros(3, k)
    plain = digital_link.modulate_bits(zeros, "16qam", Fraction(2, 3), scramble=False)
    scrambled = digital_link.modulate_bits(zeros, "16qam", Fraction(2, 3))
    points = lambda symbols: torch.view_as_real(symbols).unique(dim=0).shape[0]
    assert points(plain) == 1  # all-zero codewords: one inner point at a fifth of the mean energy
    assert points(scrambled) == 16 and abs(float(scrambled.abs().pow(2).mean()) - 1.0) < 0.05
    # Noise-free round trip: the descrambler flips exactly the LLRs the scrambler flipped.
    bits = torch.randint(0, 2, (2, 300), generator=make_generator(0)).float()
    decoded, errors, _ = digital_link.send_bits(bits, "64qam", Fraction(1, 2), ChannelSpec("awgn", 60.0), make_generator(1))
    assert errors == 0 and torch.equal(decoded, bits)
    # Constant data just above the AWGN threshold: lost unscrambled, delivered scrambled.
    spec = ChannelSpec("awgn", 10.0)
    _, lost, _ = digital_link.send_bits(zeros, "16qam", Fraction(2, 3), spec, make_generator(0), scramble=False)
    decoded, errors, _ = digital_link.send_bits(zeros, "16qam", Fraction(2, 3), spec, make_generator(0))
    assert lost > 0 and errors == 0 and torch.equal(decoded, zeros)


def test_fading_choice_delivers_a_short_file_over_rayleigh():
    pair = ("qpsk", Fraction(1, 2))
    snr = digital_link.THRESHOLDS_DB["rayleigh"][pair] + digital_link.SELECTION_MARGIN_DB["rayleigh"]
    assert digital_link.choose_scheme(snr, "rayleigh") == pair
    spec = ChannelSpec("rayleigh", snr)
    assert digital_link.file_errors(*pair, spec, codewords=4, seed=0) == 0
    # The AWGN table's choice at this SNR is far too fast for the fading channel: the file is lost.
    assert digital_link.file_errors(*digital_link.choose_scheme(snr, "awgn"), spec, codewords=4, seed=0) > 0


def test_measure_file_threshold_brackets_a_waterfall():
    threshold, history = digital_link.measure_file_threshold(
        "qpsk", Fraction(1, 3), "awgn", start_db=2.0, files=1, file_codewords=2, probe_codewords=1,
        coarse_db=2.0, fine_db=1.0)
    assert -3.0 <= threshold <= 1.0  # the AWGN threshold is -0.75 dB
    assert all(errors == 0 for snr, errors, _ in history if snr == threshold)
    assert any(errors > 0 for snr, errors, _ in history if snr == threshold - 1.0)


def test_separation_baseline_cliff(make_image):
    image, cbr = make_image(64, 64), Fraction(1, 2)  # at -5 dB, 6144 QPSK symbols of rate 1/3 still carry a file
    good = separation.separation_baseline(image, ChannelSpec("awgn", 20.0), cbr, "avif", make_generator(0))
    lost = separation.separation_baseline(image, ChannelSpec("awgn", -5.0), cbr, "avif", make_generator(0))
    assert (good["modulation"], good["code_rate"]) == ("64qam", "5/6")
    assert not good["failed"] and good["block_errors"] == 0 and good["psnr"] > 30.0
    assert 6100 < good["channel_uses"] <= 6144 and good["bytes"] > 0
    assert (lost["modulation"], lost["code_rate"]) == ("qpsk", "1/3") and lost["bytes"] > 0
    assert lost["failed"] and lost["block_errors"] == lost["codewords"] == 2
    assert torch.all(lost["image"] == separation.GREY)
    assert good["psnr"] > lost["psnr"] + 15.0 and good["ms_ssim"] > lost["ms_ssim"]


def test_separation_baseline_sends_nothing_when_no_file_fits(make_image):
    image = make_image(64, 64)
    result = separation.separation_baseline(image, ChannelSpec("awgn", -5.0), CBR, "avif", make_generator(0))
    assert result["quality"] is None and result["bytes"] == result["channel_uses"] == 0 and result["failed"]
    assert torch.all(result["image"] == separation.GREY)


@pytest.mark.parametrize("codec", ["jpeg", "avif"])
def test_capacity_bound_budget_and_dominance(codec, make_image):
    image, snr_db = make_image(64, 64), 8.0
    bound = separation.capacity_bound(image, snr_db, 1 / 6, codec)  # a float CBR reads as 1/6: 2048 symbols
    assert bound["budget_bytes"] == math.floor(2048 * math.log2(1 + 10 ** (snr_db / 10)) / 8)
    assert 0 < bound["bytes"] <= bound["budget_bytes"]
    practical = separation.separation_baseline(image, ChannelSpec("awgn", snr_db), CBR, codec, make_generator(0))
    assert not practical["failed"] and practical["bytes"] < bound["bytes"]
    assert bound["psnr"] >= practical["psnr"]


def test_separation_baseline_picks_the_scheme_of_the_channel_kind(make_image):
    image, snr = make_image(64, 64), 20.0
    faded = separation.separation_baseline(image, ChannelSpec("rayleigh", snr), Fraction(1, 2), "avif", make_generator(0))
    pair = digital_link.choose_scheme(snr, "rayleigh")
    assert (faded["modulation"], faded["code_rate"]) == (pair[0], str(pair[1]))
    assert not faded["failed"] and faded["block_errors"] == 0
