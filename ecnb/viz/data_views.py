"""The data before any model: training samples per class with the forget set framed, accuracy per class."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from ..data import Dataset, ForgetSplit
from .style import FORGET_COLOR, method_color


def sample_grid(ds: Dataset, split: ForgetSplit, per_class: int = 8, seed: int = 0) -> go.Figure:
    """One row of training images per class, tiled into a single image; forget-set images framed in red."""
    rng = np.random.default_rng(seed)
    y = ds.y_train.cpu().numpy()
    forget = np.zeros(len(y), dtype=bool)
    forget[split.forget_idx] = True
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(ds.num_classes)])
    images = to_image_batch(ds.x_train[torch.as_tensor(idx, device=ds.x_train.device)])
    h, w = images.shape[1:3]
    b = max(1, h // 12)  # frame width
    tiles = np.full((len(idx), h + 2 * b, w + 2 * b, 3), 255, dtype=np.uint8)
    tiles[forget[idx]] = np.array([214, 39, 40], dtype=np.uint8)
    tiles[:, b : b + h, b : b + w] = images
    th, tw = tiles.shape[1:3]
    grid = tiles.reshape(ds.num_classes, per_class, th, tw, 3).transpose(0, 2, 1, 3, 4)
    fig = go.Figure(go.Image(z=grid.reshape(ds.num_classes * th, per_class * tw, 3), hoverinfo="skip"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(
        tickvals=[(c + 0.5) * th for c in range(ds.num_classes)], ticktext=ds.classes, title="class", showgrid=False
    )
    fig.update_layout(
        title="Training samples, one row per class (forget set framed in red)",
        height=min(900, 48 * ds.num_classes + 90), width=520, margin=dict(l=60, r=10, t=50, b=10),
    )
    return fig


def per_class_accuracy_figure(
    accuracies: dict[str, list[float]], classes: list[str], forget_classes: tuple[int, ...]
) -> go.Figure:
    """Grouped bars of test accuracy per class for each model; forgotten classes' labels in red."""
    labels = [f"<b style='color:{FORGET_COLOR}'>{c} (forgotten)</b>" if i in forget_classes else c
              for i, c in enumerate(classes)]
    fig = go.Figure([
        go.Bar(name=method, x=labels, y=acc, marker_color=method_color(method))
        for method, acc in accuracies.items()
    ])
    fig.update_layout(
        barmode="group", title="Test accuracy per class", yaxis=dict(title="accuracy", range=[0, 1.05]),
        xaxis_title="class", legend_title="model", height=380,
    )
    return fig


def to_image_batch(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) normalised tensors as (N, H, W, 3) uint8 images, each scaled to its own range."""
    x = x.detach().cpu().float()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo + 1e-8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return (x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
