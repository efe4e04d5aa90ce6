"""The notebooks and the study command, executed for real by papermill on tiny parameters."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import ecnb
from ecnb.config import ConfigError, StudyConfig
from ecnb.study import NOTEBOOKS_DIR, execute_notebook, notebook_parameters, study_lock


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Notebook 01 executed once on tiny parameters (class 5 forgotten, seed 1, 3 epochs, 40 training and
    20 test images per class, relearning scored up to the reference step); the kernel's private socket folder
    goes to a temporary folder of the test's own: (config, executed, that folder)."""
    root = tmp_path_factory.mktemp("tiny")
    config = StudyConfig.from_options(epochs=3, run_dir=str(root / "run"), forget_classes=[5], train_per_class=40,
                                      test_per_class=20, relearn_steps=[0, 5, 10])
    executed = root / "01.ipynb"
    sockets = root / "tmp"
    sockets.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(sockets))
        execute_notebook(NOTEBOOKS_DIR / "01_train_original.ipynb", executed, notebook_parameters(config, seed=1))
    return config, executed, sockets


def test_the_kernel_leaves_no_socket_folder_behind(tiny_run):
    assert list(tiny_run[2].iterdir()) == []


def plotly_outputs(path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [o for c in nb["cells"] for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})]


def test_notebook_01_runs_and_writes_its_rows(tiny_run):
    config, executed, _ = tiny_run
    df = ecnb.read_results(config.run_dir)
    acc = df[df["metric"] == "accuracy"]
    assert set(acc["method"]) == {"original", "retrain"} and set(df["seed"]) == {1}
    assert set(acc["split"]) == {"forget_train", "retain_train", "test_retain", "test_forget"}
    assert set(df[df["metric"] == "wall_time"]["method"]) == {"original", "retrain"}
    assert (Path(config.run_dir) / "seed1" / "models" / "retrain.pt").exists()
    assert len(plotly_outputs(executed)) == 2, "the sample grid and the per-class accuracy figure"
    retrain_forget = acc[(acc["method"] == "retrain") & (acc["split"] == "forget_train")]["value"].item()
    assert retrain_forget < 0.2, "retrain never saw class 5"


def test_notebook_02_runs_every_baseline_and_writes_its_rows(tiny_run, tmp_path):
    config, _, _ = tiny_run
    executed = tmp_path / "02.ipynb"
    params = {**notebook_parameters(config, seed=1), "methods": ecnb.ec.baselines()}
    execute_notebook(NOTEBOOKS_DIR / "02_superficial_forgetting.ipynb", executed, params)
    df = ecnb.read_results(config.run_dir)
    taps = ecnb.build_model(config.model, 1, 10).taps
    for method in ["original", "retrain", *ecnb.ec.baselines()]:
        rows = df[df["method"] == method]
        assert set(rows[rows["metric"] == "accuracy"]["split"]) == {"forget_train", "retain_train", "test_retain", "test_forget"}, method
        assert len(rows[rows["metric"] == "mia_efficacy"]) == 1, method
        for metric in ("cka_to_original", "cka_to_retrain"):
            cka = rows[(rows["metric"] == metric) & (rows["split"] == "forget_train")]
            assert list(cka["layer"]) == taps, f"{method} {metric} in network order"
        assert list(rows[rows["metric"] == "probe_accuracy"]["layer"]) == taps, method
        assert list(rows[rows["metric"] == "fewshot_probe_accuracy"]["layer"]) == taps, method
        steps = [f"step{n}" for n in config.attacks.relearn_steps]
        assert list(rows[rows["metric"] == "relearn_accuracy"]["layer"]) == steps, f"{method}: every step of the grid"
        assert len(rows[rows["metric"] == "wall_time"]) == 1, method
    assert not df.duplicated(["seed", "method", "metric", "layer", "split"]).any()
    own = df[(df["metric"] == "cka_to_original") & (df["method"] == "original")]["value"]
    assert own.min() > 0.999, "a model is identical to itself"
    # accuracy, MIA, relearning curves, few-shot probe, two CKA curves, full-data probe, the evidence map
    assert len(plotly_outputs(executed)) == 8
    text = executed.read_text()
    assert "relearn at step 10" in text and "at least two baselines are superficial" in text
    assert (Path(config.run_dir) / "seed1" / "models" / "ga.pt").exists()


def test_notebook_03_runs_ec_its_plugins_and_the_ablation(tiny_run, tmp_path):
    config, _, _ = tiny_run
    executed = tmp_path / "03.ipynb"
    params = {**notebook_parameters(config, seed=1, methods=["ga", "rl"], ablations=["ec[last]"])}
    execute_notebook(NOTEBOOKS_DIR / "03_erase_at_the_core.ipynb", executed, params)
    df = ecnb.read_results(config.run_dir)
    taps = ecnb.build_model(config.model, 1, 10).taps
    for method in ["ec", "ga+ec", "rl+ec", "ec[last]", "ec+proto", "ga+ec+proto", "rl+ec+proto"]:
        rows = df[(df["method"] == method) & (df["seed"] == 1)]
        cka = rows[(rows["metric"] == "cka_to_original") & (rows["split"] == "forget_train")]
        assert list(cka["layer"]) == taps, method
        assert len(rows[rows["metric"] == "accuracy"]) == 4 and len(rows[rows["metric"] == "wall_time"]) == 1, method
    assert not df.duplicated(["seed", "method", "metric", "layer", "split"]).any()
    assert (Path(config.run_dir) / "seed1" / "models" / "rl+ec.pt").exists()
    for method in ["ec", "ga+ec", "ec[last]"]:
        rows = df[(df["method"] == method) & (df["seed"] == 1)]
        assert {"fewshot_probe_accuracy", "relearn_accuracy"} <= set(rows["metric"]), method
    text = executed.read_text()
    assert "claims hold in this run" in text, "the verdict cell ran and printed its count"
    assert "claims about the variants hold in this run" in text
    # accuracy, relearning, few-shot, CKA; three plug-in bars; ablation CKA and relearning; evidence map;
    # the variant's relearning and few-shot, its plug-ins' two bars; per layer
    assert len(plotly_outputs(executed)) == 15


def test_study_command_end_to_end(tmp_path):
    run_dir = tmp_path / "study"

    def study(*seeds: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "ecnb", "study", "--epochs", "2", "--seeds", *seeds, "--run-dir", str(run_dir),
               "--methods", "ga", "--ablations", "--train-per-class", "40", "--test-per-class", "20",
               "--relearn-steps", "0", "5", "10"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    first = study("0", "1")
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

    # The same study again for one of its seeds: every notebook runs again, every model comes from its checkpoint.
    checkpoints = {p: p.stat().st_mtime_ns for p in (run_dir / "seed1" / "models").glob("*.pt")}
    assert {"original.pt", "ga.pt", "ec.pt", "ga+ec.pt"} <= {p.name for p in checkpoints}
    second = study("1")
    assert second.returncode == 0, second.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints, "a second study reuses the checkpoints"
    assert ecnb.read_results(run_dir).drop(columns="value").equals(df.drop(columns="value"))


def test_a_second_study_on_the_same_run_dir_is_refused(tmp_path):
    with study_lock(tmp_path):
        with pytest.raises(ConfigError, match="in use by another study"):
            with study_lock(tmp_path):
                pass
