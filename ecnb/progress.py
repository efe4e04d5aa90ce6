"""Progress bars that read the same in a terminal, a notebook and the saved report.

tqdm.auto draws a widget in a notebook kernel; a notebook saved by papermill keeps only the widget's first
text ("methods: 0%| 0/13"), which the report then shows frozen. A text bar on stdout is a stream instead:
Jupyter and the report (its streams coalesced, carriage returns applied) show its last state."""
from __future__ import annotations

import sys
from typing import Any

from tqdm.std import tqdm


def text_bar(**kwargs: Any) -> tqdm:
    """A bar over jobs, on stdout: in a notebook it reads as plain output (stderr is shown as an error), and its
    last state stays legible in the saved notebook and the report."""
    return tqdm(file=sys.stdout, **kwargs)


def epoch_bar(epochs: int, desc: str) -> tqdm:
    """A bar over one model's epochs, shown on a terminal only (tqdm's `disable=None`: off where stderr is not a
    tty): in a notebook one such bar per model would bury the cell's output, and the jobs' bar says enough."""
    return tqdm(range(epochs), desc=desc, unit="epoch", leave=False, disable=None)
