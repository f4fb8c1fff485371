"""Training data: every image of a folder held as one uint8 tensor on the training device, served
as random crops drawn there (one gather per batch, no per-image Python loop)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
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


def _landscape_uint8(path: Path, crop: int) -> torch.Tensor:
    """(3, H, W) uint8 with H <= W (portraits transposed, a 90-degree-rotation augmentation that
    lets every image share one canvas); sides below ``crop`` reflect-padded up to it."""
    image = load_image_file(path)
    if image.shape[1] > image.shape[2]:
        image = image.transpose(1, 2)
    _, h, w = image.shape
    if h < crop or w < crop:
        pad_h, pad_w = max(crop - h, 0), max(crop - w, 0)
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        image = F.pad(image[None], (0, pad_w, 0, pad_h), mode=mode)[0]
    return (image * 255).round().to(torch.uint8)


class DeviceCrops:
    """All training images on ``device`` as one (N, 3, H_max, W_max) uint8 canvas with each
    image's own (h, w); :meth:`batch` draws (B, 3, S, S) float32 crops in [0, 1] with random
    horizontal flips. The crop positions come from ``generator`` (a CPU generator: its state is
    the data position a resumed run continues from)."""

    def __init__(self, files: list[Path], crop: int, generator: torch.Generator, device: str | torch.device = "cpu",
                 progress: bool = True):
        self.crop = crop
        self.generator = generator
        images = [_landscape_uint8(p, crop) for p in tqdm(files, desc="loading images", unit="img", disable=not progress)]
        self.sizes = torch.tensor([image.shape[1:] for image in images])
        height, width = (int(v) for v in self.sizes.max(dim=0).values)
        self.canvas = torch.zeros((len(images), 3, height, width), dtype=torch.uint8)
        for i, image in enumerate(images):
            self.canvas[i, :, : image.shape[1], : image.shape[2]] = image
        self.canvas = self.canvas.to(device)
        self._offsets = torch.arange(crop, device=device)

    def __len__(self) -> int:
        return self.canvas.shape[0]

    def batch(self, size: int) -> torch.Tensor:
        g = self.generator
        index = torch.randint(len(self), (size,), generator=g)
        room = self.sizes[index] - self.crop + 1  # (B, 2) valid top/left positions per image
        top = (torch.rand(size, generator=g) * room[:, 0]).long()
        left = (torch.rand(size, generator=g) * room[:, 1]).long()
        flip = torch.rand(size, generator=g) < 0.5
        device = self.canvas.device
        rows = (top.to(device)[:, None] + self._offsets)[:, None, :, None]
        cols = left.to(device)[:, None] + self._offsets
        cols = torch.where(flip.to(device)[:, None], cols.flip(-1), cols)[:, None, None, :]
        channels = torch.arange(3, device=device)[None, :, None, None]
        crops = self.canvas[index.to(device)[:, None, None, None], channels, rows, cols]
        return crops.float() / 255.0


def center_crops(files: list[Path], crop: int) -> torch.Tensor:
    """(N, 3, S, S) center crops of ``files``: a fixed validation batch."""
    crops = []
    for path in files:
        image = load_image_file(path)
        _, h, w = image.shape
        top, left = (h - crop) // 2, (w - crop) // 2
        crops.append(image[:, top : top + crop, left : left + crop])
    return torch.stack(crops)
