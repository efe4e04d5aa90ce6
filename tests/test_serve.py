"""The commands behind `make lab` and `make explore`: what they serve, to whom, and what they refuse."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import ecnb
from ecnb import serve
from ecnb.config import ConfigError, StudyConfig
from ecnb.results import result_row


@pytest.mark.parametrize("uid, allowed", [(0, True), (1000, False)])
def test_lab_starts_as_root_and_as_a_user(monkeypatch, uid, allowed):
    monkeypatch.setattr(serve.os, "geteuid", lambda: uid)
    cmd = serve.lab_command()
    assert ("--allow-root" in cmd) is allowed
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--no-browser" not in cmd


def test_lab_serves_the_project_so_executed_notebooks_open():
    cmd = serve.lab_command(port=8890, token="abc", browser=False)
    root = Path(next(a for a in cmd if a.startswith("--ServerApp.root_dir=")).split("=", 1)[1])
    default_run = Path(StudyConfig().run_dir).resolve()
    assert (root / "notebooks" / "04_representations.ipynb").exists()
    assert default_run.is_relative_to(root), "the study's run directories are inside the server's root"
    assert "--LabApp.default_url=/lab/tree/notebooks" in cmd
    assert {"--port=8890", "--IdentityProvider.token=abc", "--no-browser"} <= set(cmd)


def finished_run(tmp_path: Path) -> ecnb.Run:
    run = ecnb.Run.open(StudyConfig.from_options(run_dir=str(tmp_path / "run"), seeds=[0, 2]))
    ecnb.write_results(run.root, [result_row(0, "original", "accuracy", 1.0, split="test_retain")])
    return run


def test_app_notebook_takes_the_sample_that_notebook_04_used(tmp_path):
    run = finished_run(tmp_path)
    executed = run.root / "notebooks" / "seed2" / serve.REPRESENTATIONS
    executed.parent.mkdir(parents=True)
    recorded = {"run_dir": "elsewhere", "seed": 2, "n_retain": 60, "n_forget": 20, "n_neighbors": 10,
                "interactive": False}
    executed.write_text(json.dumps({"cells": [], "metadata": {"papermill": {"parameters": recorded}}}))
    path = serve.app_notebook(run.root, seed=2)
    assert path == run.root / "notebooks" / "seed2" / "explorer_app.ipynb"
    nb = nbformat.read(path, as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec(injected.source, namespace)
    assert {k: namespace[k] for k in ("run_dir", "seed", "n_retain", "n_forget", "n_neighbors")} == {
        "run_dir": str(run.root.absolute()), "seed": 2, "n_retain": 60, "n_forget": 20, "n_neighbors": 10}
    assert "interactive" not in namespace, "the app's widgets are always live"
    first = nbformat.read(serve.app_notebook(run.root), as_version=4)
    assert "seed = 0" in next(c for c in first.cells if "injected-parameters" in c.metadata.get("tags", [])).source


def test_app_notebook_refuses_an_unfinished_run_and_an_unknown_seed(tmp_path):
    run = ecnb.Run.open(StudyConfig.from_options(run_dir=str(tmp_path / "run")))
    with pytest.raises(ConfigError, match="has no results.csv yet: run the study first"):
        serve.app_notebook(run.root)
    run = finished_run(tmp_path / "done")
    with pytest.raises(ConfigError, match=r"seed 5 is not in the run; its seeds: 0, 2"):
        serve.app_notebook(run.root, seed=5)


def test_explore_command_names_a_missing_run_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ecnb", "explore", str(tmp_path / "nothing"), "--no-browser"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and done.stderr.startswith("ecnb: error:") and done.stderr.count("\n") == 1, done.stderr


def test_the_app_is_not_a_study_notebook():
    assert serve.APP_NOTEBOOK not in ecnb.study.notebook_paths()
    nb = nbformat.read(serve.APP_NOTEBOOK, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    assert all(not c.get("outputs") for c in nb.cells), "committed without outputs"
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
