"""What ``tests/test_training.py`` launches with torchrun: :meth:`TrainingRun.fit` on a 1x1
convolution learning to invert the colours of the crops (a task a few steps learn), then a
JSON line with the replicas' spread and the run's log."""

from __future__ import annotations

import json
import sys

import torch
from torch import nn

from training.loop import TrainingRun


def main(argv=None) -> None:
    run = TrainingRun.from_command_line(__doc__, "", argv)

    def loss_fn(model: nn.Module, images: torch.Tensor):
        return nn.functional.mse_loss(model(images), 1 - images), {}

    run.fit(nn.Sequential(nn.Conv2d(3, 3, 1)), loss_fn, lambda ema: {})
    if run.is_main:
        print(json.dumps({"replica_spread": run.replica_spread, "world_size": run.world_size, "log": run.log()}))
    run.close()


if __name__ == "__main__":
    main(sys.argv[1:])
