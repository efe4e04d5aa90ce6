"""The notebooks and the study command, executed for real by papermill on tiny parameters."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import ecnb
from ecnb.config import ConfigError, StudyConfig
from ecnb.study import NOTEBOOKS_DIR, execute_notebook, notebook_parameters, study_lock


def test_notebook_01_runs_and_writes_its_rows(tmp_path):
    config = StudyConfig.from_options(epochs=2, run_dir=str(tmp_path / "run"), forget_classes=[5])
    out = tmp_path / "01.ipynb"
    execute_notebook(NOTEBOOKS_DIR / "01_train_original.ipynb", out, notebook_parameters(config, seed=1))
    df = ecnb.read_results(tmp_path / "run")
    acc = df[df["metric"] == "accuracy"]
    assert set(acc["method"]) == {"original", "retrain"} and set(df["seed"]) == {1}
    assert set(acc["split"]) == {"forget_train", "retain_train", "test_retain", "test_forget"}
    assert set(df[df["metric"] == "wall_time"]["method"]) == {"original", "retrain"}
    assert (tmp_path / "run" / "seed1" / "models" / "retrain.pt").exists()
    executed = json.loads(out.read_text())
    figures = [o for c in executed["cells"] for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 2, "the sample grid and the per-class accuracy figure"
    retrain_forget = acc[(acc["method"] == "retrain") & (acc["split"] == "forget_train")]["value"].item()
    assert retrain_forget < 0.2, "retrain never saw class 5"


def test_study_command_end_to_end(tmp_path):
    run_dir = tmp_path / "study"
    cmd = [sys.executable, "-m", "ecnb", "study", "--epochs", "2", "--seeds", "0", "1", "--run-dir", str(run_dir)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "report: " in first.stdout and "±" in first.stdout, "summary with mean ± std over two seeds"
    df = ecnb.read_results(run_dir)
    assert set(df["seed"]) == {0, 1}
    assert not df.duplicated(["seed", "method", "metric", "layer", "split"]).any()
    for name in ("config.json", "results.csv", "report.html", "seed0/split.json", "seed1/models/original.pt",
                 "notebooks/seed1/01_train_original.ipynb"):
        assert (run_dir / name).exists(), name
    html = (run_dir / "report.html").read_text()
    assert html.count("plotly.js v") >= 1 and 'src="http' not in html

    checkpoint = run_dir / "seed0" / "models" / "original.pt"
    stamp = checkpoint.stat().st_mtime_ns
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert checkpoint.stat().st_mtime_ns == stamp, "a second study reuses the checkpoints"
    assert ecnb.read_results(run_dir).drop(columns="value").equals(df.drop(columns="value"))


def test_a_second_study_on_the_same_run_dir_is_refused(tmp_path):
    with study_lock(tmp_path):
        with pytest.raises(ConfigError, match="in use by another study"):
            with study_lock(tmp_path):
                pass
