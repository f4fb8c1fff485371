"""An out-of-distribution image domain for the latent adapter (paper 003 sec. III-D): line
drawings and rendered text, far from BSDS500's photos.

Each image is a flat background (white or a pale flat colour) with random strokes, outlined and
filled shapes and lines of text (PIL's bundled font at several sizes), deterministic from the seed:

    python -m benchmarks.ood_images --out runs/ood --count 12 --size 768 512 --seed 0

writes ``drawing_000.png`` ... into ``--out``.
"""

from __future__ import annotations

import argparse
import random
import string
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BACKGROUNDS = [(255, 255, 255), (255, 255, 255), (250, 244, 225), (225, 238, 250), (236, 250, 230)]
INKS = [(0, 0, 0), (20, 20, 120), (150, 20, 20), (0, 100, 40), (90, 90, 90)]
FILLS = [(240, 80, 60), (60, 120, 220), (250, 200, 40), (80, 180, 90), (180, 90, 200)]


def _words(rng: random.Random, count: int) -> str:
    return " ".join("".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(2, 9))) for _ in range(count))


def draw_image(rng: random.Random, width: int, height: int) -> Image.Image:
    """One drawing: strokes, shapes and text on a flat background."""
    image = Image.new("RGB", (width, height), rng.choice(BACKGROUNDS))
    draw = ImageDraw.Draw(image)
    point = lambda: (rng.randrange(width), rng.randrange(height))  # noqa: E731
    for _ in range(rng.randint(3, 7)):  # shapes, outlined or filled
        x0, y0 = point()
        x1, y1 = x0 + rng.randint(30, width // 3), y0 + rng.randint(30, height // 3)
        fill = rng.choice(FILLS) if rng.random() < 0.5 else None
        shape = rng.choice((draw.rectangle, draw.ellipse))
        shape((x0, y0, x1, y1), outline=rng.choice(INKS), fill=fill, width=rng.randint(1, 5))
    for _ in range(rng.randint(4, 10)):  # strokes: polylines
        draw.line([point() for _ in range(rng.randint(2, 6))], fill=rng.choice(INKS), width=rng.randint(1, 6))
    for _ in range(rng.randint(3, 8)):  # text lines
        font = ImageFont.load_default(size=rng.choice((14, 18, 24, 32, 48)))
        x, y = rng.randrange(width // 2), rng.randrange(height - 40)
        draw.text((x, y), _words(rng, rng.randint(1, 5)), fill=rng.choice(INKS), font=font)
    return image


def write_images(out: Path, count: int, width: int, height: int, seed: int) -> list[Path]:
    """Write ``count`` drawings (``drawing_NNN.png``) to ``out``; the same seed gives the same files."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = out / f"drawing_{index:03d}.png"
        draw_image(random.Random(f"{seed}-{index}"), width, height).save(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/ood"), help="output folder (default runs/ood)")
    parser.add_argument("--count", type=int, default=12, help="number of images (default 12)")
    parser.add_argument("--size", type=int, nargs=2, default=(768, 512), metavar=("W", "H"),
                        help="image width and height in pixels (default 768 512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawings (default 0)")
    args = parser.parse_args(argv)
    if args.count < 1 or min(args.size) < 64:
        parser.error("--count must be >= 1 and each side of --size >= 64")
    paths = write_images(args.out, args.count, *args.size, args.seed)
    print(f"wrote {len(paths)} images of {args.size[0]}x{args.size[1]} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
