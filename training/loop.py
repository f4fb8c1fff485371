"""The one training loop every script in :mod:`training` runs.

A script builds its model, writes a loss ``loss_fn(model, images) -> (loss, terms)`` and a
validation ``validate(model) -> dict``, and calls :meth:`TrainingRun.fit`; the loop does the rest:

- data: every training image as one uint8 tensor on the device, crops drawn there
  (:class:`training.data.DeviceCrops`);
- precision and speed: bf16 autocast (``precision``: ``auto`` = bf16 on CUDA, fp32 on CPU;
  ``bf16`` also on CPUs with bf16 instructions), ``channels_last``, optional ``torch.compile`` of
  the model's sub-networks (``compile``), CPU threads from the config (0 = every core, split
  between the processes of a host);
- optimisation: Adam on the trainable parameters, gradient norm clipped (``grad_clip``), warm-up
  then cosine over ``steps`` or ``max_minutes`` (whichever ends first, so a slow machine still
  anneals), an exponential moving average of the weights (``ema_decay``): the EMA is what
  validates and what ships;
- state: resumable to the step from ``run_dir/checkpoint.pt`` (model, optimizer, EMA, step, wall
  clock, every rank's random generator: the data position), written atomically every
  ``val_every`` steps and every ``checkpoint_minutes``; a tqdm bar; ``run_dir/log.csv`` with the
  loss terms, validation figures and throughput (images/s);
- scale: distributed data parallel when launched by ``torchrun`` (one or many GPUs, one or many
  hosts; gloo on CPU): each rank draws its own crops, gradients are averaged by
  ``DistributedDataParallel``, rank 0 validates and writes checkpoints and weights, and the
  replicas are checked to be identical at the end.

Command line of every script (:meth:`TrainingRun.from_command_line`): ``--config`` and overrides
of its budget, data, output and precision (``--help``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from shared.channel import make_generator
from training.data import DeviceCrops, center_crops, list_images

LossFn = Callable[[nn.Module, torch.Tensor], "tuple[torch.Tensor, dict]"]
"""``loss_fn(model, images (B, 3, S, S) in [0, 1]) -> (scalar loss, {term: value})``; a value is a
number, a label or a detached scalar tensor (read only when logged, so no per-step device sync)."""

DEFAULTS = {"precision": "auto", "channels_last": True, "compile": False, "threads": 0, "grad_clip": 1.0,
            "ema_decay": 0.999, "checkpoint_minutes": 5.0, "find_unused_parameters": False}
"""Loop settings a config may leave out."""


def _override_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--max-minutes", type=float, help="wall-clock budget (minutes); the schedule anneals within it")
    add("--steps", type=int, help="step budget")
    add("--batch-size", type=int, help="crops per step and process")
    add("--run-dir", help="checkpoint and log folder (a run there is resumed)")
    add("--output", help="weights file written at the end")
    add("--init-weights", help="start from the weights in this file (ignored when resuming)")
    add("--train-dirs", nargs="+", metavar="DIR", help="training image folders")
    add("--val-dir", metavar="DIR", help="validation image folder")
    add("--precision", choices=("auto", "fp32", "bf16"), help="auto: bf16 autocast on CUDA, fp32 on CPU")
    add("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the sub-networks")
    add("--threads", type=int, help="CPU threads per process (0: every core, split between local processes)")
    add("--train-modules", nargs="+", metavar="NAME",
        help="train only these sub-modules of the model, the others frozen (e.g. 'synthesis rate_decoder': a "
             "better decoder for the latent the receiver's other networks were trained on)")


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def freeze_except(model: nn.Module, names: list[str]) -> None:
    """Freeze every parameter of ``model`` outside its sub-modules ``names`` (``ValueError`` naming
    the sub-modules there are for a name the model lacks)."""
    children = dict(model.named_children())
    unknown = [name for name in names if name not in children]
    if unknown:
        raise ValueError(f"train_modules: {', '.join(unknown)} not sub-modules of {type(model).__name__} "
                         f"(it has {', '.join(children)})")
    model.requires_grad_(False)
    for name in names:
        children[name].requires_grad_(True)


def learning_rate(cfg: dict, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from ``lr`` to ``min_lr`` as ``progress``
    (the budget fraction spent) goes from 0 to 1."""
    if step < cfg["warmup_steps"]:
        return cfg["lr"] * (step + 1) / cfg["warmup_steps"]
    return cfg["min_lr"] + 0.5 * (cfg["lr"] - cfg["min_lr"]) * (1 + math.cos(math.pi * min(progress, 1.0)))


