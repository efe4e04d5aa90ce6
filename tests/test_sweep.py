"""Sweeps on a local Ray: merged tables, a failing cell, an interrupted sweep that resumes, bad grids.

The cells are tiny studies (digits capped to 40 training / 20 test images per class, 1 epoch, `ga` only,
relearning scored up to step 10, notebooks 01 and 02), so that the Ray path, the resumption and notebook
05 run for real in a minute or two.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ecnb
from ecnb import sweep, viz
from ecnb.cli import main
from ecnb.study import NOTEBOOKS_DIR, PLOTLY_MIME
from ecnb.verdicts import CKA, FEWSHOT, RELEARN, REFERENCE, VERDICTS

# Relearning scored up to step 10 (the reference step) instead of 50: the attack is a fifth of its cost.
TINY = dict(epochs=1, train_per_class=40, test_per_class=20, relearn_steps=[0, 5, 10])
NOTEBOOKS = [NOTEBOOKS_DIR / "01_train_original.ipynb", NOTEBOOKS_DIR / "02_superficial_forgetting.ipynb"]


def run(root, classes, seeds, log, cpus_per_cell=1):
    configs = sweep.cell_configs(sweep.grid(["digits"], [(c,) for c in classes], seeds), root, **TINY)
    failed = sweep.run_sweep(configs, root, cpus_per_cell=cpus_per_cell, methods=["ga"], ablations=[],
                             notebooks=NOTEBOOKS, log=log)
    return configs, failed


def checkpoint_times(configs) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for cfg in configs.values() for p in Path(cfg.run_dir).rglob("*.pt")}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """2 classes x 2 seeds, one cell broken by a damaged checkpoint of its original model."""
    root = tmp_path_factory.mktemp("sweep")
    broken = sweep.Cell("digits", (8,), 1)
    configs = sweep.cell_configs([broken], root, **TINY)
    ecnb.Run.open(configs[broken])
    damaged = ecnb.Run.load(configs[broken].run_dir).checkpoint_path("original", 1)
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a checkpoint")
    lines: list[str] = []
    configs, failed = run(root, [1, 8], [0, 1], lines.append)
    return root, configs, failed, lines, damaged


def test_the_merged_tables_are_the_cells_own_tables_with_the_cell_columns(swept):
    root, configs, failed, lines, _ = swept
    assert list(failed) == ["digits-forget8-seed1"]
    assert "01_train_original" in failed["digits-forget8-seed1"] and "corrupted" in failed["digits-forget8-seed1"]
    assert lines[0] == "4 cells: 0 complete and reused, 4 to run"
    assert sum(" done in " in line for line in lines) == 3 and sum(" FAILED in " in line for line in lines) == 1
    assert any(line.startswith("cell digits-forget8-seed1 failed: ") for line in lines)
    printed = next(line for line in lines if "claims hold over the cells" in line)
    assert "superficial" in printed and "ga" in printed, "the summary is printed"

    finished = {c: cfg for c, cfg in configs.items() if c.name not in failed}
    own = pd.concat([ecnb.read_results(cfg.run_dir).assign(dataset=c.dataset, forget_set=c.forget_label)
                     for c, cfg in finished.items()])
    tables = sweep.load(root)
    merged = tables["results"]
    columns = ["dataset", "forget_set", "seed", "method", "metric", "layer", "split", "value"]
    assert list(merged.columns) == columns
    key = columns[:-1]
    pd.testing.assert_frame_equal(
        merged.astype({"forget_set": str}).sort_values(key).reset_index(drop=True),
        own[columns].sort_values(key).reset_index(drop=True), check_dtype=False)

    verdicts = tables["verdicts"]
    assert len(verdicts) == 3 * 3, "three finished cells x (original, retrain, ga)"
    assert set(verdicts["verdict"]) <= set(VERDICTS) | {REFERENCE}
    summary = tables["summary"].set_index("method")
    assert (summary["cells"] == 3).all()
    ga = verdicts[verdicts["method"] == "ga"]
    assert summary.loc["ga", "superficial"] == (ga["verdict"] == "superficial").sum()
    assert summary.loc["ga", f"{CKA} mean"] == pytest.approx(ga[CKA].mean())
    assert summary.loc["ga", f"{RELEARN} std"] == pytest.approx(ga[RELEARN].std())
    assert set(tables["claims"]["claim"]) >= {"at least two baselines are superficial in a majority of the cells"}

    executed = json.loads((root / "notebooks" / "05_across_forget_classes.ipynb").read_text())
    figures = [o for c in executed["cells"] for o in c.get("outputs", []) if PLOTLY_MIME in o.get("data", {})]
    assert len(figures) == 6
    report = (root / "report.html").read_text()
    assert "cell digits-forget8-seed1 failed" in report and report.count("plotly.js v") == 1


def test_an_interrupted_sweep_resumes_without_recomputing_finished_cells(swept):
    root, configs, _, _, damaged = swept
    damaged.unlink()
    before = checkpoint_times({c: cfg for c, cfg in configs.items() if c.name != "digits-forget8-seed1"})

    def interrupt(line: str) -> None:
        if " done in " in line:
            raise KeyboardInterrupt

    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):  # three cells to run, one at a time: Ctrl-C after the first
        run(root, [1, 8], [0, 1, 2], lambda line: (lines.append(line), interrupt(line)), cpus_per_cell=os.cpu_count())
    import ray

    assert not ray.is_initialized(), "the local Ray is stopped"
    assert lines[0] == "6 cells: 3 complete and reused, 3 to run"
    cells = sorted((root / "cells").iterdir())
    assert sum((c / sweep.CELL_FILE).exists() for c in cells) == 4, "exactly one more cell finished"

    lines.clear()
    configs, failed = run(root, [1, 8], [0, 1, 2], lines.append)
    assert not failed and lines[0] == "6 cells: 4 complete and reused, 2 to run"
    after = checkpoint_times(configs)
    assert {p: after[p] for p in before} == before, "finished cells are not recomputed"
    assert set(sweep.load(root)["verdicts"]["seed"]) == {0, 1, 2}


@pytest.mark.parametrize("args, message", [
    (["--forget-classes", "12"], "forget class 12 is out of range for digits; valid: 0-9"),
    (["--forget-classes", "3", "3"], "forget set 3 is given twice"),
    (["--forget-sets", "3,3"], "forget classes [3, 3] repeat a class"),
    (["--forget-sets", "3;8"], "forget set '3;8' must be class numbers separated by commas"),
    (["--seeds", "0", "0"], "seed 0 is given twice"),
    (["--forget-classes"], "expected at least one argument"),
    (["--cpus-per-cell", "0"], "--cpus-per-cell 0 must be at least 1"),
])
def test_bad_grids_are_refused_in_one_line_before_any_work(tmp_path, capsys, args, message):
    run_dir = tmp_path / "sweep"
    try:
        code = main(["sweep", "--run-dir", str(run_dir), *args])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not run_dir.exists()


def test_an_unreachable_ray_cluster_is_refused_before_any_work(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed
    code = main(["sweep", "--run-dir", str(tmp_path / "sweep"), "--address", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot reach a Ray cluster at 127.0.0.1:{port}" in err and err.count("\n") == 1
    assert not (tmp_path / "sweep").exists()


def verdict_rows() -> pd.DataFrame:
    rows = []
    for forget_set, verdict in (("3", "superficial"), ("8", "erased")):
        for method, v, cka in (("original", "reference", 1.0), ("retrain", "reference", 0.8), ("ga", verdict, 0.9)):
            rows.append({"method": method, "verdict": v, CKA: cka + (0.02 if forget_set == "8" else 0),
                         RELEARN: 0.5, FEWSHOT: 0.4, "dataset": "digits", "forget_set": forget_set, "seed": 0})
    return pd.DataFrame(rows)


def test_verdict_heatmap_has_a_cell_per_method_and_forget_set():
    fig = viz.verdict_heatmap(verdict_rows())
    heat = fig.data[0]
    assert list(heat.y) == ["original", "retrain", "ga"]
    assert list(heat.x) == ["digits · forget 3 · seed 0", "digits · forget 8 · seed 0"]
    assert [list(r) for r in heat.text] == [["reference"] * 2, ["reference"] * 2, ["superficial", "erased"]]
    order = list(viz.VERDICT_STYLE)
    assert list(heat.z[2]) == [order.index("superficial"), order.index("erased")]


def test_spread_bars_show_the_mean_and_std_over_cells():
    fig = viz.spread_bars(verdict_rows(), CKA)
    bars, dots = fig.data
    assert list(bars.x) == ["original", "retrain", "ga"]
    np.testing.assert_allclose(bars.y, [1.01, 0.81, 0.91])
    np.testing.assert_allclose(bars.error_y.array, [np.std([1.0, 1.02], ddof=1)] * 3)
    assert len(dots.y) == 6
