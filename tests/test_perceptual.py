"""Perceptual metrics (shared/perceptual.py): VIF, and learned metrics from a stand-in network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shared.config import load_config
from shared.perceptual import load_perceptual, vif

from .test_quality import noisy


class StandInDistance(torch.nn.Module):
    """A tiny learned distance of the exported-network interface: (reference, estimate), both
    (B, 3, H, W) in [0, 1] -> (B,) mean squared difference of one random conv layer's features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
        return (self.features(2 * reference - 1) - self.features(2 * estimate - 1)).pow(2).mean(dim=(1, 2, 3))


def export_stand_in(path: Path) -> StandInDistance:
    """Save a :class:`StandInDistance` as a ``torch.export`` program with dynamic batch and sides."""
    network = StandInDistance().eval()
    batch, height, width = torch.export.Dim("batch"), torch.export.Dim("height", min=8), torch.export.Dim("width", min=8)
    sides = {0: batch, 2: height, 3: width}
    example = (torch.rand(2, 3, 16, 24), torch.rand(2, 3, 16, 24))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(torch.export.export(network, example, dynamic_shapes=(sides, sides)), str(path))
    return network


@pytest.fixture(scope="module")
def lpips_folder(tmp_path_factory) -> Path:
    """A perceptual-weights folder holding a stand-in ``lpips.pt2`` and no ``dists.pt2``."""
    folder = tmp_path_factory.mktemp("perceptual")
    export_stand_in(folder / "lpips.pt2")
    return folder


def test_vif_is_one_for_a_copy_and_falls_with_noise(make_image):
    image = make_image(64, 96, seed=1)[None]
    assert vif(image, image).item() == pytest.approx(1.0, abs=1e-5)
    values = [vif(image, noisy(image, std)).item() for std in (0.02, 0.05, 0.15)]
    assert 1 > values[0] > values[1] > values[2] > 0


def test_vif_per_image_and_minimum_side(make_image):
    batch = torch.stack([make_image(48, 48, seed=1), make_image(48, 48, seed=2)])
    estimate = torch.stack([noisy(batch[0], 0.01), noisy(batch[1], 0.2)])
    values = vif(batch, estimate)
    assert values.shape == (2,) and values[0] > values[1]
    with pytest.raises(ValueError, match="41"):
        vif(batch[:, :, :40], estimate[:, :, :40])


def test_without_networks_only_vif_with_notes(make_image):
    scorer = load_perceptual("")
    assert scorer.metrics == ("vif",)
    assert all("SEMCOM_PERCEPTUAL_WEIGHTS" in note for note in scorer.skipped.values())
    image = make_image(48, 64)[None]
    assert set(scorer(image, noisy(image, 0.1))) == {"vif"}
    assert scorer(image[..., :32, :32], image[..., :32, :32]) == {}  # VIF needs sides of 41


def test_stand_in_network_scores_any_size(lpips_folder, make_image):
    scorer = load_perceptual(str(lpips_folder))
    assert scorer.metrics == ("vif", "lpips")
    assert "dists.pt2" in scorer.skipped["dists"]
    reference = torch.stack([make_image(50, 70, seed=3), make_image(50, 70, seed=4)])
    estimate = noisy(reference, 0.1)
    scores = scorer(reference, estimate)
    assert set(scores) == {"vif", "lpips"} and scores["lpips"].shape == (2,)
    torch.testing.assert_close(scores["lpips"], StandInDistance()(reference, estimate).detach())
    assert scorer(reference, reference)["lpips"].abs().max() < 1e-6


def test_folder_from_the_environment(lpips_folder, monkeypatch):
    monkeypatch.setenv("SEMCOM_PERCEPTUAL_WEIGHTS", str(lpips_folder))
    assert load_perceptual(load_config().perceptual_weights).metrics == ("vif", "lpips")
