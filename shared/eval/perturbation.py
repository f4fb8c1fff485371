"""Input perturbations for robustness tests (paper 003 sec. III-C): Gaussian input noise and the
PGD *semantic error* that maximizes the change of a codec's reconstruction.

Images are (B, 3, H, W) (or (3, H, W) for :func:`input_noise`) in the pixel range [0, 1].

* ``noise:SNR`` adds white Gaussian noise at the *image* SNR = 10 log10(mean(x^2) / sigma^2)
  (dB, per image), then clamps to [0, 1] (the clamp lowers the realized noise a little on
  images near black or white).
* ``pgd:LEVEL[:STEPS]`` solves eq. 7 of paper 003 by projected gradient ascent (eq. 8-9 with
  the penalty replaced by the constraint): find delta maximizing
  ``MSE(forward(x), forward(x + delta))`` subject to ``||delta||_2 <= LEVEL * sqrt(H W)`` and
  ``0 <= x + delta <= 1``. The paper writes the budget ``||delta||_p / H`` for square H x H
  images; ``sqrt(H W)`` is the same for square images and the natural size for others.
  LEVEL 0.3 therefore allows an RMS change of 0.3 / sqrt(3) = 0.17 per pixel value.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import torch
from tqdm import tqdm

from ..channel import ChannelSpec

DEFAULT_PGD_STEPS = 5
PERTURBATION_KINDS = ("pgd", "noise")
_USAGE = ("a perturbation is pgd:LEVEL[:STEPS] (L2 budget LEVEL * sqrt(H W) on [0, 1] pixels, e.g. pgd:0.3 "
          "or pgd:0.3:10) or noise:SNR (Gaussian input noise at this image SNR in dB, e.g. noise:10)")

Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Perturbation:
    """A parsed perturbation spec (see :func:`parse_perturbation`).

    Attributes:
        kind: ``pgd`` (white-box semantic error) or ``noise`` (Gaussian input noise).
        level: pgd: L2 budget per sqrt(pixel count); noise: image SNR in dB.
        steps: pgd attack steps (0 for noise).
    """

    kind: str
    level: float
    steps: int = 0

    def __str__(self) -> str:
        if self.kind == "noise":
            return f"noise:{self.level:g}"
        return f"pgd:{self.level:g}" + ("" if self.steps == DEFAULT_PGD_STEPS else f":{self.steps}")

    @property
    def needs_gradient(self) -> bool:
        return self.kind == "pgd"

    def apply(self, images: torch.Tensor, forward: Forward | None, generator: torch.Generator) -> torch.Tensor:
        """(B, 3, H, W) -> the perturbed images; ``forward`` (images -> reconstructions,
        differentiable) is the attacked system, needed for pgd only."""
        if self.kind == "noise":
            return input_noise(images, self.level, generator)
        if forward is None:
            raise ValueError(f"{self} needs a differentiable forward of the attacked system")
        return images + pgd_semantic_error(forward, images, self.level, self.steps, generator)


def parse_perturbation(text: str) -> Perturbation:
    """``"pgd:0.3"``, ``"pgd:0.3:10"`` or ``"noise:10"`` -> :class:`Perturbation`; ``ValueError``
    saying what is accepted otherwise."""
    parts = str(text).strip().split(":")
    kind = parts[0].lower()
    if kind not in PERTURBATION_KINDS or len(parts) not in ((2, 3) if kind == "pgd" else (2,)):
        raise ValueError(f"bad perturbation {text!r}: {_USAGE}")
    try:
        level = float(parts[1])
        steps = int(parts[2]) if len(parts) == 3 else (DEFAULT_PGD_STEPS if kind == "pgd" else 0)
    except ValueError:
        raise ValueError(f"bad perturbation {text!r}: {_USAGE}") from None
    if not math.isfinite(level) or (kind == "pgd" and (level <= 0 or steps < 1)):
        raise ValueError(f"bad perturbation {text!r}: the pgd level must be > 0 and the steps >= 1; {_USAGE}")
    return Perturbation(kind, level, steps)


def perturbation_seed(seed: int, spec: Perturbation) -> int:
    """A stable 63-bit seed for one perturbation of one measurement (``seed``: the measurement's
    channel seed, itself fixed by (run seed, image, SNR, channel)), so a resumed run redraws it."""
    digest = hashlib.sha256(repr((int(seed), str(spec))).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def input_noise(image: torch.Tensor, snr_db: float, generator: torch.Generator) -> torch.Tensor:
    """(..., 3, H, W) in [0, 1] -> the image plus Gaussian noise at image SNR ``snr_db`` (dB,
    per image: sigma^2 = mean(x^2) / 10^(snr/10)), clamped to [0, 1]."""
    batched = image if image.dim() == 4 else image[None]
    power = batched.pow(2).mean(dim=(1, 2, 3), keepdim=True)
    sigma = torch.sqrt(power / 10 ** (snr_db / 10))
    noise = torch.randn(batched.shape, generator=generator, dtype=batched.dtype).to(batched.device)
    noisy = (batched + sigma * noise).clamp(0, 1)
    return noisy if image.dim() == 4 else noisy[0]


def project(delta: torch.Tensor, images: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """P_C of eq. 9: scale each (B, 3, H, W) delta into its L2 ball of ``radius`` (B,), then
    clamp ``images + delta`` to [0, 1]. The clamp only shrinks each |delta_i| (the images are
    in [0, 1]), so the result lies in both sets."""
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    delta = delta * (radius / norms).clamp(max=1.0)[:, None, None, None]
    return (images + delta).clamp(0, 1) - images


def pgd_semantic_error(forward: Forward, images: torch.Tensor, level: float, steps: int,
                       generator: torch.Generator, progress: bool = False) -> torch.Tensor:
    """The semantic error of eq. 7: delta (B, 3, H, W) approximately maximizing
    ``MSE(forward(x), forward(x + delta))`` per image within ``||delta||_2 <= level * sqrt(H W)``
    and the pixel box [0, 1].

    ``steps`` normalized-gradient ascent steps of size ``2.5 * radius / steps`` (the usual L2
    PGD step: the iterate can cross the ball in fewer than half the steps, then slides along
    its surface), each followed by :func:`project`. The search starts from a random direction
    at 5 % of the radius: delta = 0 is the global minimum of the distance, where its gradient
    is exactly zero, so a search started there would not move. ``forward`` is called on the
    whole batch; the model's own parameters get no gradient.
    """
    images = images.detach()
    radius = torch.full((images.shape[0],), level * math.sqrt(images.shape[-2] * images.shape[-1]),
                        device=images.device, dtype=images.dtype)
    with torch.no_grad():
        target = forward(images)
    start = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    start = start * (0.05 * radius / start.flatten(1).norm(dim=1))[:, None, None, None]
    delta = project(start, images, radius)
    step = 2.5 * radius / steps
    for _ in tqdm(range(steps), desc="pgd", unit="step", leave=False, disable=not progress):
        delta.requires_grad_(True)
        distance = (forward(images + delta) - target).pow(2).flatten(1).mean(dim=1)
        (gradient,) = torch.autograd.grad(distance.sum(), delta)
        with torch.no_grad():
            direction = gradient / gradient.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
            delta = project(delta + step[:, None, None, None] * direction, images, radius)
    return delta.detach()
