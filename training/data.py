"""Training data: every image of a folder, held in memory, served as random crops."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from shared.imageio import load_image_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def list_images(root: str | Path) -> list[Path]:
    """Image files under ``root`` (recursive), sorted for reproducibility."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return files


class RandomCrops:
    """Uint8 images in memory; :meth:`batch` draws (B, 3, S, S) float crops with flips.

    Images smaller than the crop are upscaled-by-padding (reflect) to fit.
    """

    def __init__(self, files: list[Path], crop: int, generator: torch.Generator):
        self.crop = crop
        self.generator = generator
        self.images = [
            (load_image_file(p) * 255).round().to(torch.uint8) for p in tqdm(files, desc="loading images", unit="img")
        ]

    def batch(self, size: int) -> torch.Tensor:
        g = self.generator
        out = torch.empty((size, 3, self.crop, self.crop))
        for i in range(size):
            image = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
            _, h, w = image.shape
            top = int(torch.randint(max(h - self.crop, 0) + 1, (1,), generator=g))
            left = int(torch.randint(max(w - self.crop, 0) + 1, (1,), generator=g))
            crop = image[:, top : top + self.crop, left : left + self.crop].float() / 255.0
            if torch.rand((), generator=g) < 0.5:
                crop = crop.flip(-1)
            out[i] = crop
        return out


def center_crops(files: list[Path], crop: int) -> torch.Tensor:
    """(N, 3, S, S) center crops of ``files``: a fixed validation batch."""
    crops = []
    for path in files:
        image = load_image_file(path)
        _, h, w = image.shape
        top, left = (h - crop) // 2, (w - crop) // 2
        crops.append(image[:, top : top + crop, left : left + crop])
    return torch.stack(crops)
