"""`semcom channel-stats`: plain QPSK / 16-QAM through the channel model, measured beside theory.

Register it with ``add_parser(subparsers)``. The simulation lives in
:mod:`shared.channel.diagnostics`, imported when the command runs (it pulls in Sionna and
matplotlib, a few seconds), so other commands start as fast as before.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.channel import ChannelSpec

from . import argtypes
from .channel_args import add_channel_options, spec_from_args

# The same as shared.channel.diagnostics.KINDS + multiuser_stats.KINDS and MODULATIONS (checked by
# tests), spelled out here so that registering the command does not import the diagnostics (Sionna,
# matplotlib).
KIND_NAMES = ("awgn", "rayleigh", "rician", "mimo", "tdl", "mu_mimo")
MULTIUSER_KIND_NAMES = ("mu_mimo",)
MODULATION_NAMES = ("qpsk", "16qam")

DESCRIPTION = """\
Send random bits as Gray-labelled unit-energy QPSK / 16-QAM through the channel model the
emulator uses (Es/N0 per complex symbol, E|h|^2 = 1), equalize with the true gains
(zero-forcing), decide each symbol, and print what was measured beside theory: realized SNR,
fading-gain statistics (mean and variance of |h|^2, Rician K by moments, fraction of deep
fades |h|^2 < 0.1) and uncoded BER (closed forms for AWGN and Rayleigh, numerical integration
for Rician). Also draws the constellations before and after equalization to a PNG.

