"""The study's metrics (STUDY.md section 5), each defined here once."""
from __future__ import annotations

import torch
import torch.nn as nn

from .results import result_row
from .train import predict


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of samples whose arg-max prediction is the true label (we report accuracy, not 1 - accuracy)."""
    if len(y) == 0:
        raise ValueError("accuracy of an empty split is undefined")
    return (logits.argmax(1).cpu() == y.cpu()).float().mean().item()


def per_class_accuracy(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float]:
    """Accuracy on each class's samples (NaN for a class with none)."""
    pred, y = logits.argmax(1).cpu(), y.cpu()
    return [
        (pred[y == c] == c).float().mean().item() if (y == c).any() else float("nan") for c in range(num_classes)
    ]


def accuracy_rows(
    model: nn.Module, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], method: str, seed: int
) -> list[dict]:
    """`accuracy` rows for every non-empty split (random-sample forgetting has no `test_forget`)."""
    return [
        result_row(seed, method, "accuracy", accuracy(predict(model, x), y), split=name)
        for name, (x, y) in splits.items()
        if len(y)
    ]
