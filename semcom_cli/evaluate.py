"""`semcom eval`: every system through the same channel code, on an image folder.

For each image x channel x CBR x SNR x system the image is sent and scored: PSNR and MS-SSIM
of the 8-bit output against the original, and the perceptual metrics of shared/perceptual.py:
VIF (torchmetrics; images of at least 41 x 41 pixels), LPIPS and DISTS where their networks are
in --perceptual-weights (else skipped, with a note in summary.md). Channel draws are seeded from
(seed, image, SNR, channel), the same for every system, so systems meet the same noise and fades.

Writes to --out:
  results.csv        one row per image and setting; the run resumes from it (rows already
                     there are skipped), so an interrupted run goes on where it stopped
  summary.md         mean PSNR / MS-SSIM per system, channel and CBR versus SNR, a table per
                     perceptual metric, with the command, date and machine
  psnr_vs_snr.png, msssim_vs_snr.png, vif_vs_snr.png (lpips_vs_snr.png, dists_vs_snr.png)
                     one panel per channel x CBR, one line per system
  perception_distortion_vif.png (_lpips, _dists)   PSNR against the perceptual metric, one
                     point per system, one panel per channel x CBR (rows) and SNR (columns)
  grid.png           the first image's reconstructions, systems x SNRs (first channel, CBR)

Systems, all at the same target CBR:
  adaptive       the rate-adaptive codec: hyperprior symbol allocation per token, side
                 information over a protected LDPC side channel, counted in the CBR; once per
                 --modes entry: jscc (its decoder alone), teacher[:N] (diffusion ODE from the
                 channel's t_m), consistency[:s] (the distilled 1-step student),
                 generative[-p][:steps] (the conditional diffusion image decoder, distortion-
                 or perception-oriented), finetune (the semantic fine-tuning module of paper
                 002 sec. III-D), labelled adaptive, adaptive/teacher:N ...
  deepjscc       the fixed-rate SNR-adaptive DeepJSCC baseline (shipped weights)
  deepjscc-vae   the baseline at its base rate (k0 = 32 symbols per token) with a trained
                 down-sampler before the channel (k0/r symbols per token) and the SNR-conditioned
                 VAE up-sampler after it, the baseline decoder frozen (paper 001 sec. IV); one
                 system per --vae-weights file, labelled deepjscc-vae/<file stem> (shipped:
                 vae_upsampler_x2 at CBR 1/48, vae_upsampler_x4 at CBR 1/96)
  jpeg-ldpc      JPEG (Pillow) + 5G NR LDPC + QAM (Sionna), the best modulation and code
  avif-ldpc      rate for the nominal SNR (AWGN thresholds measured on this link), decoded
                 through the same channel: one lost codeword loses the file (the cliff)
  avif-capacity  the separation bound: AVIF at the AWGN capacity budget N log2(1+SNR) bits
  adaptive+adapter  with --adapt IMAGE ...: the rate-adaptive codec (jscc mode) through one
                 out-of-distribution latent adapter g_w(z) = W z + b (paper 003 sec. III-D)
                 learned from those images before the run (shared.adaptation.learning.learn_adapter,
                 over this run's channels and CBRs, SNR 0-20 dB); listed next to adaptive
  adaptive-robust  the rate-adaptive codec with the robust transmitter (--robust-weights,
                 paper 003 sec. III-C: g_a and f_e fine-tuned against PGD, receiver unchanged),
                 jscc decoder mode

Fixed-rate systems (deepjscc, deepjscc-vae/...) serve only their own CBRs: where one does not
serve a --cbr it is skipped there, with a note on stderr and under summary.md's table; a CBR
that no system serves is an error.

Perturbed input (--perturb SPEC ...): every system is also run on a perturbed copy of each
image, labelled <system>@<spec> (adaptive@pgd:0.3, jpeg-ldpc@noise:10), and scored against
the CLEAN original:
  pgd:LEVEL[:STEPS]  white-box semantic error (paper 003 eq. 7): STEPS (default 5) PGD steps
                 maximizing the change of the system's own reconstruction within an L2 ball of
                 LEVEL * sqrt(H W) on [0, 1] pixels; the attack runs the codec's encoder and
                 decoder without channel noise at the request's SNR and mean symbols per token
                 from the CBR. Only adaptive (jscc mode) and adaptive-robust have a gradient.
  noise:SNR      Gaussian input noise at this image SNR (dB), any system
The perturbation is drawn from (seed, image, SNR, channel, spec), so a resumed run redraws it.

Sharded runs (a cluster's array job): --shard K/N runs the K-th of N disjoint parts of the grid
into its own --out (results.csv and shard.json; no summary), and
  semcom eval merge DIR1 DIR2 ... --out DIR
joins the N folders into the summary.md, plots and grid.png a single run writes (the same
code writes them; rows in the single run's order). See semcom_cli/eval_shards.py.

--data defaults to ../shared/data/kodak beside the checkout (the 24 Kodak images) and, where
that folder is absent, to the three Kodak photos shipped in samples/ (with a note).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import shlex
import shutil
import statistics
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from shared.channel import ChannelSpec
from shared.phy.symbols import parse_cbr
from shared.decoding import mode_forms, mode_weights, parse_mode
from shared.config import (BASELINE_WEIGHTS, KODAK_IMAGES, RATE_ADAPTIVE_WEIGHTS, ROBUST_WEIGHTS, SAMPLE_IMAGES,
                           SemcomConfig, load_config)
from shared.eval.systems import (System, capacity_system, channel_seed, codec_system, perturbed_system,
                                 separation_system)
from shared.config import VAE_UPSAMPLER_WEIGHTS
from shared.eval.systems import serves
from shared.eval.perturbation import parse_perturbation
from shared.imageio import load_image_file, save_figure
from shared.models.runtime import RUNTIMES
from shared.perceptual import LOWER_IS_BETTER, PERCEPTUAL_METRICS, PerceptualScorer, load_perceptual
from shared.quality import ms_ssim, psnr

from . import argtypes, eval_shards
from .channel_args import add_channel_options, add_kind_option, spec_from_args

FIELDS = ("system", "channel", "cbr", "snr_db", "image", "achieved_cbr", "psnr", "ms_ssim", *PERCEPTUAL_METRICS, "info")
METRIC_LABELS = {"psnr": "PSNR (dB)", "ms_ssim": "MS-SSIM",
                 **{name: f"{name.upper()} ({'lower' if name in LOWER_IS_BETTER else 'higher'} is better)"
                    for name in PERCEPTUAL_METRICS}}
SYSTEMS = ("adaptive", "deepjscc", "jpeg-ldpc", "avif-ldpc", "avif-capacity", "adaptive-robust",
           "deepjscc-vae")
ADAPTER_SYSTEM = "adaptive+adapter"


def base_system_names(args) -> list[str]:
    """The unperturbed systems' labels: each of ``--systems``, the adaptive codec once per
    ``--modes`` entry (``adaptive`` for jscc, ``adaptive/teacher:25`` ...)."""
    names = []
    for name in args.systems:
        if name == "adaptive":
            names += ["adaptive" if mode == "jscc" else f"adaptive/{mode}" for mode in args.modes]
            names += [ADAPTER_SYSTEM] if args.adapt else []
        elif name == "deepjscc-vae":
            names += list(vae_weights(args))
        else:
            names.append(name)
    return names


def vae_weights(args) -> dict[str, str]:
    """``deepjscc-vae/<file stem>`` -> weights file, one per ``--vae-weights`` entry."""
    return {f"deepjscc-vae/{Path(path).stem}": path for path in args.vae_weights}


def system_names(args) -> list[str]:
    """Every label of the run: each base system, then it once per ``--perturb`` spec
    (``adaptive``, ``adaptive@pgd:0.3`` ...)."""
    return [label for name in base_system_names(args) for label in [name, *(f"{name}@{p}" for p in args.perturb)]]


def learned_adapter(args, codec):
    """The latent adapter of ``--adapt``, learned on the codec (``ValueError`` when an adaptation
    image is among the evaluated ones)."""
    from shared.adaptation.learning import learn_adapter
    from shared.adaptation.options import ADAPTER_CHANNEL_KINDS, AdaptationOptions
    from training.data import list_images

    evaluated = {path.resolve() for path in list_images(args.data)[: args.limit]}
    if any(Path(path).resolve() in evaluated for path in args.adapt):
        raise ValueError("the --adapt images must not be among the evaluated ones (--data)")
    kinds = tuple(kind for kind in args.channel if kind in ADAPTER_CHANNEL_KINDS) or ADAPTER_CHANNEL_KINDS
    options = AdaptationOptions(kinds=kinds, cbrs=tuple(args.cbr), steps=args.adapt_steps)
    result = learn_adapter(codec, [load_image_file(path) for path in args.adapt], options)
    print(f"adapter from {len(args.adapt)} image(s), {options.steps} steps, {result.seconds:.0f} s: PSNR on them "
          f"{result.psnr_before_db:.2f} -> {result.psnr_after_db:.2f} dB", file=sys.stderr)
    return result.adapter


def build_systems(args, device: str) -> dict[str, System]:
    """Every system of the run; ``NotImplementedError`` for a mode whose weights do not load."""
    from shared.codecs import codec_for
    from shared.models.io import load_model
    from shared.models.runtime import resolve_runtime, use_runtime
    from shared.serving.service import load_diffusion_decoders

    runtime = resolve_runtime(args.runtime, device)

    def load_served(path, device):
        """The model at ``path`` with its networks on the run's ``--runtime``."""
        return use_runtime(load_model(path, device), runtime)

    modes = [parse_mode(mode) for mode in args.modes] if "adaptive" in args.systems else []
    if modes:
        codec = load_served(args.adaptive_weights, device)
        config = load_config(device=device, **{w.config_field: getattr(args, w.config_field)
                                               for w in mode_weights().values()})
        decoders = load_diffusion_decoders(config, codec_for(codec)) if any(m.diffusion for m in modes) else None
        for mode in modes:
            if mode.diffusion:
                decoders.model_for(mode)

    attack_forwards = {}  # label -> the white-box attacker's differentiable model of the system

    def adaptive(label: str) -> System:
        if label == "adaptive":
            attack_forwards[label] = codec_for(codec).forward
        return codec_system(codec_for(codec), parse_mode(label.partition("/")[2]), decoders)

    def adaptive_robust() -> System:
        robust = codec_for(load_served(args.robust_weights, device))
        attack_forwards["adaptive-robust"] = robust.forward
        return codec_system(robust)

    factories = {
        "deepjscc": lambda: codec_system(codec_for(load_served(args.weights, device))),
        "jpeg-ldpc": lambda: separation_system("jpeg"),
        "avif-ldpc": lambda: separation_system("avif"),
        "avif-capacity": lambda: capacity_system("avif"),
        "adaptive-robust": adaptive_robust,
        ADAPTER_SYSTEM: lambda: codec_system(codec_for(codec), adapter=learned_adapter(args, codec)),
        **{label: (lambda path=path: codec_system(codec_for(load_served(path, device))))
           for label, path in vae_weights(args).items()},
    }
    systems = {}
    for name in base_system_names(args):
        system = adaptive(name) if name == "adaptive" or name.startswith("adaptive/") else factories[name]()
        systems[name] = system
        for perturbation in args.perturb:
            if perturbation.needs_gradient and name not in attack_forwards:
                raise ValueError(f"--perturb {perturbation} is a white-box attack on the system's encoder and "
                                 f"decoder, and {name} has no gradient here (pgd works on adaptive in jscc mode "
                                 f"and adaptive-robust; noise:SNR works on every system)")
            systems[f"{name}@{perturbation}"] = perturbed_system(system, perturbation, attack_forwards.get(name))
    return systems


