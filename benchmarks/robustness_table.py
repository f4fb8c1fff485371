"""Paper 003 Table I's layout from a `semcom eval --perturb` results.csv: one column per
perturbation (clean, pgd:LEVEL ..., noise:SNR ...), two rows (PSNR dB, MS-SSIM) per system,
channel, CBR and channel SNR; means over the images of each cell. ``--plot`` also draws mean
PSNR versus PGD level and versus input-noise SNR, one line per system and setting.

    python -m benchmarks.robustness_table runs/eval_robust/results.csv --plot robust.png
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from shared.imageio import save_figure


def perturbation_order(spec: str) -> tuple:
    """clean first, then pgd by level, then noise by SNR."""
    kind, _, level = spec.partition(":")
    return ({"clean": 0, "pgd": 1, "noise": 2}[kind], float(level.split(":")[0] or 0))


def cell_values(rows: list[dict]) -> dict[tuple, list[tuple[float, float]]]:
    """(system, channel, CBR, SNR, perturbation or 'clean') -> [(PSNR, MS-SSIM) per image]."""
    cells: dict[tuple, list[tuple[float, float]]] = {}
    for row in rows:
        system, _, spec = row["system"].partition("@")
        key = (system, row["channel"], row["cbr"], float(row["snr_db"]), spec or "clean")
        cells.setdefault(key, []).append((float(row["psnr"]), float(row["ms_ssim"])))
    return cells


def robustness_table(rows: list[dict]) -> str:
    cells = cell_values(rows)
    specs = sorted({key[-1] for key in cells}, key=perturbation_order)
    settings = list(dict.fromkeys(key[:-1] for key in cells))
    lines = ["| system | channel | CBR | SNR | metric | " + " | ".join(specs) + " |",
             "|---|---|---|---|---|" + "---|" * len(specs)]
    for system, channel, cbr, snr in settings:
        for index, metric in enumerate(("PSNR (dB)", "MS-SSIM")):
            values = [cells.get((system, channel, cbr, snr, spec)) for spec in specs]
            text = ["" if v is None else f"{statistics.fmean(p[index] for p in v):.{2 if index == 0 else 3}f}"
                    for v in values]
            lines.append(f"| {system} | {channel} | {cbr} | {snr:g} dB | {metric} | " + " | ".join(text) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Mean PSNR versus PGD level (left) and input-noise SNR (right); the clean value dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = cell_values(rows)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for index, setting in enumerate(dict.fromkeys(key[:-1] for key in cells)):
        label = f"{setting[0]} ({setting[1]} {setting[3]:g} dB, CBR {setting[2]})"
        color = f"C{index}"
        for ax, kind in zip(axes, ("pgd", "noise")):
            specs = sorted((k[-1] for k in cells if k[:-1] == setting and k[-1].startswith(kind)),
                           key=perturbation_order)
            levels = [perturbation_order(spec)[1] for spec in specs]
            ax.plot(levels, [statistics.fmean(p[0] for p in cells[(*setting, spec)]) for spec in specs],
                    marker="o", color=color, label=label)
            if (*setting, "clean") in cells:
                ax.axhline(statistics.fmean(p[0] for p in cells[(*setting, "clean")]), color=color, ls="--", lw=0.8)
    axes[0].set_xlabel("PGD level ||delta||_2 / sqrt(HW)")
    axes[1].set_xlabel("input image SNR (dB)")
    for ax in axes:
        ax.set_ylabel("PSNR vs clean image (dB)")
        ax.grid(True, alpha=0.4)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="results.csv of a semcom eval --perturb run")
    parser.add_argument("--plot", type=Path, help="also write the PSNR-versus-perturbation plot here")
    args = parser.parse_args(argv)
    with args.results.open() as f:
        rows = list(csv.DictReader(f))
    print(robustness_table(rows), end="")
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
