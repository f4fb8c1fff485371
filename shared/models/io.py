"""Weights on disk: safetensors files whose metadata carry the architecture config."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from .deepjscc import DeepJSCC, DeepJSCCConfig


def save_deepjscc(model: DeepJSCC, path: str | Path, provenance: dict | None = None) -> None:
    """Write ``model``'s weights with its config (and how it was made) in the metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"architecture": "deepjscc", "config": json.dumps(model.config.to_dict())}
    if provenance:
        metadata["provenance"] = json.dumps(provenance)
    save_file(tensors, str(path), metadata=metadata)


def read_metadata(path: str | Path) -> dict:
    """The metadata of a weights file, JSON fields decoded."""
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    return {k: (json.loads(v) if k in ("config", "provenance") else v) for k, v in raw.items()}


def load_deepjscc(path: str | Path, device: str | torch.device = "cpu") -> DeepJSCC:
    """A :class:`DeepJSCC` in eval mode with the weights of ``path``.

    Raises ``FileNotFoundError`` with the retraining command when the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"model weights not found at {path}; train them with "
            "`python -m training.train_baseline --config training/configs/baseline.json`"
        )
    config = DeepJSCCConfig.from_dict(read_metadata(path)["config"])
    model = DeepJSCC(config)
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()