def channel_spec(args, kind: str, snr: float, seed: int) -> ChannelSpec:
    """One measurement's channel: ``kind`` with this run's channel options (K, coherence, MIMO, TDL, CSI)."""
    return spec_from_args(args, kind, snr, seed)


def channel_label(args, kind: str) -> str:
    return {"rician": f"rician K={args.k_factor:g}", "mimo": f"mimo {args.antennas[0]}x{args.antennas[1]} {args.mimo_scheme}",
            "tdl": f"TDL-{args.tdl_model}"}.get(kind, kind)


def read_done(path: Path) -> list[dict]:
    """The rows of a results.csv (none where absent), metrics as floats (None: not computed);
    ``ValueError`` for a file of other columns (an older run's: evaluate into a new --out)."""
    if not path.is_file():
        return []
    with path.open() as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ValueError(f"{path} has the columns {reader.fieldnames}, not {list(FIELDS)}: it comes from "
                             f"another version of semcom eval; evaluate into a new --out")
        return [{**row, "snr_db": float(row["snr_db"]),
                 **{metric: float(row[metric]) if row[metric] else None for metric in METRIC_LABELS}}
                for row in reader]


def row_key(row: dict) -> tuple:
    return row["system"], row["channel"], row["cbr"], float(row["snr_db"]), row["image"]


