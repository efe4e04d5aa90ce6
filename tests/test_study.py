"""The notebooks and the study command, executed for real by papermill on tiny parameters."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED, TINY_STUDY

import ecnb
from ecnb.config import ConfigError, StudyConfig
from ecnb.results import KEY
from ecnb.study import NOTEBOOKS_DIR, execute_notebook, notebook_parameters, study_lock

pytestmark = pytest.mark.xdist_group(SHARED)


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


def markdown_outputs(path) -> str:
    """Every Markdown output of an executed notebook (the answers written from the run's numbers)."""
    nb = json.loads(path.read_text())
    return "\n".join("".join(o["data"]["text/markdown"]) for c in nb["cells"] for o in c.get("outputs", [])
                     if "text/markdown" in o.get("data", {}))


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
        for metric, split in (("output_entropy", "forget_train"), ("output_ks_to_retrain", "test_forget")):
            assert len(rows[(rows["metric"] == metric) & (rows["split"] == split)]) == 1, (method, metric)
        assert list(rows[rows["metric"] == "weight_distance"]["layer"]) == ["", *taps[:-1], "head"], method
        interpolation = rows[(rows["metric"] == "interpolation_accuracy") & (rows["split"] == "test_forget")]
        assert list(interpolation["layer"]) == ["t0.00", "t0.25", "t0.50", "t0.75", "t1.00"], method
        forget_acc = rows[(rows["metric"] == "accuracy") & (rows["split"] == "test_forget")]["value"].item()
        assert interpolation["value"].iloc[-1] == forget_acc, f"{method}: t = 1 is the method itself"
    assert not df.duplicated(["seed", "method", "metric", "layer", "split"]).any()
    own = df[(df["metric"] == "cka_to_original") & (df["method"] == "original")]["value"]
    assert own.min() > 0.999, "a model is identical to itself"
    # accuracy, entropy, KS, MIA; relearning, few-shot probe; interpolation, distance scatter; two CKA curves,
    # the full-data probe; the evidence map
    assert len(plotly_outputs(executed)) == 12
    text = markdown_outputs(executed)
    assert "The claim \"at least two baselines are superficial\" **" in text and "moved the weights by **" in text
    assert (Path(config.run_dir) / "seed1" / "models" / "ga.pt").exists()


def test_notebook_03_runs_ec_its_plugins_and_the_ablation(tiny_run, tmp_path):
    config, _, _ = tiny_run
    executed = tmp_path / "03.ipynb"
    params = {**notebook_parameters(config, seed=1, methods=["ga", "scrub"], ablations=["ec[last]"])}
    execute_notebook(NOTEBOOKS_DIR / "03_erase_at_the_core.ipynb", executed, params)
    df = ecnb.read_results(config.run_dir)
    taps = ecnb.build_model(config.model, 1, 10).taps
    for method in ["ec", "ga+ec", "scrub+ec", "ec[last]", "ec+soft"]:
        rows = df[(df["method"] == method) & (df["seed"] == 1)]
        cka = rows[(rows["metric"] == "cka_to_original") & (rows["split"] == "forget_train")]
        assert list(cka["layer"]) == taps, method
        assert len(rows[rows["metric"] == "accuracy"]) == 4 and len(rows[rows["metric"] == "wall_time"]) == 1, method
    assert not df.duplicated(["seed", "method", "metric", "layer", "split"]).any()
    assert (Path(config.run_dir) / "seed1" / "models" / "scrub+ec.pt").exists()
    assert not set(df["method"]) & {"ga+ec+soft", "scrub+ec+soft"}, "the variant's plug-ins are the full scope's"
    for method in ["ec", "ga+ec", "ec[last]"]:
        rows = df[(df["method"] == method) & (df["seed"] == 1)]
        assert {"fewshot_probe_accuracy", "relearn_accuracy"} <= set(rows["metric"]), method
    text = executed.read_text()
    assert "claims hold in this run" in text, "the verdict cell ran and printed its count"
    assert "claims beyond the paper hold in this run" in text
    answers = markdown_outputs(executed)
    assert "**Does depth matter?**" in answers and "plug-ins `B+ec`" in answers and "`ec+soft` is **" in answers
    # accuracy, output KS, relearning, few-shot, CKA; depth: CKA and relearning; three plug-in bars, per layer;
    # the evidence map; beyond the paper: relearning, few-shot (the variant's plug-in bars are the full scope's)
    assert len(plotly_outputs(executed)) == 14


def study(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """The study command on the shared tiny study's settings (tests/conftest.py) and `extra` options."""
    cmd = [sys.executable, "-m", "ecnb", "study", *TINY_STUDY, "--run-dir", str(run_dir), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def checkpoint_times(run_dir: Path, seed: int) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (run_dir / f"seed{seed}" / "models").glob("*.pt")}


def values(run_dir: Path, methods: set[str] | None = None) -> pd.DataFrame:
    df = ecnb.read_results(run_dir)
    df = df[(df["metric"] != "wall_time") & (df["method"].isin(methods) if methods else True)]
    return df.sort_values(KEY).reset_index(drop=True)


def test_study_command_end_to_end(tiny_study):
    run_dir, printed = tiny_study
    assert "report: " in printed and "±" in printed, "summary with mean ± std over two seeds"
    assert "relearning gap" in printed and "few-shot gap" in printed and "verdict" in printed
    df = ecnb.read_results(run_dir)
    assert set(df["seed"]) == {0, 1}
    assert not df.duplicated(KEY).any()
    for name in ("config.json", "results.csv", "report.html", "seed0/split.json", "seed1/models/original.pt",
                 "notebooks/seed1/01_train_original.ipynb", "notebooks/seed0/04_representations.ipynb"):
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "config.json").read_text())["scope"] == "walkthrough"
    walkthrough = ecnb.scopes.selection("walkthrough", ["ga", "scrub"], ["ec[last]"])
    assert {p.removesuffix(".pt") for p in checkpoint_times(run_dir, 0)} == {"original", "retrain", *walkthrough.methods}
    assert {"ga+ec", "scrub+ec", "ec+soft"} <= set(walkthrough.methods)
    assert not {"ga+ec+soft", "scrub+ec+soft"} & set(walkthrough.methods)
    html = (run_dir / "report.html").read_text()
    assert html.count("plotly.js v") >= 1 and 'src="http' not in html
    assert "<title>Superficial forgetting and Erase at the Core: digits, smallcnn, forgetting class 3 (walkthrough)" in html


