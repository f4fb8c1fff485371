"""Quality versus CBR from a `semcom eval` results.csv of the baseline and the VAE up-samplers:
one panel per channel and metric, one line per system family (the baseline at its served
CBRs; the VAE up-sampler at r = 1, 2, 4: the baseline at its base rate 1/24, then
deepjscc-vae/...x2 at 1/48 and ...x4 at 1/96; the baseline truncated to an untrained rate from
:mod:`benchmarks.truncated_baseline`, if given), one colour per SNR; means over the images.

    python -m benchmarks.vae_upsampler_plot runs/eval_vae/compression/results.csv \\
        runs/eval_vae/truncated/results.csv \\
        --snr 0 10 20 --out docs/benchmarks/issue8_vae_upsampler_psnr_vs_cbr.png
"""

from __future__ import annotations

import argparse
import csv
import statistics
from fractions import Fraction
from pathlib import Path

from shared.imageio import save_figure


def curves(rows: list[dict], metric: str) -> dict[tuple, list[tuple[float, float]]]:
    """(family, channel, SNR) -> [(CBR, mean metric)] sorted by CBR; the VAE family includes the
    baseline at 1/24 (r = 1: no extra compression)."""
    cells: dict[tuple, list[float]] = {}
    for row in rows:
        system, cbr = row["system"], Fraction(row["cbr"])
        families = {"deepjscc": ["baseline (served rates)"],
                    "deepjscc-truncated": ["baseline truncated (untrained rate)"]}.get(system, [])
        if system.startswith("deepjscc-vae/") or (system == "deepjscc" and cbr == Fraction(1, 24)):
            families.append("baseline 1/24 + F_d / VAE F_u (r = 1, 2, 4)")
        for family in families:
            cells.setdefault((family, row["channel"], float(row["snr_db"]), cbr), []).append(float(row[metric]))
    result: dict[tuple, list[tuple[float, float]]] = {}
    for (family, channel, snr, cbr), values in sorted(cells.items(), key=lambda item: item[0][3]):
        result.setdefault((family, channel, snr), []).append((float(cbr), statistics.fmean(values)))
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", help="results.csv files of semcom eval")
    parser.add_argument("--snr", type=float, nargs="+", default=[0.0, 10.0, 20.0], help="SNRs to draw (dB)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for path in args.results for row in csv.DictReader(path.open()) if "@" not in row["system"]]
    channels = list(dict.fromkeys(row["channel"] for row in rows))
    metrics = (("psnr", "PSNR (dB)"), ("ms_ssim", "MS-SSIM"))
    fig, axes = plt.subplots(len(metrics), len(channels), figsize=(4.8 * len(channels), 3.6 * len(metrics)),
                             squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for column, channel in enumerate(channels):
        for line, (metric, label) in enumerate(metrics):
            ax = axes[line][column]
            for (family, kind, snr), points in curves(rows, metric).items():
                if kind != channel or snr not in args.snr:
                    continue
                style = {"baseline (served rates)": "--s", "baseline truncated (untrained rate)": "x"}.get(family, "-o")
                ax.plot(*zip(*points), style, color=colours[args.snr.index(snr) % len(colours)],
                        label=f"{family}, {snr:g} dB")
            ax.set_xscale("log", base=2)
            ax.set_xticks([1 / 96, 1 / 48, 1 / 24], ["1/96", "1/48", "1/24"])
            ax.set_xlabel("CBR (complex channel uses per real source value)")
            ax.set_ylabel(label)
            ax.set_title(f"{channel}: {label}")
            ax.grid(True, alpha=0.4)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
