"""What every training script here shares: its command line, the resumable run state (model,
optimizer, step, wall clock, random generator in ``run_dir/checkpoint.pt``), the learning-rate
schedule (warm-up then cosine over ``steps`` or ``max_minutes``, whichever ends first, so a run
on a slow machine still anneals) and the JSONL log."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from shared.channel import make_generator
from training.data import RandomCrops, center_crops, list_images


def parse_config(description: str, default_config: str, argv=None) -> tuple[dict, str]:
    """The training config (``--config`` JSON with ``--max-minutes``/``--steps`` overrides) and
    the device to train on; sets the thread count and seeds torch."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=default_config, help="JSON training config")
    parser.add_argument("--max-minutes", type=float, help="override the config's wall-clock budget")
    parser.add_argument("--steps", type=int, help="override the config's step budget")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = parser.parse_args(argv)
    cfg = json.loads(Path(args.config).read_text())
    for key in ("max_minutes", "steps"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    return cfg, device


def learning_rate(cfg: dict, step: int, progress: float) -> float:
    if step < cfg["warmup_steps"]:
        return cfg["lr"] * (step + 1) / cfg["warmup_steps"]
    return cfg["min_lr"] + 0.5 * (cfg["lr"] - cfg["min_lr"]) * (1 + math.cos(math.pi * min(progress, 1.0)))


class TrainingRun:
    """A resumable run: ``has_checkpoint`` tells whether :meth:`resume` will continue one."""

    def __init__(self, cfg: dict, device: str):
        self.cfg = cfg
        self.device = device
        self.generator = make_generator(cfg["seed"])
        self.run_dir = Path(cfg["run_dir"])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self.step, self.elapsed = 0, 0.0
        self._log = None
        self._start = time.time()

    def datasets(self) -> tuple[RandomCrops, torch.Tensor]:
        """Random ``crop`` crops of every image under ``train_dirs``, and the fixed validation
        batch: the first ``val_images`` of ``val_dir``, center crops of twice that size."""
        files = [f for d in self.cfg["train_dirs"] for f in list_images(d)]
        validation = list_images(self.cfg["val_dir"])[: self.cfg["val_images"]]
        return (RandomCrops(files, self.cfg["crop"], self.generator),
                center_crops(validation, self.cfg["crop"] * 2).to(self.device))

    def frozen(self, path: str) -> torch.nn.Module:
        """The model stored at ``path`` on this run's device, in eval mode, with no gradients:
        a network the run trains against, not one it trains."""
        from shared.models.io import load_model

        return load_model(path, self.device).requires_grad_(False)

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Load the checkpoint into ``model`` and ``optimizer`` if there is one; start the clock."""
        if self.has_checkpoint:
            state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            self.step, self.elapsed = state["step"], state["elapsed"]
            self.generator.set_state(state["generator"])
            print(f"resumed from {self.checkpoint_path} at step {self.step} ({self.elapsed / 60:.1f} min)")
        self._start = time.time() - self.elapsed
        self._log = (self.run_dir / "log.jsonl").open("a")

    def progress(self) -> float:
        """Fraction of the budget spent (>= 1: done); updates the wall clock."""
        self.elapsed = time.time() - self._start
        return max(self.step / self.cfg["steps"], self.elapsed / (self.cfg["max_minutes"] * 60))

    def set_learning_rate(self, optimizer: torch.optim.Optimizer) -> float:
        lr = learning_rate(self.cfg, self.step, self.progress())
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    @property
    def minutes(self) -> float:
        return round((time.time() - self._start) / 60, 2)

    def log(self, record: dict) -> None:
        self._log.write(json.dumps(record) + "\n")
        self._log.flush()

    def optimize(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, bar) -> None:
        """One optimizer step on ``loss`` (gradient norm clipped to 1), counted and shown on ``bar``."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        self.step += 1
        bar.update(1)

    def checkpoint(self, record: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Log ``record`` (JSONL and the console) and save the run state."""
        self.log(record)
        tqdm.write(json.dumps(record))
        self.save(model, optimizer)

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.elapsed = time.time() - self._start
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": self.step,
                    "elapsed": self.elapsed, "generator": self.generator.get_state(), "config": self.cfg},
                   self.checkpoint_path)

    def provenance(self, script: str, **extra) -> dict:
        return {"script": script, "config": self.cfg, "steps": self.step, "minutes": round(self.elapsed / 60, 1),
                "device": self.device, "torch": torch.__version__, **extra}