def setting_key(setting: tuple) -> tuple:
    """The :func:`row_key` of a (file, kind, CBR, SNR, system) setting's row."""
    file, kind, cbr, snr, name = setting
    return name, kind, str(cbr), float(snr), file.name


def grid_settings(args, systems: dict[str, System], files: list[Path]) -> list[tuple]:
    """Every measurement of the run as (file, channel kind, CBR, SNR, system), in the order a
    single run makes them (a fixed-rate system only at its own CBRs)."""
    return [(f, kind, cbr, snr, name) for f in files for kind in args.channel for cbr in args.cbr
            for snr in args.snr for name in systems if serves(systems[name], cbr)]


def grid_order(args, image_names: list[str]) -> dict[tuple, int]:
    """Each row key (:func:`row_key`) of the run's grid -> its position in the measuring order
    of :func:`grid_settings`."""
    keys = [(name, kind, str(cbr), float(snr), image) for image in image_names for kind in args.channel
            for cbr in args.cbr for snr in args.snr for name in system_names(args)]
    return {key: position for position, key in enumerate(keys)}


def in_grid_order(rows: list[dict], args, image_names: list[str]) -> list[dict]:
    """The rows of this run's grid (a resumed results.csv may hold others), in measuring order."""
    order = grid_order(args, image_names)
    return sorted((row for row in rows if row_key(row) in order), key=lambda row: order[row_key(row)])


