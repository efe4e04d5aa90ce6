"""The sweep the repository ships: the default sweep's merged tables, small enough to commit, so that notebook 05
(and a class without forty minutes to spare) reads the study's verdicts and claims over cells without running it.

`ship(sweep_dir)` copies a finished sweep's verdicts, summary, claims and null tests into `SHIPPED_DIR`, with the
part of its results that notebook 05 draws (the relearning curves), and records what made it: per profile (one per
data set in the default sweep), the method hyperparameters (their digest), training recipe, attack settings and
population, and the cells.
`stale(...)` names every one of those that no longer matches the code, so a test fails when the shipped tables
were made with other settings than the code's current ones (`make ship-sweep` makes them again).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .artifacts import ArtifactError
from .config import POPULATION, PROFILES, SWEEP_DATASETS, SWEEP_SEEDS, sweep_scope
from .files import atomic_write
from .methods import table_digest
from .sweep import SHIPPED_DIR, grid, load

TABLES = ("verdicts", "summary", "claims", "null_tests")
KEPT_METRICS = ("relearn_accuracy", "split_size")  # of results.csv: the curves notebook 05 draws, and their n
RECORD = "shipped.json"
README = SHIPPED_DIR.parents[1] / "README.md"
# The README's findings lie between these two lines, written by `ship` from the shipped tables.
FINDINGS_START = "<!-- findings: written from shipped/sweep by `python -m ecnb ship`; do not edit by hand -->"
FINDINGS_END = "<!-- end of findings -->"


def ship(sweep_dir: str | Path, target: Path = SHIPPED_DIR) -> Path:
    """Copy the finished sweep at `sweep_dir` into `target` (its tables, the relearning rows of its results, its
    `sweep.json`) and record what made it in `shipped.json`. Returns `target`."""
    root = Path(sweep_dir)
    tables = load(root)
    cells = json.loads((root / "sweep.json").read_text())
    configs = [c for c in (_cell_config(root, cell) for cell in cells["cells"]) if c is not None]
    if not configs:
        raise ArtifactError(f"{root}: no cell of this sweep has started (no cells/<cell>/config.json); nothing to ship")
    firsts: dict[str, dict] = {}  # each profile's first cell
    for config in configs:
        firsts.setdefault(config["profile"], config)
    target.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        atomic_write(target / f"{name}.csv", lambda tmp, t=tables[name]: t.to_csv(tmp, index=False))
    results = tables["results"][tables["results"]["metric"].isin(KEPT_METRICS)]
    atomic_write(target / "results.csv", lambda tmp: results.to_csv(tmp, index=False))
    atomic_write(target / "sweep.json", lambda tmp: tmp.write_text(json.dumps(cells, indent=1)))
    profiles = {profile: settings(profile, config) for profile, config in firsts.items()}
    record = {"from": root.name, "made": time.strftime("%Y-%m-%d"), "cells": cells["cells"], "profiles": profiles}
    atomic_write(target / RECORD, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    if target == SHIPPED_DIR and README.exists():
        write_findings()
    return target


def findings(path: Path = SHIPPED_DIR) -> str:
    """The README's findings paragraphs, written from the shipped sweep's tables (`ecnb.prose.sweep_findings`)."""
    from .prose import sweep_findings

    return str(sweep_findings(load(path)))


def _findings_span(text: str) -> tuple[int, int]:
    """Where the README's findings lie: between the end of the first marker and the start of the second."""
    return text.index(FINDINGS_START) + len(FINDINGS_START), text.index(FINDINGS_END)


def readme_findings(readme: Path = README) -> str:
    """The findings the README shows now: the text between its two markers."""
    text = readme.read_text()
    start, end = _findings_span(text)
    return text[start:end].strip()


def write_findings(readme: Path = README, path: Path = SHIPPED_DIR) -> None:
    """Replace the README's findings (between its markers) with those of the shipped sweep at `path`, so that its
    opening never quotes a number the shipped tables do not hold."""
    text = readme.read_text()
    start, end = _findings_span(text)
    new = f"{text[:start]}\n{findings(path)}\n{text[end:]}"
    atomic_write(readme, lambda tmp: tmp.write_text(new))


def _cell_config(root: Path, cell: str) -> dict | None:
    """A cell's `config.json`, or None for a cell whose study never started (its process died first)."""
    path = root / "cells" / cell / "config.json"
    return json.loads(path.read_text()) if path.exists() else None


def settings(profile: str, config: dict | None = None) -> dict:
    """What a shipped sweep's numbers depend on: the profile's method hyperparameters (digest), and the training
    recipe, attack settings, population and scope of `config` (a cell's `config.json`) or, without one, the code's
    current defaults for a sweep's cells."""
    if config is None:
        current = PROFILES[profile]
        config = {"train": vars(current["train"]), "attacks": {**vars(current["attacks"]),
                  "relearn_steps": list(current["attacks"].relearn_steps)}, "population": POPULATION["full"],
                  "scope": sweep_scope(profile)}
    return {"hparams": table_digest(profile), "train": config["train"], "attacks": config["attacks"],
            "population": config["population"], "scope": config["scope"]}


def record(path: Path = SHIPPED_DIR) -> dict | None:
    """The shipped sweep's record, or None when `path` holds no shipped sweep."""
    file = path / RECORD
    return json.loads(file.read_text()) if file.exists() else None


def stale(path: Path = SHIPPED_DIR) -> list[str]:
    """The settings the shipped sweep at `path` was made with that differ from the code's current ones, and its
    cells where they are not the default sweep's (empty when it is up to date)."""
    made = record(path)
    if made is None:
        return [f"{path} holds no shipped sweep"]
    default = [c.name for c in grid(list(SWEEP_DATASETS), None, list(SWEEP_SEEDS))]
    changed = [] if made["cells"] == default else [
        f"cells: shipped {len(made['cells'])} ({', '.join(made['cells'])}) but the default sweep runs {len(default)}"]
    for profile, shipped in made["profiles"].items():
        now = settings(profile)
        changed += [f"{profile} {key}: shipped {shipped[key]} but now {now[key]}" for key in now if shipped[key] != now[key]]
    return changed


def label(sweep_dir: Path) -> str:
    """One line for notebook 05: whether it reads the shipped sweep (and whether the code has moved on since)."""
    made = record(sweep_dir)
    if made is None:
        return f"Reading the sweep in {sweep_dir}."
    changed = stale(sweep_dir)
    return (f"Reading the sweep shipped with the repository ({made['from']}, made {made['made']}, "
            f"{len(made['cells'])} cells): run `make sweep` for one of your own. "
            + (f"The code's settings have changed since ({'; '.join(changed)}): its numbers may differ from a new run."
               if changed else "It was made with the code's current settings."))
