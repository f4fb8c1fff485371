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

# The same as shared.channel.diagnostics.KINDS and MODULATIONS (checked by tests), spelled out
# here so that registering the command does not import the diagnostics.
KIND_NAMES = ("awgn", "rayleigh", "rician")
MODULATION_NAMES = ("qpsk", "16qam")

DESCRIPTION = """\
Send random bits as Gray-labelled unit-energy QPSK / 16-QAM through the channel model the
emulator uses (Es/N0 per complex symbol, E|h|^2 = 1), equalize with the true gains
(zero-forcing), decide each symbol, and print what was measured beside theory: realized SNR,
fading-gain statistics (mean and variance of |h|^2, Rician K by moments, fraction of deep
fades |h|^2 < 0.1) and uncoded BER (closed forms for AWGN and Rayleigh, numerical integration
for Rician). Also draws the constellations before and after equalization to a PNG.

example:
  semcom channel-stats --channel rayleigh --snr 10
  semcom channel-stats --channel rician --k-factor 3 --coherence 1 --snr 15 --modulation 16qam --json"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``channel-stats`` on an ``add_subparsers()`` object; returns its parser."""
    parser = subparsers.add_parser("channel-stats", help="uncoded BER and fading statistics of a channel beside theory",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channel", required=True, choices=KIND_NAMES, metavar="KIND",
                        help=f"channel kind: {', '.join(KIND_NAMES)}")
    parser.add_argument("--snr", type=argtypes.finite, required=True, metavar="DB", help="Es/N0 per complex symbol in dB")
    parser.add_argument("--k-factor", type=argtypes.finite, default=0.0, metavar="K",
                        help="Rician K (linear), rician only (default 0)")
    parser.add_argument("--coherence", type=int, default=64, metavar="N",
                        help="block-fading length in symbols; 1 is fast fading (default 64)")
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


def format_stats(stats) -> str:
    """A measured-vs-theory table of a :class:`shared.channel.diagnostics.ChannelStats`."""
    setting = f"{stats.kind}, Es/N0 {stats.snr_db:g} dB (N0 {stats.noise_variance:.4g})"
    if stats.k_factor is not None:
        setting += f", K {stats.k_factor:g}"
    if stats.coherence_symbols is not None:
        setting += f", coherence {stats.coherence_symbols} symbols ({stats.fading_draws:,} independent gains)"
    lines = [f"{setting}; {stats.symbols:,} symbols per modulation, seed {stats.seed}",
             f"{'':<26} {'measured':>10} {'theory':>10}",
             f"{'realized SNR (dB)':<26} {stats.realized_snr_db.measured:>10.3f} {stats.realized_snr_db.theory:>10.3f}"]
    labels = {"mean_power": "mean |h|^2", "power_variance": "var |h|^2", "k_factor": "Rician K (moments)",
              "deep_fade_fraction": "deep fades |h|^2 < 0.1"}
    for key, value in (stats.fading or {}).items():
        lines.append(f"{labels[key]:<26} {value.measured:>10.4f} {value.theory:>10.4f}")
    for name, result in stats.ber.items():
        lines.append(f"{'BER ' + name:<26} {result.ber.measured:>10.3e} {result.ber.theory:>10.3e}"
                     f"   {result.errors:,} errors in {result.bits:,} bits")
    return "\n".join(lines)


def run_channel_stats(args) -> int:
    from shared.channel.diagnostics import plot_constellations, simulate, summarize

    spec = ChannelSpec(kind=args.channel, snr_db=args.snr, k_factor=args.k_factor,
                       coherence_symbols=args.coherence, seed=args.seed)
    try:
        spec.validate()
    except ValueError as exc:
        print(f"semcom channel-stats: {exc}", file=sys.stderr)
        return 2
    sim = simulate(spec, args.symbols, tuple(dict.fromkeys(args.modulation)))
    stats = summarize(sim)
    plot = plot_constellations(sim, args.plot or Path(f"channel_stats_{args.channel}_{args.snr:g}dB.png"))
    print(json.dumps(stats.to_dict() | {"plot": str(plot)}, indent=2) if args.json else format_stats(stats))
    if not args.json:
        print(f"constellations: {plot}", file=sys.stderr)
    return 0
