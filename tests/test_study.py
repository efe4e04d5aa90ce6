"""The study command end to end on the shared tiny study (tests/conftest.py): its run directory, a changed
hyperparameter, the full scope over a walkthrough."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import NB01, NB02, TINY_DATA, TINY_OVERRIDES, TINY_SELECTION, TINY_STUDY, cli, study_command

import ecnb
from ecnb.config import ConfigError
from ecnb.results import KEY
from ecnb.study import study_lock


def checkpoint_times(run_dir: Path, seed: int) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (run_dir / f"seed{seed}" / "models").glob("*.pt")}


def values(run_dir: Path, methods: set[str] | None = None) -> pd.DataFrame:
    df = ecnb.read_results(run_dir)
    df = df[(df["metric"] != "wall_time") & (df["method"].isin(methods) if methods else True)]
    return df.sort_values(KEY).reset_index(drop=True)


def test_study_command_end_to_end(tiny_study):
    run_dir, printed = tiny_study
    assert "report: " in printed and "[95% CI]" in printed, "one seed: each forget accuracy with its interval"
    assert "relearning gap [95% CI]" in printed and "few-shot gap [95% CI]" in printed and "verdict" in printed
    assert "seed 0: 3 retrained models; null test: " in printed, "the verdicts' own false-alarm rate, on this run"
    df = ecnb.read_results(run_dir)
    assert set(df["seed"]) == {0}
    assert not df.duplicated(KEY).any()
    for name in ("config.json", "results.csv", "report.html", "seed0/split.json", "seed0/models/original.pt",
                 "notebooks/seed0/01_train_original.ipynb", "notebooks/seed0/04_representations.ipynb"):
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "config.json").read_text())["scope"] == "walkthrough"
    walkthrough = ecnb.scopes.selection("walkthrough", ["ga", "scrub"], ["ec[last]"])
    assert {p.removesuffix(".pt") for p in checkpoint_times(run_dir, 0)} == {
        "original", "retrain", "retrain#1", "retrain#2", *walkthrough.methods}
    assert {"ga+ec", "scrub+ec", "ec+soft"} <= set(walkthrough.methods)
    assert not {"ga+ec+soft", "scrub+ec+soft"} & set(walkthrough.methods)
    html = (run_dir / "report.html").read_text()
    assert html.count("plotly.js v") >= 1 and 'src="http' not in html
    assert "<title>Superficial forgetting and Erase at the Core: digits, smallcnn, forgetting class 3 (walkthrough)" in html


def test_a_changed_hyperparameter_recomputes_only_its_method(tiny_study, tmp_path):
    """`--set ga.lr=...` on a finished study: ga is unlearned and measured again, every other model comes from its
    checkpoint, and config.json records the change."""
    run_dir = Path(shutil.copytree(tiny_study[0], tmp_path / "study"))
    before = checkpoint_times(run_dir, 0)
    again = study_command(run_dir, *TINY_STUDY, *TINY_SELECTION, "--set", "ga.lr=0.001")
    assert again.returncode == 0, again.stderr[-2000:]
    after = checkpoint_times(run_dir, 0)
    assert [name for name in before if after[name] != before[name]] == ["ga.pt"]
    recorded = json.loads((run_dir / "config.json").read_text())["overrides"]
    assert recorded == {**TINY_OVERRIDES, "ga": {"epochs": 1, "lr": 0.001}}
    others = set(ecnb.read_results(run_dir)["method"]) - {"ga"}
    pd.testing.assert_frame_equal(values(run_dir, others), values(tiny_study[0], others))
    assert not values(run_dir, {"ga"}).equals(values(tiny_study[0], {"ga"}))


def test_the_full_scope_over_a_walkthrough_reuses_its_models_and_values(tiny_study, tiny_full_study):
    run_dir, printed, before = tiny_full_study
    after = checkpoint_times(run_dir, 0)
    assert {name: after[name] for name in before} == before, "every walkthrough model is reused"
    added = {name.removesuffix(".pt") for name in set(after) - set(before)}
    assert added == {"ec[uniform]", "ec[depth]", "ec[nl]", "ec+soft[hard]", "ec+soft[pull]", "ec+soft[relabel]",
                     "ga+ec+soft", "scrub+ec+soft", "retrain#3", "retrain#4"}, "the full scope reads five retrained models"
    shared = set(ecnb.read_results(tiny_study[0])["method"])
    pd.testing.assert_frame_equal(values(run_dir, shared)[lambda d: d["seed"] == 0].reset_index(drop=True),
                                  values(tiny_study[0], shared)[lambda d: d["seed"] == 0].reset_index(drop=True))
    assert json.loads((run_dir / "config.json").read_text())["scope"] == "full"
    assert "ec[uniform]" in printed, "the full study's summary shows its ablations"
    assert "seed 0: 5 retrained models" in printed


def test_a_study_over_two_seeds_runs_each_and_summarises_over_them(tmp_path, capsys):
    """Notebooks 01 and 02 (`ga`) for seeds 0 and 1: every seed's models and notebooks, and a summary of mean ± std
    over the seeds with how many seeds gave each verdict."""
    options = ["--epochs", "2", "--methods", "ga", *TINY_DATA, "--seeds", "0", "1", "--run-dir", str(tmp_path)]
    code, stderr = cli(["study", *options], notebooks=(NB01, NB02))
    assert code == 0, stderr[-2000:]
    df = ecnb.read_results(tmp_path)
    assert set(df["seed"]) == {0, 1} and not df.duplicated(KEY).any()
    for seed in (0, 1):
        assert {"original", "retrain", "ga"} <= set(df[df["seed"] == seed]["method"]), seed
        assert (tmp_path / f"seed{seed}" / "models" / "ga.pt").exists()
        assert [p.name for p in sorted((tmp_path / "notebooks" / f"seed{seed}").glob("*.ipynb"))] == [NB01, NB02]
    printed = capsys.readouterr().out
    table = printed[printed.index("verdict"):printed.index("report: ")]
    ga = next(line for line in table.splitlines() if line.startswith("ga "))
    assert ga.count("±") >= 5, "mean ± std over the two seeds"
    judged = ecnb.study.study_verdicts(ecnb.Run.load(tmp_path), ["ga"])
    assert ga.rstrip().endswith(ecnb.verdicts.verdict_summary(judged)["ga"]), "the verdict line over both seeds"
    assert "seed 0: 3 retrained models" in printed and "seed 1: 3 retrained models" in printed


def test_a_second_study_on_the_same_run_dir_is_refused(tmp_path):
    with study_lock(tmp_path):
        with pytest.raises(ConfigError, match="in use by another study"):
            with study_lock(tmp_path):
                pass


def test_the_study_kernel_has_the_package_imported_runs_each_notebook_afresh_and_is_gone_once_closed(tmp_path):
    """The study runs its notebooks one after another in one kernel: the first finds the modules already imported, the
    second none of the first one's variables, each counts its cells from 1, a worker can still be spawned after the
    kernel was emptied, and closing it ends the kernel's process and its workers'."""
    import nbformat
    import psutil

    from ecnb.study import StudyKernel, execute_notebook

    def notebook(name: str, *sources: str) -> Path:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in sources])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, tmp_path / name)
        return tmp_path / name

    first = notebook("first.ipynb", "import sys\nwarm = 'ecnb.evaluate' in sys.modules and 'ecnb.viz' in sys.modules",
                     "assert warm, sorted(m for m in sys.modules if m.startswith('ecnb'))")
    second = notebook("second.ipynb", "assert 'warm' not in globals() and 'sys' not in globals()",
                      "import json, os\nfrom ecnb import workers\n"
                      "json.dump([pid for _, pid in workers.run_jobs(os.getpid, [(), ()], 2)], open('pids.json', 'w'))")
    kernel = StudyKernel(tmp_path)
    pid = kernel.manager.provisioner.process.pid
    try:
        execute_notebook(first, tmp_path / "out" / "first.ipynb", {}, kernel)
        kernel.fresh_session()
        execute_notebook(second, tmp_path / "out" / "second.ipynb", {}, kernel)
    finally:
        kernel.close()
    for name in ("first.ipynb", "second.ipynb"):
        executed = nbformat.read(tmp_path / "out" / name, as_version=4)
        assert [c.execution_count for c in executed.cells] == [1, 2], name
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert pids[0] == pid and pids[1] != pid, "the kernel took one job, a worker it spawned the other"
    time.sleep(2)  # a worker polls for its parent every half second
    assert all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE for p in pids)
    kernel.close()  # a second close does nothing
