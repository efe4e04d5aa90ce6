"""What each model did on every image the verdicts read, kept so that every gap can be resampled.

`results.csv` holds each figure once (an accuracy, a probe's recall); a verdict also needs to know how much
that figure would move with other test images, other attacker's draws and another retrained model. So
measuring a model also stores, per image, the outcomes behind its figures (`Outcomes`), and the verdicts
(`ecnb.verdicts.population`) resample them jointly for the method and the retrained population.

File: `run.seed_dir(seed)/outcomes/<method>.npz` (uncompressed, loaded with `allow_pickle=False`), written
atomically after the method's rows, removed with its cached features when the model is recomputed and
with the attack images when the attack settings change. A file whose arrays do not fit together is
reported as missing, never half-read.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifacts import OUTCOMES_DIR, Run, atomic_write


@dataclass(frozen=True)
class Outcomes:
    """One model's per-image outcomes.

    - `relearn` (relearning draws x grid steps x `test_forget` images): correct after that many steps of the
      relearning attack on that draw of the attacker's images;
    - `fewshot` (probe draws x taps x `test_forget` images): the few-shot probe of that tap, fitted on that
      draw, answers the image correctly;
    - `forget_top` (`forget_train` images): the model's top-class probability (the output distance's input);
    - `retain_correct` (`test_retain` images): the model classifies the image correctly (the retain cost's).

    Random-sample forgetting has no forgotten class to recover: its attack arrays have no draws.
    """

    relearn: np.ndarray
    steps: tuple[int, ...]
    fewshot: np.ndarray
    taps: tuple[str, ...]
    forget_top: np.ndarray
    retain_correct: np.ndarray

    def __post_init__(self) -> None:
        if self.relearn.ndim != 3 or self.fewshot.ndim != 3:
            raise ValueError("relearn and fewshot outcomes are (draws, steps or taps, images)")
        if self.relearn.shape[1] != len(self.steps) or self.fewshot.shape[1] != len(self.taps):
            raise ValueError("one relearning outcome per grid step and one probe outcome per tap")
        if self.relearn.size and self.fewshot.size and self.relearn.shape[2] != self.fewshot.shape[2]:
            raise ValueError("both attacks are scored on the same test_forget images")

    @property
    def has_attacks(self) -> bool:
        return self.relearn.shape[0] > 0 and self.fewshot.shape[0] > 0


def save_outcomes(run: Run, method: str, seed: int, outcomes: Outcomes) -> Path:
    """Write `method`'s outcomes for `seed` atomically."""
    return write_outcomes(run.outcomes_path(method, seed), outcomes)


def load_outcomes(run: Run, method: str, seed: int) -> Outcomes | None:
    """`method`'s outcomes for `seed`, or None when there is no complete, consistent file."""
    return read_outcomes(run.outcomes_path(method, seed))


def write_outcomes(path: Path, outcomes: Outcomes) -> Path:
    """`outcomes` as an uncompressed npz at `path`, written atomically."""
    buf = io.BytesIO()
    np.savez(buf, relearn=outcomes.relearn.astype(bool), steps=np.asarray(outcomes.steps, dtype=np.int64),
             fewshot=outcomes.fewshot.astype(bool), taps=np.asarray(outcomes.taps, dtype=str),
             forget_top=outcomes.forget_top.astype(np.float64), retain_correct=outcomes.retain_correct.astype(bool))
    return atomic_write(path, lambda tmp: tmp.write_bytes(buf.getvalue()))


def read_outcomes(path: Path) -> Outcomes | None:
    """The outcomes at `path`, or None when there is no complete, consistent file."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return Outcomes(f["relearn"], tuple(int(s) for s in f["steps"]), f["fewshot"], tuple(str(t) for t in f["taps"]),
                            f["forget_top"], f["retain_correct"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def remove_outcomes(run: Run, seed: int | None = None, method: str | None = None) -> None:
    """Delete the outcome files of `method` (its model changed; None: every method's, when the attack settings
    changed), in seed `seed` (None: every seed). Names are compared exactly: `ec[last]` holds glob characters."""
    folders = [run.seed_dir(seed) / OUTCOMES_DIR] if seed is not None else list(run.root.glob(f"seed*/{OUTCOMES_DIR}"))
    for folder in folders:
        for path in folder.iterdir() if folder.is_dir() else ():
            if path.suffix == ".npz" and (method is None or path.stem == method):
                path.unlink()
