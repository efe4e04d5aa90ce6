"""Local servers for people: JupyterLab over the project, and a finished run's explorer as a Voila app.

Both listen on loopback only. They are plain command lines (run by `make lab` / `make explore` and by the
browser tests), so what the tests drive is what a person starts.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .artifacts import Run
from .config import ConfigError
from .study import NOTEBOOKS_DIR

PROJECT_DIR = NOTEBOOKS_DIR.parent
APP_NOTEBOOK = NOTEBOOKS_DIR / "explorer_app.ipynb"
REPRESENTATIONS = "04_representations.ipynb"
# The app's own parameters; the UMAP ones come from the run's executed notebook 04 when it has one,
# so the app reads the embeddings that the study cached instead of fitting new ones.
APP_PARAMETERS = ("seed", "device", "n_retain", "n_forget", "n_neighbors", "min_dist", "n_epochs")


def _root_flags() -> list[str]:
    """Jupyter refuses to start as root unless told; containers often run as root."""
    return ["--allow-root"] if os.geteuid() == 0 else []


def lab_command(port: int | None = None, token: str | None = None, browser: bool = True,
                root: Path = PROJECT_DIR) -> list[str]:
    """`jupyter lab` over the whole project, opening on `notebooks/`: the executed notebooks of every run
    (`runs/<name>/notebooks/`) are inside its root, so a person can open them next to the sources."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1",
           "--LabApp.default_url=/lab/tree/notebooks", *_root_flags()]
    return cmd + _server_flags(port, browser) + ([] if token is None else [f"--IdentityProvider.token={token}"])


def app_notebook(run_dir: str | Path, seed: int | None = None) -> Path:
    """The explorer app for one seed of a finished run, parameterised and written into the run directory.

    Refuses a run without results: the app reads the run, it never trains or unlearns.
    """
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    run = Run.load(run_dir)
    if not (run.root / "results.csv").exists():
        raise ConfigError(f"{run.root} has no results.csv yet: run the study first (make study)")
    seeds = run.config.seeds
    seed = seeds[0] if seed is None else seed
    if seed not in seeds:
        raise ConfigError(f"seed {seed} is not in the run; its seeds: {', '.join(map(str, seeds))}")
    params: dict[str, Any] = {**_umap_parameters(run.root / "notebooks" / f"seed{seed}" / REPRESENTATIONS),
                              "seed": seed, "run_dir": str(run.root.absolute())}
    nb = parameterize_notebook(load_notebook_node(str(APP_NOTEBOOK)), params)
    target = run.root / "notebooks" / f"seed{seed}" / "explorer_app.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target


def _umap_parameters(executed: Path) -> dict[str, Any]:
    """The sample and UMAP settings that the run's notebook 04 used (papermill records them), if it ran."""
    if not executed.exists():
        return {}
    recorded = json.loads(executed.read_text()).get("metadata", {}).get("papermill", {}).get("parameters", {})
    return {k: v for k, v in recorded.items() if k in APP_PARAMETERS}


def explore_command(notebook: Path, port: int | None = None, token: str | None = None,
                    browser: bool = True) -> list[str]:
    """Voila serving the explorer app: widgets and figures, no code cells, one kernel per visitor.

    Rendered progressively: each cell's outputs are shown as it finishes, and a widget once its model exists.
    Voila's default (the whole page, then the widgets restored from the kernel) now and then shows "Error
    displaying widget: model not found" for one of the app's widgets: 6 of 8 visits on a loaded 2-core
    machine, 0 of 18 progressively."""
    cmd = [sys.executable, "-m", "voila", str(notebook), "--Voila.ip=127.0.0.1",
           "--VoilaConfiguration.progressive_rendering=True", *_server_flags(port, browser)]
    return cmd + ([] if token is None else [f"--token={token}"])


def _server_flags(port: int | None, browser: bool) -> list[str]:
    """The options JupyterLab and Voila spell alike: a port (else their default), and no browser tab."""
    return ([] if port is None else [f"--port={port}"]) + ([] if browser else ["--no-browser"])
