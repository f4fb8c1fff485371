"""Where the rate-adaptive codec spends its symbols, on an image folder (Kodak by default).

    python -m benchmarks.rate_allocation --cbr 1/48 --snr 10

Two allocations of the same images:

* per image (the service's behaviour): beta chosen per image to meet the target CBR, side
  information included; prints each image's side-information cost;
* one beta for the whole folder, chosen so that the *average* CBR meets the target: each image
  then gets what its content asks for. Its per-image CBRs are plotted as a histogram and
  against the image's lossless PNG size in bits per pixel (a model-free measure of how rich
  the image is), with the Spearman rank correlation.

Writes ``--out`` (default docs/benchmarks/rate_allocation.png): the histogram, the scatter,
and the first image beside its per-token symbol map; prints a JSON summary.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from shared.codecs.rate_adaptive import analyse_request
from shared.channel import ChannelSpec
from shared.phy.symbols import parse_cbr
from shared.config import RATE_ADAPTIVE_WEIGHTS
from shared.imageio import load_image_file, save_figure
from shared.models.io import load_model
from shared.models.rate_adaptive import allocate_symbols
from shared.phy.side_channel import side_channel_scheme, side_channel_symbols
from training.data import list_images

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def png_bits_per_pixel(image: torch.Tensor) -> float:
    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return 8 * buffer.tell() / (image.shape[1] * image.shape[2])


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0.0] * len(values)
        for rank, index in enumerate(order):
            result[index] = float(rank)
        return result

    ra, rb = ranks(a), ranks(b)
    return statistics.correlation(ra, rb)


def folder_beta(analysed, levels, scheme, target: float) -> float:
    """The float32 beta whose allocation gives a mean CBR (side information included) of at most
    ``target`` over the analysed images (bisection on log beta)."""

    def mean_cbr(beta: float) -> float:
        return statistics.fmean(
            (int(allocate_symbols(a.information, beta, levels).sum()) + side_channel_symbols(a.side_information_bytes, scheme))
            / (3 * a.image_size[0] * a.image_size[1]) for a in analysed)

    low, high = torch.tensor(1e-6), torch.tensor(1e6)
    for _ in range(60):
        mid = (low * high).sqrt()
        low, high = (mid, high) if mean_cbr(float(mid)) <= target else (low, mid)
    return float(low)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="image folder (default Kodak)")
    parser.add_argument("--weights", default=str(RATE_ADAPTIVE_WEIGHTS), help="rate-adaptive codec weights")
    parser.add_argument("--cbr", default="1/48", help="target CBR (default 1/48)")
    parser.add_argument("--snr", type=float, default=10.0,
                        help="AWGN SNR in dB: conditions the encoder and sets the side channel's scheme")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/rate_allocation.png"))
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = load_model(args.weights)
    spec = ChannelSpec("awgn", args.snr)
    scheme = side_channel_scheme(spec)
    cbr = parse_cbr(args.cbr)
    files = list_images(args.data)
    images, analysed, per_image = [], [], []
    for path in tqdm(files, desc="analysing", unit="img"):
        image = load_image_file(path)
        images.append(image)
        analysis, own_beta = analyse_request(model, image, spec, cbr)  # what the service would send
        analysed.append(analysis)
        side = side_channel_symbols(analysis.side_information_bytes, scheme)
        total = int(allocate_symbols(analysis.information, own_beta, model.config.symbol_levels).sum()) + side
        per_image.append({"image": path.name, "cbr": total / (3 * image.shape[1] * image.shape[2]),
                          "side_symbols": side, "side_share": side / total,
                          "side_bytes": analysis.side_information_bytes})
    levels = model.config.symbol_levels
    beta = folder_beta(analysed, levels, scheme, float(cbr))
    shared_cbr = [(int(allocate_symbols(a.information, beta, levels).sum()) + side_channel_symbols(a.side_information_bytes, scheme))
                  / (3 * a.image_size[0] * a.image_size[1]) for a in analysed]
    richness = [png_bits_per_pixel(image) for image in images]
    rho = spearman(shared_cbr, richness)

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    axes[0].hist([1 / c for c in shared_cbr], bins=12, color="tab:blue")
    axes[0].axvline(1 / float(cbr), color="k", linestyle="--", label=f"target 1/{1 / float(cbr):.0f} (mean)")
    axes[0].set(xlabel="per-image CBR, shown as 1/x", ylabel="images",
                title=f"one beta for all {len(files)} images")
    axes[0].legend()
    axes[1].scatter(richness, [1 / c for c in shared_cbr])
    axes[1].set(xlabel="lossless PNG size (bits per pixel)", ylabel="per-image CBR, 1/x",
                title=f"richer images get more symbols (Spearman rho = {rho:.2f})")
    axes[1].invert_yaxis()
    first = analysed[0]
    symbol_map = allocate_symbols(first.information, beta, levels)
    h, w = first.image_size
    axes[2].imshow(images[0].permute(1, 2, 0).numpy())
    overlay = axes[2].imshow(symbol_map.numpy(), cmap="magma", alpha=0.55,
                             extent=(0, symbol_map.shape[1] * 16, symbol_map.shape[0] * 16, 0))
    axes[2].set(xlim=(0, w), ylim=(h, 0), title=f"{files[0].name}: symbols per 16x16 token")
    axes[2].axis("off")
    fig.colorbar(overlay, ax=axes[2], fraction=0.035)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, args.out, dpi=110)

    side_share = [p["side_share"] for p in per_image]
    print(json.dumps({
        "images": len(files), "target_cbr": str(cbr), "snr_db": args.snr, "plot": str(args.out),
        "per_image_beta": {"mean_cbr": statistics.fmean(p["cbr"] for p in per_image),
                           "side_share_mean": statistics.fmean(side_share), "side_share_max": max(side_share),
                           "side_bytes_mean": statistics.fmean(p["side_bytes"] for p in per_image)},
        "one_beta": {"beta": beta, "mean_cbr": statistics.fmean(shared_cbr), "min_cbr": min(shared_cbr),
                     "max_cbr": max(shared_cbr), "spearman_vs_png_bpp": rho},
    }, indent=1))


if __name__ == "__main__":
    main()
