"""Sweeps on a local Ray: merged tables, a failing cell, an interrupted sweep that resumes, bad grids.

The cells are tiny studies (digits capped to 40 training / 20 test images per class, 1 epoch, `ga` only,
relearning scored up to step 10, notebooks 01 and 02), so that the Ray path, the resumption and notebook
05 run for real in a minute or two.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_DATA_OPTIONS, plotly_figures

import ecnb
from ecnb import sweep, viz
from ecnb.cli import main
from ecnb.study import NOTEBOOKS_DIR
from ecnb.methods import HPARAMS, METHODS
from ecnb.verdicts import CKA, DEPTHS, FEWSHOT_GAP, RELEARN_GAP, REFERENCE, floor, high, low

# Relearning scored up to step 10 (the reference step) instead of 50: the attack is a fifth of its cost.
TINY = dict(epochs=1, **TINY_DATA_OPTIONS, scope="walkthrough", population=3)
NOTEBOOKS = [NOTEBOOKS_DIR / "01_train_original.ipynb", NOTEBOOKS_DIR / "02_superficial_forgetting.ipynb"]


def cells(classes, seeds) -> list[sweep.Cell]:
    return sweep.grid(["digits"], [(c,) for c in classes], seeds)


def run(root, grid_cells, log, cpus_per_cell=1):
    configs = sweep.cell_configs(grid_cells, root, **TINY)
    failed = sweep.run_sweep(configs, root, cpus_per_cell=cpus_per_cell, methods=["ga"], ablations=[],
                             notebooks=NOTEBOOKS, log=log)
    return configs, failed


def checkpoint_times(configs) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for cfg in configs.values() for p in Path(cfg.run_dir).rglob("*.pt")}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the sweeps of this file: a sweep that finds Ray running uses it and leaves it running,
    and starting Ray costs about 11 s of CPU. (The command-line sweep below starts and stops its own.)"""
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def swept(tmp_path_factory, local_ray):
    """2 classes x 2 seeds, one cell broken by a damaged checkpoint of its original model."""
    root = tmp_path_factory.mktemp("sweep")
    broken = sweep.Cell("digits", (8,), 1)
    configs = sweep.cell_configs([broken], root, **TINY)
    ecnb.Run.open(configs[broken])
    damaged = ecnb.Run.load(configs[broken].run_dir).checkpoint_path("original", 1)
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a checkpoint")
    lines: list[str] = []
    configs, failed = run(root, cells([1, 8], [0, 1]), lines.append)
    return root, configs, failed, lines, damaged