def scores(image: torch.Tensor, estimate: torch.Tensor, scorer: PerceptualScorer) -> dict[str, float | None]:
    """Every metric of a results.csv row for one (3, H, W) output in [0, 1] against its original
    (None where not computed: a learned metric without its network, VIF on a side under 41)."""
    reference, estimate = image[None], estimate[None]
    perceptual = scorer(reference, estimate)
    return {"psnr": round(float(psnr(reference, estimate)[0]), 4),
            "ms_ssim": round(float(ms_ssim(reference, estimate)[0]), 5),
            **{name: round(float(perceptual[name][0]), 5) if name in perceptual else None
               for name in PERCEPTUAL_METRICS}}


def evaluate(args, systems: dict[str, System], settings: list[tuple], out: Path,
             scorer: PerceptualScorer) -> list[dict]:
    """Run every measurement of ``settings`` (:func:`grid_settings`) missing from results.csv,
    appending rows to it as they complete."""
    path = out / "results.csv"
    rows = read_done(path)
    done = {row_key(row) for row in rows}
    todo = [s for s in settings if setting_key(s) not in done]
    new_file = not path.is_file()
    with path.open("a", newline="") as f, tqdm(total=len(settings), initial=len(settings) - len(todo),
                                               desc="eval", unit="run") as bar:
        writer = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        if new_file:
            writer.writeheader()
        image_cache: dict[Path, torch.Tensor] = {}
        for file, kind, cbr, snr, name in todo:
            image = image_cache.setdefault(file, load_image_file(file))
            spec = channel_spec(args, kind, snr, channel_seed(args.seed, file.name, snr, kind))
            output = systems[name](image, spec, cbr)
            row = {"system": name, "channel": kind, "cbr": str(cbr), "snr_db": float(snr), "image": file.name,
                   "achieved_cbr": round(output.achieved_cbr, 6), **scores(image, output.image, scorer),
                   "info": " ".join(f"{k}={v}" for k, v in output.info.items())}
            writer.writerow(row)
            f.flush()
            rows.append(row)
            bar.update(1)
    return rows