mimo (Nt x Nr i.i.d. Rayleigh blocks): svd is decided after ZF on each combined sub-channel
r_i = sigma_i s_i + n_i, against the BER averaged over the Wishart eigenvalues sigma_i^2 (whose
mean, variance and deep fades are shown); open_loop after ZF detection (Nr >= Nt; post-ZF gain
Gamma(Nr - Nt + 1, 1)), or LMMSE detection divided by its gain when Nr < Nt (no theory).
tdl (3GPP TDL over OFDM, sent as one-slot links): ZF per resource element, against Rayleigh
theory for the profiles A, B, C and Rician theory with the profile's K for D, E.
mu_mimo (K single-antenna users in one slot, Nr receive antennas, i.i.d. Rayleigh blocks): each
user's BER after ZF, MMSE and MMSE-SIC detection (estimates divided by their gain; SIC cancels
hard decisions, strongest post-detection SINR first), beside the ZF theory (post-ZF gain
Gamma(Nr - K + 1, 1) at the user's Es/N0 + gain); no constellation plot.

example:
  semcom channel-stats --channel rayleigh --snr 10
  semcom channel-stats --channel rician --k-factor 3 --coherence 1 --snr 15 --modulation 16qam --json
  semcom channel-stats --channel mimo --antennas 2 4 --mimo-scheme open_loop --snr 5
  semcom channel-stats --channel tdl --tdl-model D --delay-spread 100 --speed 30 --snr 10
  semcom channel-stats --channel mu_mimo --users 3 --antennas 3 --snr 10 --modulation qpsk"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``channel-stats`` on an ``add_subparsers()`` object; returns its parser."""
    parser = subparsers.add_parser("channel-stats", help="uncoded BER and fading statistics of a channel beside theory",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channel", required=True, choices=KIND_NAMES, metavar="KIND",
                        help=f"channel kind: {', '.join(KIND_NAMES)}")
    parser.add_argument("--snr", type=argtypes.finite, required=True, metavar="DB", help="Es/N0 per complex symbol in dB")
    add_channel_options(parser, ChannelSpec(), exclude=("--csi", "--pilots", "--multiuser-detector"),
                        real=argtypes.finite, integer=argtypes.count)
    parser.add_argument("--symbols", type=argtypes.count, default=1_000_000, metavar="N",
                        help="symbols per modulation (default 1e6)")
    parser.add_argument("--modulation", nargs="+", choices=MODULATION_NAMES, default=list(MODULATION_NAMES),
                        help="modulations to send (default both)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the bits and channel draws (default 0)")
    parser.add_argument("--plot", type=Path, metavar="PATH",
                        help="constellation PNG (default channel_stats_<kind>_<snr>dB.png)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run_channel_stats)
    return parser


LABELS = {"mean_power": "mean |h|^2", "power_variance": "var |h|^2", "k_factor": "Rician K (moments)",
          "deep_fade_fraction": "deep fades |h|^2 < 0.1", "eigenvalue_mean": "mean sigma_i^2",
          "eigenvalue_variance": "var sigma_i^2", "eigenvalue_deep_fade_fraction": "deep fades sigma_i^2 < 0.1",
          "zf_gain_mean": "mean post-ZF gain", "zf_gain_variance": "var post-ZF gain",
          "zf_gain_deep_fade_fraction": "deep fades ZF gain < 0.1"}
"""Table labels of the ``fading`` keys of ChannelStats."""


def _setting(stats) -> str:
    """The first line of :func:`format_stats`: the channel and the receiver."""
    kind = stats.kind
    if kind == "mimo":
        receiver = "ZF per sub-channel" if stats.mimo_scheme == "svd" else {
            "zf": "ZF detection", "mmse": "LMMSE detection / gain"}[stats.detector]
        kind = f"mimo {stats.tx_antennas}x{stats.rx_antennas} {stats.mimo_scheme} ({receiver})"
    elif kind == "tdl":
        kind = f"tdl TDL-{stats.tdl_model}, delay spread {stats.delay_spread_ns:g} ns, {stats.speed_mps:g} m/s"
    setting = f"{kind}, Es/N0 {stats.snr_db:g} dB (N0 {stats.noise_variance:.4g})"
    if stats.k_factor is not None:
        setting += f", K {stats.k_factor:.4g}" + (" (profile, per resource element)" if stats.kind == "tdl" else "")
    if stats.coherence_symbols is not None:
        unit, draws = ("channel uses", "channel matrices") if stats.kind == "mimo" else ("symbols", "independent gains")
        setting += f", coherence {stats.coherence_symbols} {unit} ({stats.fading_draws:,} {draws})"
    elif stats.kind == "tdl":
        setting += f", {stats.fading_draws:,} one-slot links"
    return setting


def _row(label: str, value, spec: str) -> str:
    theory = "n/a" if value.theory is None else format(value.theory, spec)
    return f"{label:<28} {value.measured:>10{spec}} {theory:>10}"


def format_stats(stats) -> str:
    """A measured-vs-theory table of a :class:`shared.channel.diagnostics.ChannelStats`."""
    lines = [f"{_setting(stats)}; {stats.symbols:,} symbols per modulation, seed {stats.seed}",
             f"{'':<28} {'measured':>10} {'theory':>10}",
             _row("realized SNR (dB)", stats.realized_snr_db, ".3f")]
    for key, value in (stats.fading or {}).items():
        lines.append(_row(LABELS[key], value, ".4f"))
    for name, result in stats.ber.items():
        lines.append(_row("BER " + name, result.ber, ".3e") + f"   {result.errors:,} errors in {result.bits:,} bits")
    return "\n".join(lines)


DETECTOR_LABELS = {"zf": "ZF", "mmse": "MMSE", "mmse_sic": "MMSE-SIC"}


def format_multiuser_stats(stats) -> str:
    """A per-user measured-vs-theory table of a :class:`shared.channel.multiuser_stats.MultiUserStats`."""
    lines = [f"mu_mimo {stats.users} users x {stats.rx_antennas} antennas, Es/N0 {stats.snr_db:g} dB per user, "
             f"coherence {stats.coherence_symbols} channel uses; {stats.symbols:,} symbols per user and "
             f"modulation, seed {stats.seed}"]
    detectors = list(stats.ber)
    header = f"{'':<24}" + "".join(f" {DETECTOR_LABELS[d]:>10}" for d in detectors)
    lines.append(header + (f" {'ZF theory':>10}" if "zf" in detectors else ""))
    for name in next(iter(stats.ber.values())):
        for user, gain in enumerate(stats.user_gains_db):
            row = [stats.ber[d][name][user].ber for d in detectors]
            theory = f" {row[0].theory:>10.3e}" if "zf" in detectors else ""
            lines.append(f"{f'BER {name} user {user} ({gain:+g} dB)':<24}"
                         + "".join(f" {b.measured:>10.3e}" for b in row) + theory)
    return "\n".join(lines)


def run_channel_stats(args) -> int:
    from shared.channel.diagnostics import plot_constellations, simulate, summarize

    try:
        spec = spec_from_args(args, args.channel, args.snr, args.seed)
    except ValueError as exc:
        print(f"semcom channel-stats: {exc}", file=sys.stderr)
        return 2
    if args.channel in MULTIUSER_KIND_NAMES:
        from shared.channel.multiuser_stats import simulate_multiuser

        stats = simulate_multiuser(spec, args.symbols, tuple(dict.fromkeys(args.modulation)))
        print(json.dumps(stats.to_dict(), indent=2) if args.json else format_multiuser_stats(stats))
        return 0
    sim = simulate(spec, args.symbols, tuple(dict.fromkeys(args.modulation)))
    stats = summarize(sim)
    plot = plot_constellations(sim, args.plot or Path(f"channel_stats_{args.channel}_{args.snr:g}dB.png"))
    print(json.dumps(stats.to_dict() | {"plot": str(plot)}, indent=2) if args.json else format_stats(stats))
    if not args.json:
        print(f"constellations: {plot}", file=sys.stderr)
    return 0