def test_the_merged_tables_are_the_cells_own_tables_with_the_cell_columns(swept):
    root, configs, failed, lines, _ = swept
    assert list(failed) == ["digits-forget8-seed1"]
    assert "01_train_original" in failed["digits-forget8-seed1"] and "corrupted" in failed["digits-forget8-seed1"]
    assert lines[0] == "4 cells: 0 complete and reused, 4 to run"
    assert sum(" done in " in line for line in lines) == 3 and sum(" FAILED in " in line for line in lines) == 1
    assert any(line.startswith("cell digits-forget8-seed1 failed: ") for line in lines)
    printed = next(line for line in lines if "claims hold over the cells" in line)
    assert "superficial" in printed and "ga" in printed and "relearning gap" in printed, "the summary is printed"

    finished = {c: cfg for c, cfg in configs.items() if c.name not in failed}
    for cfg in finished.values():  # what a finished cell keeps of its models: checkpoints, rows, outcomes, no features
        seed_dir = ecnb.Run.load(cfg.run_dir).seed_dir(cfg.seeds[0])
        assert list((seed_dir / "models").glob("*.pt")) and list((seed_dir / "outcomes").iterdir())
        assert (seed_dir / "features").is_dir() and not list((seed_dir / "features").glob("*.npz"))
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
    assert len(verdicts) == 3 * 5, "three finished cells x (original, three retrained models, ga)"
    assert set(verdicts["depth"]) <= set(DEPTHS)
    assert {low(RELEARN_GAP), high(RELEARN_GAP), floor(FEWSHOT_GAP), "resolution"} <= set(verdicts.columns)
    nulls = tables["null_tests"]
    assert len(nulls) == 3 and (nulls["null reads"] == 3).all() and (nulls["null reads passed"] <= 3).all()
    assert "null test: " in printed
    summary = tables["summary"].set_index("method")
    assert (summary["cells"] == 3).all()
    ga = verdicts[verdicts["method"] == "ga"]
    assert summary.loc["ga", "superficial"] == (ga["depth"] == "superficial").sum()
    assert summary.loc["ga", f"{CKA} mean"] == pytest.approx(ga[CKA].mean())
    assert summary.loc["ga", f"{RELEARN_GAP} std"] == pytest.approx(ga[RELEARN_GAP].std())
    claims = tables["claims"].set_index("claim")
    superficial = claims.loc["at least two baselines are superficial in a majority of the cells"]
    assert superficial["dataset"] == "digits" and superficial["cells"] == 4 and superficial["failed"] == 1
    assert superficial["target"].endswith("each in >= 3 of 4 cell(s)"), "the failed cell stays in the denominator"

    figures = plotly_figures(root / "notebooks" / "05_across_forget_classes.ipynb")
    # verdicts per cell, agreement, relearning, the two gaps and CKA per cell, the plug-in criterion's two bars
    assert len(figures) == 8
    report = (root / "report.html").read_text()
    assert "cell digits-forget8-seed1 failed" in report and report.count("plotly.js v") == 1


