"""Full-reference perceptual metrics beside PSNR and MS-SSIM (:mod:`shared.quality`).

- ``vif``: pixel-domain Visual Information Fidelity (VIF-P, Sheikh & Bovik 2006), computed by
  ``torchmetrics`` (pure torch, no weights), 1 for a perfect copy, higher is better.
- ``lpips``, ``dists``: learned distances (LPIPS, Zhang et al. 2018; DISTS, Ding et al. 2020),
  lower is better, computed only when their networks are on the machine: ``<folder>/lpips.pt2``
  and ``<folder>/dists.pt2`` in the folder of the ``perceptual_weights`` setting
  (``SEMCOM_PERCEPTUAL_WEIGHTS``). Each file is a ``torch.export`` program (``torch.export.save``)
  whose forward takes ``(reference, estimate)``, both (B, 3, H, W) in [0, 1] with dynamic B, H
  and W, and returns the (B,) distances, the network's own input scaling inside it. Nothing is
  downloaded: a missing file skips that metric, with a note saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

LEARNED_METRICS = ("lpips", "dists")
PERCEPTUAL_METRICS = ("vif", *LEARNED_METRICS)
LOWER_IS_BETTER = frozenset(LEARNED_METRICS)
VIF_MIN_SIDE = 41  # torchmetrics' VIF-P needs images of at least 41 x 41 pixels


def vif(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [0, 1], sides >= 41 -> (B,) VIF-P, the mean over the C channels.

    torchmetrics' VIF-P takes its visual-noise variance (2.0) on the 0-255 scale of the
    original definition, so the images are scaled to it.
    """
    from torchmetrics.functional.image import visual_information_fidelity

    if min(reference.shape[-2:]) < VIF_MIN_SIDE:
        raise ValueError(f"VIF needs images of at least {VIF_MIN_SIDE} pixels a side, got {tuple(reference.shape[-2:])}")
    return visual_information_fidelity(255 * estimate.float(), 255 * reference.float(), reduction="none")


@dataclass(frozen=True)
class PerceptualScorer:
    """The perceptual metrics this machine computes: VIF always, each learned metric whose
    network was found (``networks``); ``skipped`` says why the others are not."""

    networks: dict[str, torch.nn.Module] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The computed metrics' names, in :data:`PERCEPTUAL_METRICS` order."""
        return tuple(name for name in PERCEPTUAL_METRICS if name == "vif" or name in self.networks)

    def __call__(self, reference: torch.Tensor, estimate: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> each computed metric's (B,) values (VIF only on sides >= 41)."""
        scores = {"vif": vif(reference, estimate)} if min(reference.shape[-2:]) >= VIF_MIN_SIDE else {}
        with torch.no_grad():
            for name, network in self.networks.items():
                scores[name] = network(reference.float(), estimate.float()).reshape(-1)
        return scores


def load_perceptual(folder: str) -> PerceptualScorer:
    """The scorer with the learned networks found in ``folder`` ("" = none), on the CPU."""
    networks, skipped = {}, {}
    for name in LEARNED_METRICS:
        path = Path(folder) / f"{name}.pt2"
        if folder and path.is_file():
            networks[name] = torch.export.load(str(path)).module()
        else:
            where = f"no {path}" if folder else "SEMCOM_PERCEPTUAL_WEIGHTS is not set"
            skipped[name] = f"{name.upper()} not computed: {where} (its network, see shared/perceptual.py)"
    return PerceptualScorer(networks, skipped)