class _Objective(nn.Module):
    """The model and its loss as one module, so that ``DistributedDataParallel`` wraps a forward
    that runs every sub-network the loss uses (scripts call the model's stage methods)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, images: torch.Tensor):
        return self.loss_fn(self.model, images)


class TrainingRun:
    """One resumable training run of ``cfg`` on ``device`` (module doc); ``rank``/``world_size``
    come from torchrun's environment."""

    def __init__(self, cfg: dict, device: str):
        self.cfg = {**DEFAULTS, **cfg}
        self.rank, self.world_size, local_rank = _distributed()
        if self.world_size > 1 and device == "cuda":
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
        self.device = device
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        threads = self.cfg["threads"] or max(1, len(os.sched_getaffinity(0)) // int(
            os.environ.get("LOCAL_WORLD_SIZE", 1)))
        torch.set_num_threads(threads)
        torch.manual_seed(self.cfg["seed"])  # identical initial weights on every rank
        self.generator = make_generator(self.cfg["seed"] + 1000 * self.rank)
        self.precision = self.cfg["precision"] if self.cfg["precision"] != "auto" else (
            "bf16" if device.startswith("cuda") else "fp32")
        self.run_dir = Path(self.cfg["run_dir"])
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self.log_path = self.run_dir / "log.csv"
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.step, self.elapsed, self.budget_spent = 0, 0.0, 0.0
        self.ema: AveragedModel | None = None  # set by fit(); a loss may read it (the consistency target)
        self.replica_spread = 0.0  # set by fit(): largest difference of the final weights over ranks
        self._start = time.time()
        self._data: DeviceCrops | None = None
        self._val_images: torch.Tensor | None = None

    @classmethod
    def from_command_line(cls, description: str, default_config: str, argv=None) -> "TrainingRun":
        """The run of ``--config`` (JSON, default ``default_config``) with the command line's
        overrides; ``description`` (the script's doc) heads ``--help``."""
        parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--config", default=default_config, help="JSON training config")
        parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
        _override_arguments(parser)
        args = parser.parse_args(argv)
        cfg = json.loads(Path(args.config).read_text())
        for key in ("max_minutes", "steps", "batch_size", "run_dir", "output", "init_weights", "train_dirs",
                    "val_dir", "precision", "compile", "threads", "train_modules"):
            if getattr(args, key) is not None:
                cfg[key] = getattr(args, key)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        return cls(cfg, device)

    @property
    def is_main(self) -> bool:
        """Whether this process validates and writes (rank 0)."""
        return self.rank == 0

    # -- data ---------------------------------------------------------------------------------

    @property
    def data(self) -> DeviceCrops:
        """Random ``crop`` crops of every image under ``train_dirs``, held on the device."""
        if self._data is None:
            files = [f for d in self.cfg["train_dirs"] for f in list_images(d)]
            self._data = DeviceCrops(files, self.cfg["crop"], self.generator, self.device, progress=self.is_main)
        return self._data

    @property
    def val_images(self) -> torch.Tensor:
        """The fixed validation batch: center crops (twice the training crop) of the first
        ``val_images`` images of ``val_dir``."""
        if self._val_images is None:
            files = list_images(self.cfg["val_dir"])[: self.cfg["val_images"]]
            self._val_images = center_crops(files, self.cfg["crop"] * 2).to(self.device)
        return self._val_images

    def frozen(self, path: str) -> nn.Module:
        """The model stored at ``path`` on this run's device, in eval mode, with no gradients:
        a network the run trains against, not one it trains."""
        from shared.models.io import load_model

        return load_model(path, self.device).requires_grad_(False)

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def autocast(self):
        """The run's autocast context (bf16 or disabled)."""
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    # -- the loop -----------------------------------------------------------------------------

    def progress(self) -> float:
        """Fraction of the budget spent (>= 1: done); updates the wall clock."""
        self.elapsed = time.time() - self._start
        return max(self.step / self.cfg["steps"], self.elapsed / (self.cfg["max_minutes"] * 60))

    def fit(self, model: nn.Module, loss_fn: LossFn, validate: Callable[[nn.Module], dict],
            schedule: Callable[[int, float], float] | None = None) -> nn.Module:
        """Train ``model``'s trainable parameters on ``loss_fn`` until the budget is spent and
        return the EMA of its weights (a module of the same class, eval mode, on the device).

        ``validate(ema_model) -> {name: figure}`` runs on rank 0 every ``val_every`` steps (and
        is the script's to call at the end); ``schedule(step, progress) -> lr`` replaces the
        warm-up + cosine schedule. ``--init-weights`` (when not resuming) loads before training.
        """
        cfg = self.cfg
        if cfg.get("init_weights") and not self.has_checkpoint:
            model.load_state_dict(self.frozen(cfg["init_weights"]).state_dict())
        if cfg.get("train_modules"):
            freeze_except(model, cfg["train_modules"])
        memory_format = torch.channels_last if cfg["channels_last"] else torch.contiguous_format
        model.to(self.device, memory_format=memory_format)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=cfg["lr"])
        ema = AveragedModel(model, multi_avg_fn=_warmed_up_ema(cfg["ema_decay"]), use_buffers=True)
        self._resume(model, optimizer, ema)
        self.ema = ema
        if cfg["compile"]:  # after the EMA copy: the EMA validates eagerly
            for child in model.children():
                child.compile()
        objective: nn.Module = _Objective(model, loss_fn)
        if self.world_size > 1:
            objective = nn.parallel.DistributedDataParallel(
                objective, find_unused_parameters=cfg["find_unused_parameters"])
        schedule = schedule or (lambda step, progress: learning_rate(cfg, step, progress))
        bar = tqdm(total=cfg["steps"], initial=self.step, desc=f"training {Path(cfg['run_dir']).name}", unit="step",
                   disable=not self.is_main)
        model.train()
        zero = torch.zeros((), device=self.device)
        last_save, window_start, window_steps, window_loss = time.time(), time.time(), 0, zero
        previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            while True:
                progress, save_now = self._agree(self.progress(), time.time() - last_save > 60 * cfg["checkpoint_minutes"])
                if progress >= 1.0:
                    break
                self.budget_spent = progress  # what every rank agreed on; a loss may read it
                lr = schedule(self.step, progress)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images = self.data.batch(cfg["batch_size"]).contiguous(memory_format=memory_format)
                with self.autocast():
                    loss, terms = objective(images)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg["grad_clip"])
                optimizer.step()
                ema.update_parameters(model)
                self.step += 1
                window_steps += 1
                window_loss = window_loss + loss.detach().float()
                bar.update(1)
                if self.step % 10 == 0:
                    bar.set_postfix(loss=f"{window_loss.item() / window_steps:.4f}", lr=f"{lr:.2e}")
                if self.step % cfg["val_every"] == 0 or save_now:
                    rate = window_steps * cfg["batch_size"] * self.world_size / (time.time() - window_start)
                    if self.step % cfg["val_every"] == 0 and self.is_main:
                        self._log({"step": self.step, "minutes": round(self.elapsed / 60, 2), "lr": lr,
                                   "loss": round(window_loss.item() / window_steps, 6), **_figures(terms),
                                   "images_per_s": round(rate, 2),
                                   **validate(ema.module)})
                    self._save(model, optimizer, ema)
                    last_save, window_start, window_steps, window_loss = time.time(), time.time(), 0, zero
        except KeyboardInterrupt:
            self._save(model, optimizer, ema)
            bar.close()
            raise SystemExit(f"interrupted at step {self.step}: checkpoint saved to {self.checkpoint_path}; "
                             "run the same command to resume")
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
        bar.close()
        self._save(model, optimizer, ema)
        self.replica_spread = self._replica_spread(ema.module)
        return ema.module.eval()

    def _agree(self, progress: float, save_now: bool) -> tuple[float, bool]:
        """Every rank stops and checkpoints at the same step: the largest progress and any rank's
        save request win."""
        if self.world_size == 1:
            return progress, save_now
        flags = torch.tensor([progress, float(save_now)], dtype=torch.float64, device=self.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return float(flags[0]), bool(flags[1])

    def _replica_spread(self, model: nn.Module) -> float:
        """Largest difference, over ranks, of the sum of the final weights (0.0: identical)."""
        if self.world_size == 1:
            return 0.0
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()
        values = torch.stack([checksum, -checksum]).to(self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return float(values[0] + values[1])

    # -- state --------------------------------------------------------------------------------

    def _resume(self, model: nn.Module, optimizer: torch.optim.Optimizer, ema: AveragedModel) -> None:
        if self.has_checkpoint:
            state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            ema.load_state_dict(state["ema"])
            self.step, self.elapsed = state["step"], state["elapsed"]
            generators = state["generators"]
            if self.rank < len(generators):
                self.generator.set_state(generators[self.rank])
            if self.is_main:
                print(f"resumed from {self.checkpoint_path} at step {self.step} ({self.elapsed / 60:.1f} min)")
        self._start = time.time() - self.elapsed

    def _save(self, model: nn.Module, optimizer: torch.optim.Optimizer, ema: AveragedModel) -> None:
        """Write the run state atomically (rank 0; every rank's generator gathered)."""
        self.elapsed = time.time() - self._start
        generators = [self.generator.get_state()]
        if self.world_size > 1:
            generators = [None] * self.world_size
            dist.all_gather_object(generators, self.generator.get_state())
        if not self.is_main:
            return
        partial = self.checkpoint_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "ema": ema.state_dict(),
                    "step": self.step, "elapsed": self.elapsed, "generators": generators, "config": self.cfg},
                   partial)
        partial.replace(self.checkpoint_path)

    def _log(self, record: dict) -> None:
        """Append ``record`` to ``log.csv`` and the console; a record with new columns rewrites
        the file with the widened header (earlier rows leave them empty)."""
        tqdm.write(json.dumps(record))
        rows = self.log()
        columns = list(rows[0]) if rows else []
        columns += [k for k in record if k not in columns]
        row = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in record.items()}
        widened = bool(rows) and len(columns) > len(rows[0])
        with self.log_path.open("w" if widened or not rows else "a", newline="") as f:
            writer = csv.DictWriter(f, columns)
            if widened or not rows:
                writer.writeheader()
                writer.writerows(rows)
            writer.writerow(row)

    def log(self) -> list[dict]:
        """The rows of ``log.csv`` so far (values as strings)."""
        if not self.log_path.is_file():
            return []
        return list(csv.DictReader(self.log_path.open()))

    def export(self, model: nn.Module, script: str, base: str | None = None, base_prefix: str = "", **extra) -> None:
        """Rank 0 writes ``model`` to ``output`` (floats as the config's ``weights_dtype``:
        float16 by default, or int8) with the run's provenance, and prints one JSON line. With
        ``base`` (a weights file), a derived file: only what differs from the base is stored
        (:func:`shared.models.io.save_model`)."""
        if not self.is_main:
            return
        from shared.models.io import save_model

        provenance = {"script": script, "config": self.cfg, "steps": self.step, "minutes": round(self.elapsed / 60, 1),
                      "device": self.device, "world_size": self.world_size, "precision": self.precision,
                      "replica_spread": self.replica_spread, "torch": torch.__version__, **extra}
        save_model(model, self.cfg["output"], provenance, getattr(torch, self.cfg.get("weights_dtype", "float16")),
                   base=base, base_prefix=base_prefix)
        print(json.dumps({"saved": self.cfg["output"], "steps": self.step, **extra}))

    def close(self) -> None:
        """Leave the process group (torchrun runs)."""
        if self.world_size > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def _figures(terms: dict) -> dict:
    """A loss's terms as log values: tensors read (rounded), numbers rounded, labels kept."""
    return {k: round(float(v), 6) if isinstance(v, (torch.Tensor, float)) else v for k, v in terms.items()}


def _warmed_up_ema(decay: float):
    """The EMA update for :class:`AveragedModel`: decay ``min(decay, (1 + n) / (10 + n))`` after n
    updates, so that a short run's EMA is not held at its initial weights."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = float(num_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        floating = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floating:
            torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], weight)

    return update


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
