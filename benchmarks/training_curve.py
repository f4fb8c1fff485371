"""Validation PSNR against training minutes (log axis) for training runs, and what a log fit
extrapolates to: how many more minutes a given gain would take at the runs' rate.

    python -m benchmarks.training_curve runs/rate_adaptive_full_2/log.csv \\
        docs/benchmarks/training_logs/rate_adaptive_continued_s15.csv \\
        --metric psnr_k16_snr10 psnr_k32_snr10 --gain 1.0 1.7 --out docs/benchmarks/issue16_training_curve.png

Each input is a training loop's ``log.csv`` (:mod:`training.loop`: ``minutes`` and the validation
columns of the script, e.g. ``psnr_k16_snr10`` = the JSCC part of CBR 1/48 at 10 dB) or a CSV of
the same columns. Per run and metric the gain over the run's first validated value is fitted
as ``gain = a + b ln(x)`` (least squares over the rows from ``--fit-from`` on) and
the x (minutes or steps, ``--axis``) at which the fit reaches each ``--gain`` (dB) is printed as a Markdown table. A
log fit is the optimistic reading of a curve that flattens; it is an extrapolation, not a
measurement.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from shared.imageio import save_figure


def read_curve(path: Path, metric: str, axis: str = "minutes") -> list[tuple[float, float]]:
    """(``axis`` value, metric value) rows of ``metric`` in a training log, validated rows only,
    sorted by ``axis`` (``minutes`` or ``step``)."""
    rows = [row for row in csv.DictReader(path.open()) if row.get(metric) not in (None, "")]
    return sorted((max(float(row[axis]), 1.0), float(row[metric])) for row in rows)


def log_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``value = a + b ln(x)`` over ``points`` (at least two)."""
    xs = [math.log(t) for t, _ in points]
    ys = [v for _, v in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else 0.0
    return mean_y - slope * mean_x, slope


def reach(gain: float, fit: tuple[float, float]) -> float:
    """The x at which ``a + b ln(x)`` reaches ``gain`` (inf if it never rises)."""
    a, b = fit
    return math.exp((gain - a) / b) if b > 0 else math.inf


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", type=Path, nargs="+", help="log.csv files of training runs (label = folder or stem)")
    parser.add_argument("--metric", nargs="+", default=["psnr_k16_snr10", "psnr_k32_snr10"],
                        help="validation columns to draw and fit")
    parser.add_argument("--gain", type=float, nargs="+", default=[1.0, 1.7],
                        help="gains over the run's first validation (dB) to extrapolate to")
    parser.add_argument("--axis", choices=["minutes", "step"], default="minutes",
                        help="x axis: wall-clock minutes of the run (machine-dependent) or optimizer steps")
    parser.add_argument("--fit-from", type=float, default=10.0, help="fit the rows from this x on")
    parser.add_argument("--out", type=Path, help="PNG to write (one panel per metric)")
    args = parser.parse_args(argv)

    print("| run | metric | first | last (at) | gain | fit b (dB per e-fold) | "
          + " | ".join(f"{args.axis} to +{g:g} dB" for g in args.gain) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(args.gain))
    curves = {}
    for path in args.logs:
        label = path.parent.name if path.name == "log.csv" else path.stem
        for metric in args.metric:
            points = read_curve(path, metric, args.axis)
            if len(points) < 2:
                print(f"| {label} | {metric} | too few validated rows | | | |" + " |" * len(args.gain))
                continue
            start = points[0][1]
            gains = [(t, v - start) for t, v in points]
            fit = log_fit([(t, g) for t, g in gains if t >= args.fit_from] or gains)
            curves[(label, metric)] = points
            extrapolated = " | ".join(f"{reach(g, fit):,.0f}" for g in args.gain)
            print(f"| {label} | {metric} | {start:.2f} | {points[-1][1]:.2f} ({points[-1][0]:.0f}) | "
                  f"{points[-1][1] - start:+.2f} | {fit[1]:.3f} | {extrapolated} |")
    if args.out and curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(args.metric), figsize=(5.2 * len(args.metric), 3.8), squeeze=False)
        for column, metric in enumerate(args.metric):
            ax = axes[0][column]
            for (label, name), points in curves.items():
                if name == metric:
                    ax.plot(*zip(*points), "-o", markersize=3, label=label)
            ax.set_xscale("log")
            ax.set_xlabel(f"training {args.axis} of the run (log)")
            ax.set_ylabel(f"validation PSNR (dB): {metric}")
            ax.grid(True, which="both", alpha=0.4)
            ax.legend(fontsize=7)
        fig.tight_layout()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, args.out, dpi=110)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