def means(rows: list[dict], metric: str) -> dict[tuple, float]:
    """(system, channel, CBR, SNR) -> the mean of ``metric`` over the rows that have it."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        if row[metric] is not None:
            groups.setdefault((row["system"], row["channel"], row["cbr"], float(row["snr_db"])), []).append(row[metric])
    return {key: statistics.fmean(values) for key, values in groups.items()}


def measured_perceptual(rows: list[dict]) -> list[str]:
    """The perceptual metrics that ``rows`` have values of."""
    return [name for name in PERCEPTUAL_METRICS if any(row[name] is not None for row in rows)]


def table(args, values: list[dict[tuple, float]], cell: str) -> list[str]:
    """A markdown table, one row per system, channel and CBR, one column per SNR; each cell is
    ``cell`` formatted with the ``values`` (metric means) of that setting."""
    lines = ["| system | channel | CBR | " + " | ".join(f"{snr:g} dB" for snr in args.snr) + " |",
             "|---|---|---|" + "---|" * len(args.snr)]
    for kind in args.channel:
        for cbr in map(str, args.cbr):
            for name in system_names(args):
                if (name, kind, cbr, float(args.snr[0])) not in values[0]:
                    continue  # a CBR this fixed-rate system does not serve
                cells = [cell.format(*(v[name, kind, cbr, float(snr)] for v in values)) for snr in args.snr]
                lines.append(f"| {name} | {channel_label(args, kind)} | {cbr} | " + " | ".join(cells) + " |")
    return lines


def summary(rows: list[dict], args, n_images: int, command: str) -> str:
    lines = [f"Mean PSNR (dB) / MS-SSIM over {n_images} images of {args.data} (8-bit outputs); SNR = Es/N0 per "
             f"complex symbol; fading blocks of {args.coherence} symbols (MIMO: channel uses), perfect CSI.", "",
             *table(args, [means(rows, "psnr"), means(rows, "ms_ssim")], "{:.2f} / {:.3f}")]
    for name in measured_perceptual(rows):
        lines += ["", f"Mean {METRIC_LABELS[name]} (shared/perceptual.py):", "",
                  *table(args, [means(rows, name)], "{:.4f}")]
    lines += ["", f"Command: `{command}`; {datetime.date.today()}; {platform.machine()}, {os.cpu_count()} CPU cores, "
              f"torch {torch.__version__}, device {load_config(device=args.device).resolve_device()}."]
    return "\n".join(lines) + "\n"


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(rows: list[dict], args, metric: str, path: Path) -> None:
    """``metric`` versus SNR: one panel per channel x CBR, one line per system."""
    plt = pyplot()
    label = METRIC_LABELS[metric]
    values = means(rows, metric)
    panels = [(kind, str(cbr)) for kind in args.channel for cbr in args.cbr]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (kind, cbr) in zip(axes[0], panels):
        for name in system_names(args):
            if (name, kind, cbr, float(args.snr[0])) not in values:
                continue  # a CBR this fixed-rate system does not serve
            ax.plot(args.snr, [values[name, kind, cbr, float(snr)] for snr in args.snr], marker="o", label=name)
        ax.set_title(f"{channel_label(args, kind)}, CBR {cbr}")
        ax.set_xlabel("SNR, Es/N0 (dB)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.4)
        ax.ticklabel_format(axis="y", useOffset=False)
    axes[0][0].legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def plot_perception_distortion(rows: list[dict], args, metric: str, path: Path) -> None:
    """PSNR against the perceptual ``metric``, one point per system: one panel per channel x CBR
    (rows) and SNR (columns)."""
    plt = pyplot()
    distortion, perception = means(rows, "psnr"), means(rows, metric)
    panels = [(kind, str(cbr)) for kind in args.channel for cbr in args.cbr]
    fig, axes = plt.subplots(len(panels), len(args.snr), figsize=(3.6 * len(args.snr), 3.3 * len(panels)),
                             squeeze=False)
    for ax_row, (kind, cbr) in zip(axes, panels):
        for ax, snr in zip(ax_row, map(float, args.snr)):
            for name in system_names(args):
                if (name, kind, cbr, snr) in perception:
                    ax.scatter(perception[name, kind, cbr, snr], distortion[name, kind, cbr, snr], label=name)
            ax.set_title(f"{channel_label(args, kind)}, CBR {cbr}, {snr:g} dB", fontsize=9)
            ax.set_xlabel(METRIC_LABELS[metric])
            ax.set_ylabel(METRIC_LABELS["psnr"])
            ax.grid(True, alpha=0.4)
            ax.ticklabel_format(useOffset=False)
            ax.locator_params(axis="x", nbins=4)  # close values: few ticks, so their labels stay apart
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def grid(args, systems: dict[str, System], file: Path, path: Path) -> None:
    """The first image and its reconstructions: one row per system, one column per SNR."""
    from PIL import Image, ImageDraw

    image = load_image_file(file)
    kind, cbr = args.channel[0], args.cbr[0]
    shown = [name for name in systems if serves(systems[name], cbr)]
    tiles = []
    for name in shown:
        row = [image]
        for snr in args.snr:
            spec = channel_spec(args, kind, snr, channel_seed(args.seed, file.name, snr, kind))
            row.append(systems[name](image, spec, cbr).image)
        tiles.append(row)
    h, w = image.shape[-2] // 2, image.shape[-1] // 2
    canvas = Image.new("RGB", (w * (1 + len(args.snr)), (h + 14) * len(tiles)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, row) in enumerate(zip(shown, tiles)):
        for c, (snr, tile) in enumerate(zip([None, *args.snr], row)):
            small = torch.nn.functional.interpolate(tile[None], size=(h, w), mode="area")[0]
            array = small.mul(255).round().byte().permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(array), (c * w, r * (h + 14) + 14))
            caption = file.name if snr is None else f"{name}, {kind} {snr:g} dB, CBR {cbr}"
            draw.text((c * w + 4, r * (h + 14)), caption, fill="black")
    canvas.save(path)


def prepare_grid(args) -> None:
    """Parse the grid's options in place: CBRs to fractions, modes and perturbations to their
    canonical labels (``ValueError`` for a bad one)."""
    args.cbr = [parse_cbr(text) for text in args.cbr]
    args.modes = [str(parse_mode(mode)) for mode in args.modes]
    args.perturb = [parse_perturbation(spec) for spec in args.perturb]


def default_data(args) -> None:
    """``--data`` left out: the Kodak set beside the checkout, else the shipped samples (noted)."""
    if args.data is None:
        args.data = str(KODAK_IMAGES if KODAK_IMAGES.is_dir() else SAMPLE_IMAGES)
        if not KODAK_IMAGES.is_dir():
            print(f"semcom eval: note: {KODAK_IMAGES} is absent: evaluating the {SAMPLE_IMAGES.name}/ photos shipped "
                  f"in the repository (three Kodak images); pass --data DIR for another set", file=sys.stderr)


def report(args, rows: list[dict], n_images: int, notes: list[str], out: Path) -> None:
    """summary.md, the metric-versus-SNR plots and the perception-distortion plots of ``rows``
    (in grid order) into ``out``; the summary is printed too. A single run and a merge of shards
    both write through here."""
    text = summary(rows, args, n_images, args.command_line)
    if notes:
        text += "\n" + "".join(f"- {note}\n" for note in notes)
    (out / "summary.md").write_text(text)
    plot(rows, args, "psnr", out / "psnr_vs_snr.png")
    plot(rows, args, "ms_ssim", out / "msssim_vs_snr.png")
    for name in measured_perceptual(rows):
        plot(rows, args, name, out / f"{name}_vs_snr.png")
        plot_perception_distortion(rows, args, name, out / f"perception_distortion_{name}.png")
    print(text, end="")


def run_eval(args) -> int:
    from training.data import list_images

    default_data(args)
    try:
        prepare_grid(args)
        files = list_images(args.data)[: args.limit]
        for kind in args.channel:
            channel_spec(args, kind, args.snr[0], 0)
        config = load_config(device=args.device, perceptual_weights=args.perceptual_weights)
        device = config.resolve_device()
        scorer = load_perceptual(config.perceptual_weights)
        read_done(args.out / "results.csv")  # one of other columns fails now, not mid-run
        if args.adapt and "adaptive" not in args.systems:
            raise ValueError("--adapt adds adaptive+adapter next to adaptive: add adaptive to --systems")
        systems = build_systems(args, device)
        for cbr in args.cbr:  # a CBR no system serves fails now (the first system says why), not mid-run
            serving = [label for label in systems if serves(systems[label], cbr)] or list(systems)
            systems[serving[0]](load_image_file(files[0])[:, :256, :256], ChannelSpec(), cbr)
    except (FileNotFoundError, ValueError, NotImplementedError) as exc:
        print(f"semcom eval: {exc}", file=sys.stderr)
        return 2
    notes = [f"{label} serves only CBR {', '.join(map(str, systems[label].cbrs))}: skipped at "
             + ", ".join(str(cbr) for cbr in args.cbr if not serves(systems[label], cbr))
             for label in systems if not all(serves(systems[label], cbr) for cbr in args.cbr)]
    notes += list(scorer.skipped.values())
    for note in notes:
        print(f"semcom eval: note: {note}", file=sys.stderr)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    settings = grid_settings(args, systems, files)
    mine = args.shard.select(settings) if args.shard else settings
    keys = {setting_key(setting) for setting in mine}
    rows = [row for row in evaluate(args, systems, mine, out, scorer) if row_key(row) in keys]
    rows = in_grid_order(rows, args, [f.name for f in files])
    if not args.shard or args.shard.index == 1:
        grid(args, systems, files[0], out / "grid.png")
    if args.shard:
        eval_shards.write_manifest(out, args.shard, args.command_line, args.data, [f.name for f in files],
                                   len(settings), notes)
        print(f"semcom eval: shard {args.shard}: {len(rows)} of the grid's {len(settings)} measurements in "
              f"{out / 'results.csv'}; join the shards with `semcom eval merge DIR... --out DIR`", file=sys.stderr)
        return 0
    report(args, rows, len(files), notes, out)
    return 0


def run_merge(args) -> int:
    """`semcom eval merge`: the shards' rows into one results.csv, summary.md and plots."""
    try:
        manifests = eval_shards.read_manifests(args.shards)
        first = manifests[0]
        parser = argparse.ArgumentParser(prog="semcom", add_help=False)
        add_parser(parser.add_subparsers())
        run = parser.parse_args(["eval", *first["argv"]])
        prepare_grid(run)
        run.data, run.command_line = first["data"], shlex.join(["semcom", "eval", *first["argv"], "--out", str(args.out)])
        parts = [in_grid_order(read_done(m["folder"] / "results.csv"), run, first["images"]) for m in manifests]
        rows = in_grid_order(eval_shards.merged_rows(manifests, parts, row_key), run, first["images"])
    except ValueError as exc:
        print(f"semcom eval merge: {exc}", file=sys.stderr)
        return 2
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    grid_png = next(m["folder"] for m in manifests if m["shard"][0] == 1) / "grid.png"
    if grid_png.is_file():
        shutil.copyfile(grid_png, out / "grid.png")
    report(run, rows, len(first["images"]), first["notes"], out)
    return 0


