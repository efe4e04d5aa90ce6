"""Turning models into result rows: the metrics of STUDY.md section 5 gathered per method."""
from __future__ import annotations

import torch

from .artifacts import Run, load_checkpoint
from .metrics import accuracy_rows
from .models import TappedNet
from .results import result_row


def reference_rows(
    run: Run, model: TappedNet, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], method: str, seed: int
) -> list[dict]:
    """`accuracy` on every split and the training `wall_time` (seconds, from the checkpoint) of a reference model."""
    meta = load_checkpoint(run.checkpoint_path(method, seed))["meta"]
    return accuracy_rows(model, splits, method, seed) + [result_row(seed, method, "wall_time", meta["wall_time"])]