def test_a_changed_hyperparameter_recomputes_only_its_method(tiny_study, tmp_path):
    """`--set ga.lr=...` on a finished study: ga is unlearned and measured again, every other model comes from its
    checkpoint, and config.json records the change."""
    run_dir = Path(shutil.copytree(tiny_study[0], tmp_path / "study"))
    before = checkpoint_times(run_dir, 1)
    again = study(run_dir, "--seeds", "1", "--ablations", "ec[last]", "--set", "ga.lr=0.001")
    assert again.returncode == 0, again.stderr[-2000:]
    after = checkpoint_times(run_dir, 1)
    assert [name for name in before if after[name] != before[name]] == ["ga.pt"]
    assert json.loads((run_dir / "config.json").read_text())["overrides"] == {"ga": {"lr": 0.001}}
    others = set(ecnb.read_results(run_dir)["method"]) - {"ga"}
    pd.testing.assert_frame_equal(values(run_dir, others), values(tiny_study[0], others))
    assert not values(run_dir, {"ga"}).equals(values(tiny_study[0], {"ga"}))


def test_the_full_scope_over_a_walkthrough_reuses_its_models_and_values(tiny_study, tiny_full_study):
    run_dir, printed, before = tiny_full_study
    after = checkpoint_times(run_dir, 0)
    assert {name: after[name] for name in before} == before, "every walkthrough model is reused"
    added = {name.removesuffix(".pt") for name in set(after) - set(before)}
    assert added == {"ec[uniform]", "ec[depth]", "ec[nl]", "ec+soft[hard]", "ec+soft[pull]", "ec+soft[relabel]",
                     "ga+ec+soft", "scrub+ec+soft"}
    shared = set(ecnb.read_results(tiny_study[0])["method"])
    pd.testing.assert_frame_equal(values(run_dir, shared)[lambda d: d["seed"] == 0].reset_index(drop=True),
                                  values(tiny_study[0], shared)[lambda d: d["seed"] == 0].reset_index(drop=True))
    assert json.loads((run_dir / "config.json").read_text())["scope"] == "full"
    assert "ec[uniform]" in printed, "the full study's summary shows its ablations"


def test_a_second_study_on_the_same_run_dir_is_refused(tmp_path):
    with study_lock(tmp_path):
        with pytest.raises(ConfigError, match="in use by another study"):
            with study_lock(tmp_path):
                pass