def add_parser(sub) -> None:
    parser = sub.add_parser("eval", help="evaluate systems on an image folder over channels, SNRs and CBRs",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="example:\n  semcom eval --data ../shared/data/kodak --channel awgn rayleigh "
                                   "--snr 0 5 10 15 20 --cbr 1/24 1/48 --out runs/eval")
    parser.add_argument("--data", help=f"image folder (default {KODAK_IMAGES}; where absent, the shipped "
                                       f"samples {SAMPLE_IMAGES})")
    add_kind_option(parser, ["awgn"], multiple=True, help="channel kinds")
    parser.add_argument("--snr", type=argtypes.finite, nargs="+", default=[0.0, 5.0, 10.0, 15.0, 20.0],
                        help="SNRs in dB (default 0 5 10 15 20)")
    parser.add_argument("--cbr", nargs="+", default=["1/24", "1/48"], help="target CBRs (default 1/24 1/48)")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=["deepjscc"],
                        help=f"systems to compare: {', '.join(SYSTEMS)} (default deepjscc)")
    parser.add_argument("--modes", nargs="+", default=["jscc"],
                        help=f"decoder modes of the adaptive codec, each its own system: {', '.join(mode_forms())} "
                             "(default jscc)")
    parser.add_argument("--out", type=Path, default=Path("runs/eval"), help="output folder (default runs/eval)")
    parser.add_argument("--limit", type=int, help="only the first N images (sorted by name)")
    parser.add_argument("--adapt", nargs="+", default=[], metavar="IMAGE",
                        help="learn one out-of-distribution latent adapter from these images (not among --data's) "
                             "and add the system adaptive+adapter (needs adaptive in --systems)")
    parser.add_argument("--adapt-steps", type=int, default=200, help="optimizer steps of --adapt (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the channel draws (default 0)")
    # every image is sent alone (mu_mimo: one user per slot, K = 1); benchmarks/multi_user.py shares slots
    add_channel_options(parser, ChannelSpec(k_factor=1.0), exclude=("--users", "--user-gains"), real=argtypes.finite)
    parser.add_argument("--weights", default=str(BASELINE_WEIGHTS), help="fixed-rate DeepJSCC weights")
    parser.add_argument("--adaptive-weights", default=str(RATE_ADAPTIVE_WEIGHTS), help="rate-adaptive codec weights")
    parser.add_argument("--vae-weights", nargs="+", default=[str(p) for p in VAE_UPSAMPLER_WEIGHTS], metavar="FILE",
                        help="VAE up-sampler weights, each its own system deepjscc-vae/<file stem> serving the one "
                             "CBR of its config (default the shipped x2 at 1/48 and x4 at 1/96)")
    parser.add_argument("--robust-weights", default=str(ROBUST_WEIGHTS),
                        help="rate-adaptive codec with the robust transmitter (system adaptive-robust)")
    parser.add_argument("--perturb", nargs="+", default=[], metavar="SPEC",
                        help="also run every system on perturbed input, scored against the clean image: "
                             "pgd:LEVEL[:STEPS] (white-box, L2 budget LEVEL*sqrt(HW)) or noise:SNR (dB); "
                             "labelled <system>@<spec>")
    defaults = SemcomConfig()
    for weights in mode_weights().values():  # one flag per network a decoder mode needs
        parser.add_argument("--" + weights.config_field.replace("_", "-"), default=getattr(defaults, weights.config_field),
                            help=f"{weights.role} weights of the decoder modes that need them")
    parser.add_argument("--perceptual-weights", metavar="DIR",
                        help="folder of the learned perceptual metrics' networks, lpips.pt2 and dists.pt2 "
                             "(shared/perceptual.py; default SEMCOM_PERCEPTUAL_WEIGHTS, else none: skipped)")
    parser.add_argument("--device", help="cpu | cuda | auto (default SEMCOM_DEVICE, else auto)")
    parser.add_argument("--runtime", default="eager", choices=("auto", *RUNTIMES),
                        help="runtime of the codecs' analysis/synthesis networks (shared/models/runtime.py; default "
                             "eager, the reference; the services default to SEMCOM_RUNTIME=auto: onnx on the CPU)")
    parser.add_argument("--shard", type=eval_shards.parse_shard, metavar="K/N",
                        help="run only the K-th of N disjoint parts of the grid (1 <= K <= N; same seeded draws), "
                             "into --out; join the N folders with `semcom eval merge`")
    parser.set_defaults(func=run_eval)
    merge_sub = parser.add_subparsers(dest="eval_command", metavar="merge")
    merge = merge_sub.add_parser("merge", help="join the folders of `semcom eval --shard K/N` runs",
                                 description="Join the N shard folders of one sharded `semcom eval` into the "
                                             "results.csv, summary.md, plots and grid.png a single run writes.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  for k in 1 2 3; do semcom eval --limit 4 --shard $k/3 --out "
                                        "runs/eval_$k; done\n  semcom eval merge runs/eval_1 runs/eval_2 runs/eval_3 "
                                        "--out runs/eval")
    merge.add_argument("shards", nargs="+", type=Path, metavar="DIR", help="the shards' --out folders, all N of them")
    merge.add_argument("--out", type=Path, required=True, help="folder of the merged results")
    merge.set_defaults(func=run_merge)