def test_notebook_05_draws_each_data_set_of_a_sweep_on_its_own(swept, tmp_path):
    """A sweep over two data sets (here the digits' cells again under a second name): every figure but the verdicts'
    heatmap is drawn once per data set, and the claims are counted per data set."""
    root = swept[0]
    two = tmp_path / "two"
    two.mkdir()
    shutil.copy(root / "sweep.json", two / "sweep.json")
    for name, table in sweep.load(root).items():
        both = pd.concat([table, table.assign(dataset="fashion_mnist")], ignore_index=True)
        both.to_csv(two / f"{name}.csv", index=False)
    executed = tmp_path / "05.ipynb"
    sweep.execute_notebook(sweep.SWEEP_NOTEBOOK, executed, {"sweep_dir": str(two)})
    titles = [f["layout"]["title"]["text"] for f in plotly_figures(executed)]
    assert len(titles) == 1 + 2 * 7, titles
    assert sum(t.startswith("digits: ") for t in titles) == 7 and sum(t.startswith("Fashion-MNIST: ") for t in titles) == 7
    printed = "".join(o.get("text", "") for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "digits: " in printed and "fashion_mnist: " in printed and "claims hold over its cells" in printed


def test_plug_in_claims_are_read_over_the_plug_ins_the_cells_scope_runs(swept):
    """The walkthrough plugs EC into ga and scrub only: its cells never count as failing `ft+ec`'s claims; the full
    scope's claims cover every baseline's plug-in."""
    from ecnb.scopes import selection

    root, configs, failed, *_ = swept
    runs = {c: None if c.name in failed else Path(cfg.run_dir) for c, cfg in configs.items()}
    judged = {c: sweep.study_verdicts(ecnb.Run.load(d), ["ga"], [])[c.seed] for c, d in runs.items() if d}
    base = ["ga", "ft", "scrub"]

    def plugin_rows(scope):
        rows = sweep.claims_by_dataset(runs, judged, base, {"digits": selection(scope)})["claim"]
        return {r.split("'s mean")[0] for r in rows if "'s mean intermediate CKA (mean over cells)" in r}

    assert plugin_rows("walkthrough") == {"ga+ec", "scrub+ec"}
    assert plugin_rows("full") == {"ga+ec", "ft+ec", "scrub+ec"}


def test_compare_reads_two_sweeps_cell_by_cell(swept, tmp_path, capsys):
    """A sweep stored for a later regression check, compared with the sweep itself and with a copy missing a cell."""
    root = swept[0]
    stored = Path(shutil.copytree(root, tmp_path / "stored"))
    assert main(["compare", str(stored), str(root)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[-1].endswith("figures of 0 of 15 model(s) moved beyond their noise (exit 0)"), \
        "three finished cells x (original, three retrained models, ga)"
    (root / "cells" / "digits-forget1-seed0" / sweep.CELL_FILE).rename(tmp_path / "cell.json")
    try:
        assert main(["compare", str(stored), str(root)]) == 1
    finally:
        (tmp_path / "cell.json").rename(root / "cells" / "digits-forget1-seed0" / sweep.CELL_FILE)
    assert "digits-forget1-seed0:\n  only in A\n" in capsys.readouterr().out


def test_a_finished_sweep_ships_its_tables_and_what_made_them(swept, tmp_path):
    from ecnb import shipped

    root = swept[0]
    target = shipped.ship(root, tmp_path / "shipped")
    tables, own = sweep.load(target), sweep.load(root)
    pd.testing.assert_frame_equal(tables["verdicts"], own["verdicts"])
    kept = own["results"][own["results"]["metric"].isin(shipped.KEPT_METRICS)].reset_index(drop=True)
    pd.testing.assert_frame_equal(tables["results"], kept, check_dtype=False)
    made = shipped.record(target)
    assert made["cells"] == [c.name for c in cells([1, 8], [0, 1])]
    assert list(made["profiles"]) == ["quick"] and made["profiles"]["quick"]["train"]["epochs"] == TINY["epochs"]
    changed = shipped.stale(target)
    assert any(line.startswith("quick train: shipped") for line in changed), "one epoch is not the profile's"
    assert any(line.startswith("quick scope: shipped walkthrough but now full") for line in changed), \
        "the quick profile's sweeps run the full scope"
    assert "shipped with the repository" in shipped.label(target) and "have changed since" in shipped.label(target)


def test_an_interrupted_sweep_resumes_without_recomputing_finished_cells(swept, monkeypatch):
    import ray

    root, configs, _, _, damaged = swept
    damaged.unlink()
    cancel, cancelled = ray.cancel, []
    monkeypatch.setattr(ray, "cancel", lambda ref, **options: (cancelled.append(ref), cancel(ref, **options)))
    before = checkpoint_times({c: cfg for c, cfg in configs.items() if c.name != "digits-forget8-seed1"})

    def interrupt(line: str) -> None:
        if " done in " in line:
            raise KeyboardInterrupt

    grown = [*cells([1, 8], [0, 1]), *cells([1], [2])]  # the repaired cell and a new one to run
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):  # two cells to run, one at a time: Ctrl-C after the first
        run(root, grown, lambda line: (lines.append(line), interrupt(line)), cpus_per_cell=os.cpu_count())
    assert lines[0] == "5 cells: 3 complete and reused, 2 to run"
    assert len(cancelled) == 1, "only the cell still running is cancelled, never the one that has just finished"
    cell_dirs = sorted((root / "cells").iterdir())
    assert sum((c / sweep.CELL_FILE).exists() for c in cell_dirs) == 4, "exactly one more cell finished"

    lines.clear()
    configs, failed = run(root, grown, lines.append)
    assert not failed and lines[0] == "5 cells: 4 complete and reused, 1 to run"
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
    for forget_set, depth, cost in (("3", "superficial", "keeps retain"), ("8", "erased", "hurts retain (-0.05)")):
        for method, d, c, cka in (("original", "not forgotten", "keeps retain", 1.0),
                                  ("retrain", "erased", "keeps retain", 0.8), ("ga", depth, cost, 0.9)):
            tells = "output tell" if d == "erased" and method == "ga" else ""
            verdict = {"original": REFERENCE, "retrain": f"{REFERENCE}; null read: erased, keeps retain"}.get(
                method, f"{d}, {c}" + (f"; {tells}" if tells else ""))
            rows.append({"method": method, "depth": d, "cost": c, "tells": tells, "verdict": verdict,
                         CKA: cka + (0.02 if forget_set == "8" else 0), RELEARN_GAP: 0.5, FEWSHOT_GAP: 0.4,
                         "dataset": "digits", "forget_set": forget_set, "seed": 0})
    return pd.DataFrame(rows)


def test_verdict_heatmap_has_a_cell_per_method_and_forget_set():
    fig = viz.verdict_heatmap(verdict_rows())
    heat = fig.data[0]
    assert list(heat.y) == ["original", "retrain", "ga"]
    assert list(heat.x) == ["digits · forget 3 · seed 0", "digits · forget 8 · seed 0"]
    assert [list(r) for r in heat.text] == [["reference"] * 2, ["null ok"] * 2, ["superficial", "erased − T"]]
    order = ["reference", *DEPTHS]
    assert list(heat.z[2]) == [order.index("superficial"), order.index("erased")]
    assert heat.hovertext[2][1].startswith("ga in digits · forget 8 · seed 0: erased, hurts retain (-0.05); output tell")


def test_agreement_counts_the_cells_of_each_depth():
    agreement = sweep.agreement(verdict_rows()).set_index("method")
    assert agreement.loc["ga", ["superficial", "erased", "partial", "not forgotten"]].tolist() == [1, 1, 0, 0]
    assert agreement.loc["ga", "cells"] == 2 and agreement.loc["ga", "in cells"] == 1
    fig = viz.agreement_figure(sweep.agreement(verdict_rows()))
    assert [t.name for t in fig.data] == list(DEPTHS) and list(fig.data[0].y) == ["ga"]


def test_spread_bars_show_the_mean_and_std_over_cells():
    fig = viz.spread_bars(verdict_rows(), CKA)
    bars, labels, dots = fig.data
    assert list(labels.text) == [f"{v:.2f}" for v in bars.y]
    assert list(bars.x) == ["original", "retrain", "ga"]
    np.testing.assert_allclose(bars.y, [1.01, 0.81, 0.91])
    np.testing.assert_allclose(bars.error_y.array, [np.std([1.0, 1.02], ddof=1)] * 3)
    assert len(dots.y) == 6


def test_a_finished_cell_runs_again_when_a_methods_hyperparameters_change(tmp_path, monkeypatch):
    """A retune changes no configuration field, only the registry's defaults: the finished cell's record keys
    them, so the cell is not reused with its old models."""
    cell = sweep.Cell("digits", (1,), 0)
    config = sweep.cell_configs([cell], tmp_path, **TINY)[cell]
    selection = sweep._selection(["ga"], [], NOTEBOOKS)
    sweep.record_cell(config, selection, 1.0)
    assert sweep.is_complete(config, selection)
    monkeypatch.setitem(HPARAMS["quick"], "ga", {**HPARAMS["quick"]["ga"], "lr": 0.01})
    assert not sweep.is_complete(config, selection)


def test_a_finished_cell_runs_again_when_a_methods_code_is_revised(tmp_path, monkeypatch):
    """A fix to a built-in method's code (`Method.revision`) changes neither the configuration nor the
    hyperparameters: the record keys the revisions too."""
    cell = sweep.Cell("digits", (1,), 0)
    config = sweep.cell_configs([cell], tmp_path, **TINY)[cell]
    selection = sweep._selection(["ga"], [], NOTEBOOKS)
    sweep.record_cell(config, selection, 1.0)
    assert sweep.is_complete(config, selection)
    monkeypatch.setitem(METHODS, "ga", dataclasses.replace(METHODS["ga"], revision=METHODS["ga"].revision + 1))
    assert not sweep.is_complete(config, selection)


def killing_notebook(path: Path, victim: str) -> Path:
    """A notebook whose kernel kills its parent, the cell's own process (a Ray worker), when its run directory
    names `victim`. Any other parent is left alone and the cell fails instead: a SIGKILL must never reach the
    test session's own processes."""
    kill = (f"import os, signal, psutil\nif {victim!r} in run_dir:\n"
            "    parent = psutil.Process(os.getppid())\n"
            "    title = ' '.join([parent.name(), *parent.cmdline()])\n"
            "    assert 'ray::' in title, f'the kernel was started by {title!r}, not by a Ray worker'\n"
            "    os.kill(parent.pid, signal.SIGKILL)")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('run_dir = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(kill),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_a_cell_whose_process_dies_is_reported_failed_and_the_other_cells_go_on(tmp_path, local_ray):
    killer = killing_notebook(tmp_path / "kill.ipynb", "forget8")
    root = tmp_path / "sweep"
    configs = sweep.cell_configs(cells([1, 8], [0]), root, **TINY)
    lines: list[str] = []
    failed = sweep.run_sweep(configs, root, methods=["ga"], ablations=[], notebooks=[killer, *NOTEBOOKS],
                             log=lines.append)
    assert list(failed) == ["digits-forget8-seed0"] and "its process died" in failed["digits-forget8-seed0"]
    assert sum(" done in " in line for line in lines) == 1 and sum(" FAILED in " in line for line in lines) == 1
    tables = sweep.load(root)
    assert set(tables["verdicts"]["forget_set"]) == {"1"}
    assert (tables["claims"]["failed"] == 1).all() and (tables["claims"]["cells"] == 2).all()
    assert (root / "report.html").exists()


def test_an_interrupted_sweep_leaves_no_process_behind(tmp_path):
    """Ctrl-C while a cell's kernel runs its worker pool (two workers training the references, --cpus-per-cell 2):
    every process the sweep had started is gone soon after the sweep exits."""
    run_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "ecnb", "sweep", "--forget-classes", "1", "--seeds", "0", "--methods", "ga",
           "--ablations", "--cpus-per-cell", "2", "--run-dir", str(run_dir)]
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    sweep_process = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 300
    while True:  # until the kernel's two job workers (spawned, `multiprocessing`) are running
        assert proc.poll() is None, (tmp_path / "stderr").read_text()[-2000:]
        assert time.monotonic() < deadline, "the cell's worker pool never started"
        try:
            for p in sweep_process.children(recursive=True):
                seen.setdefault(p.pid, p)
            workers = [p for p in seen.values() if p.is_running() and "multiprocessing" in " ".join(p.cmdline())]
        except psutil.NoSuchProcess:
            continue
        if len(workers) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    deadline = time.monotonic() + 30
    left = list(seen.values())
    while left and time.monotonic() < deadline:
        left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.5)
    assert not left, [(p.pid, " ".join(p.cmdline())[:120]) for p in left]


def test_each_data_set_is_swept_on_its_own_reported_classes_by_default():
    """Without --forget-classes a sweep's cells are each data set's reported classes (digits 3, 5, 8; Fashion-MNIST
    0, 4, 8), never one data set's classes for another; its directory names them."""
    got = sweep.grid(["digits", "fashion_mnist"], None, [0])
    assert [(c.dataset, c.forget_set) for c in got] == [
        ("digits", (3,)), ("digits", (5,)), ("digits", (8,)),
        ("fashion_mnist", (0,)), ("fashion_mnist", (4,)), ("fashion_mnist", (8,))]
    assert sweep.default_sweep_dir("quick", ["digits"], None, [0, 1]) == Path(
        "runs/sweep-quick-digits-forget3_5_8-seed0_1"), "a digits-only sweep's directory"
    assert sweep.default_sweep_dir("quick", ["digits", "fashion_mnist"], None, [0]) == Path(
        "runs/sweep-quick-digits-forget3_5_8-fashion_mnist-forget0_4_8-seed0")
    assert sweep.default_sweep_dir("quick", ["digits", "fashion_mnist"], [(1,)], [0]) == Path(
        "runs/sweep-quick-digits_fashion_mnist-forget1-seed0")


def test_a_sweep_without_a_profile_runs_each_data_set_with_its_own(tmp_path):
    """The digits' cells under `quick`, Fashion-MNIST's under `fashion` (its recipe, attacks and settings); a named
    profile applies to every cell. The directory names the profiles, and the digits-only sweep keeps its name."""
    cells = sweep.grid(["digits", "fashion_mnist"], None, [0])
    configs = sweep.cell_configs(cells, tmp_path, profile=None)
    assert {c.dataset: c.profile for c in configs.values()} == {"digits": "quick", "fashion_mnist": "fashion"}
    assert {c.profile for c in sweep.cell_configs(cells, tmp_path, profile="quick").values()} == {"quick"}
    assert sweep.default_sweep_dir(None, ["digits", "fashion_mnist"], None, [0, 1]) == Path(
        "runs/sweep-quick_fashion-digits-forget3_5_8-fashion_mnist-forget0_4_8-seed0_1")
    assert sweep.default_sweep_dir(None, ["digits"], None, [0, 1]) == Path("runs/sweep-quick-digits-forget3_5_8-seed0_1")


def test_a_sweep_without_a_scope_runs_each_profiles_own_with_five_retrained_models(tmp_path):
    """Digits' cells run the full scope, Fashion-MNIST's (four times the cost) the walkthrough's methods; every
    cell reads five retrained models whatever its scope; a scope or population given applies to every cell."""
    grid = sweep.grid(["digits", "fashion_mnist"], None, [0])
    configs = sweep.cell_configs(grid, tmp_path, profile=None)
    assert {c.dataset: (c.scope, c.population) for c in configs.values()} == {
        "digits": ("full", 5), "fashion_mnist": ("walkthrough", 5)}
    given = sweep.cell_configs(grid, tmp_path, profile=None, scope="full", population=4)
    assert {(c.scope, c.population) for c in given.values()} == {("full", 4)}


def test_make_ship_sweep_ships_the_default_sweeps_directory():
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    default = sweep.default_sweep_dir(None, list(sweep.SWEEP_DATASETS), None, list(sweep.SWEEP_SEEDS))
    assert f"-m ecnb ship {default}\n" in makefile


def test_notebook_05_reads_the_default_sweep_over_both_data_sets_once_it_has_run(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "RUNS_DIR", tmp_path / "runs")
    assert sweep.find_sweep() == sweep.SHIPPED_DIR
    assert sweep.find_sweep("elsewhere") == Path("elsewhere")
    (tmp_path / "runs" / "sweep-quick-digits-forget3_5_8-seed0_1").mkdir(parents=True)
    (tmp_path / "runs" / "sweep-quick-digits-forget3_5_8-seed0_1" / "sweep.json").write_text("{}")
    assert sweep.find_sweep() == sweep.SHIPPED_DIR, "a digits-only sweep is not the default one"
    default = tmp_path / "runs" / "sweep-quick_fashion-digits-forget3_5_8-fashion_mnist-forget0_4_8-seed0_1"
    default.mkdir()
    (default / "sweep.json").write_text("{}")
    assert sweep.find_sweep() == default


def test_the_sweep_command_covers_both_data_sets_unless_a_data_set_or_profile_is_named(tmp_path, monkeypatch):
    """`python -m ecnb sweep` with no data set: digits and Fashion-MNIST; `--profile quick`: the profile's data set."""
    seen = {}

    def fake_run(configs, root, **_):
        seen[root.name] = sorted({c.dataset for c in configs.values()})
        return {}

    monkeypatch.setattr(sweep, "run_sweep", fake_run)
    monkeypatch.chdir(tmp_path)
    assert main(["sweep"]) == 0 and main(["sweep", "--profile", "quick"]) == 0
    assert seen == {"sweep-quick_fashion-digits-forget3_5_8-fashion_mnist-forget0_4_8-seed0_1": ["digits", "fashion_mnist"],
                    "sweep-quick-digits-forget3_5_8-seed0_1": ["digits"]}
