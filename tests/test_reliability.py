"""Issue 7: nothing lost on a crash, bad input refused clearly, results reproducible.

Faults are injected for real: studies are interrupted (SIGINT) and killed (SIGKILL) part way through
and run again, files are truncated, a kernel kills itself, a learning rate makes a method's loss
overflow, and two studies race for one run directory; two runs are compared as a regression check does
(`python -m ecnb compare`). Studies that get signals run as subprocesses of
the real command line (`python -m ecnb study`'s `main`); all of them are cut down to notebooks 01
and 02, two epochs on 40 training images per class, 20 test images per class, one method (`ga`) and relearning
scored up to its reference step, so that the file stays within minutes on two cores.
"""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
from conftest import NB01, NB02, TINY_DATA, TINY_DATA_OPTIONS, cli

import ecnb
from ecnb import evaluate, unlearn
from ecnb.artifacts import load_checkpoint
from ecnb.cli import main
from ecnb.config import ConfigError, StudyConfig
from ecnb.results import KEY, read_results, remove_results
from ecnb.study import NOTEBOOKS_DIR, StudyError, execute_notebook, notebook_parameters

# The real command line, with the study's notebook sequence cut down to the ones named in argv[1].
CLI = (
    "import sys; import ecnb.study as study; "
    "study.notebook_paths = lambda: [study.NOTEBOOKS_DIR / n for n in sys.argv[1].split(',')]; "
    "from ecnb.cli import main; sys.exit(main(sys.argv[2:]))"
)
TIMEOUT = 600
INTERRUPTED = "ecnb: interrupted; complete artifacts are kept and the next run resumes from them"


def study_args(run_dir: Path, *extra: str) -> list[str]:
    return ["study", "--epochs", "2", "--methods", "ga", *TINY_DATA, "--run-dir", str(run_dir), *extra]


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    """The study (notebooks 01, 02) in the background; stderr goes to `<run_dir>.stderr`, as a pipe that
    nobody reads while it runs could fill up and stall it."""
    with open(f"{run_dir}.stderr", "w") as err:
        return subprocess.Popen([sys.executable, "-c", CLI, f"{NB01},{NB02}", *study_args(run_dir, *extra)],
                                stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """pytest-xdist's workers ignore SIGINT, and an ignored signal stays ignored in a child; a study started
    from a terminal gets Ctrl-C with the default disposition, which is what these tests need."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stderr_of(run_dir: Path) -> str:
    return Path(f"{run_dir}.stderr").read_text()


def finish(proc: subprocess.Popen) -> int:
    return proc.wait(timeout=TIMEOUT)


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen | None = None, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"the study ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def kernels_of(pid: int) -> list[int]:
    """The Jupyter kernels that process `pid` started and that are still alive."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"JPY_PARENT_PID={pid}\0".encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def leftovers(run_dir: Path) -> list[Path]:
    """Temporaries of interrupted writes and half-executed notebooks."""
    return [*run_dir.rglob(".*.tmp"), *run_dir.rglob(".*.running.ipynb")]


def assert_complete(run_dir: Path) -> None:
    """Every checkpoint loads and the results table reads back without a repeated row."""
    for path in run_dir.rglob("*.pt"):
        load_checkpoint(path)
    assert not read_results(run_dir).duplicated(KEY).any()


def values(run_dir: Path) -> pd.DataFrame:
    """Every measured value but wall times (seconds of this machine's clock), keyed and sorted."""
    df = read_results(run_dir)
    return df[df["metric"] != "wall_time"].sort_values(KEY).reset_index(drop=True)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("ecnb: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def copy_run(source: Path, target: Path) -> Path:
    return Path(shutil.copytree(source, target, ignore=shutil.ignore_patterns("notebooks", "report.html")))


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_kernel():
    """Studies here run beside each other on two cores; kernels with a thread per core would crawl.
    Results do not depend on it: every study in this file runs with the same thread count."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def fresh_runs(tmp_path_factory):
    """Two fresh studies at once in two run directories and, while the first holds its lock, a third
    one on the first one's directory: the two directories, the two processes, the third's result."""
    root = tmp_path_factory.mktemp("fresh")
    first, second = start(root / "a"), start(root / "b")
    lock = root / "a" / ".study.lock"
    wait_for(lambda: lock.exists() and lock.read_text() == str(first.pid), "the first study to hold its lock", first)
    intruder = cli(study_args(root / "a"))
    for proc in (first, second):
        finish(proc)
    return root / "a", root / "b", (first, second), intruder


def test_two_fresh_studies_at_once_do_not_interfere_and_agree_exactly(fresh_runs):
    a, b, procs, _ = fresh_runs
    for run_dir, proc in zip((a, b), procs):
        assert proc.returncode == 0, stderr_of(run_dir)[-2000:]
        assert not leftovers(run_dir)
    assert set(read_results(a)["method"]) == {"original", "retrain", "retrain#1", "retrain#2", "ga"}
    pd.testing.assert_frame_equal(values(a), values(b), check_exact=True)


def test_a_second_study_on_the_same_run_dir_stops_with_one_line(fresh_runs):
    a, _, (first, _), (code, stderr) = fresh_runs
    assert code == 2
    assert one_error_line(stderr) == (f"ecnb: error: run directory {a} is in use by another study (pid {first.pid}); "
                                      "wait for it or give another --run-dir")
    assert first.returncode == 0
    assert_complete(a)


def test_interrupted_studies_leave_complete_artifacts_and_resume_to_the_same_results(fresh_runs, tmp_path):
    run_dir, models = tmp_path / "run", tmp_path / "run" / "seed0" / "models"

    proc = start(run_dir)
    wait_for((models / "original.pt").exists, "the first checkpoint", proc)
    proc.send_signal(signal.SIGINT)
    assert finish(proc) == 130
    assert one_error_line(stderr_of(run_dir)) == INTERRUPTED
    assert not kernels_of(proc.pid) and not leftovers(run_dir)
    assert_complete(run_dir)
    assert not (run_dir / "notebooks" / "seed0" / NB01).exists(), "a notebook that did not finish is absent"

    proc = start(run_dir)
    wait_for((models / "ga.pt").exists, "the unlearned model's checkpoint", proc)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    wait_for(lambda: not kernels_of(proc.pid), "the orphaned kernel to exit", timeout=30)
    assert_complete(run_dir)
    assert (run_dir / "notebooks" / "seed0" / NB01).exists() and not (run_dir / "notebooks" / "seed0" / NB02).exists()
    (models / ".rl.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")  # as a kill in the middle of a write leaves

    proc = start(run_dir)
    assert finish(proc) == 0, stderr_of(run_dir)[-2000:]
    assert not leftovers(run_dir)
    pd.testing.assert_frame_equal(values(run_dir), values(fresh_runs[0]), check_exact=True)


def test_compare_finds_no_change_between_two_runs_of_one_configuration(fresh_runs, capsys):
    """The regression check on the two fresh studies above: bit-identical runs, nothing to report, exit 0."""
    a, b = fresh_runs[:2]
    assert main(["compare", str(a), str(b)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[-1] == ("0 verdict(s) changed, 0 claim(s) changed; figures of 0 of 5 model(s) moved "
                                        "beyond their noise (exit 0)")
    assert "configuration:" not in printed and "seed 0:" not in printed


def test_compare_names_the_method_whose_hyperparameter_changed(fresh_runs, tmp_path, capsys):
    """One epoch of gradient ascent instead of five leaves much of the class in: `ga` and only `ga` is named, with a
    verdict that changed (exit 1) and the forget accuracy that moved beyond its noise."""
    run_dir = copy_run(fresh_runs[0], tmp_path / "run")
    code, stderr = cli(study_args(run_dir, "--set", "ga.epochs=1"), notebooks=(NB01, NB02))
    assert code == 0, stderr[-2000:]
    capsys.readouterr()  # the study's own printout
    assert main(["compare", str(fresh_runs[0]), str(run_dir)]) == 1
    printed = capsys.readouterr().out
    assert "configuration:\n  overrides.ga.epochs: - -> 1\n" in printed
    named = [line.strip() for line in printed[printed.index("seed 0:"):].splitlines()[1:] if line.startswith("  ") and
             not line.startswith("    ")]
    assert named == ["ga"]
    assert "\n    verdict: " in printed and "\n    forget_train accuracy: " in printed
    assert printed.splitlines()[-1].startswith("1 verdict(s) changed") and printed.endswith("(exit 1)\n")


def test_a_config_of_another_study_is_refused_through_the_cli(tmp_path):
    ecnb.Run.open(StudyConfig.from_options(epochs=3, run_dir=str(tmp_path), **TINY_DATA_OPTIONS))
    code, stderr = cli(study_args(tmp_path))
    assert code == 2
    assert one_error_line(stderr) == (f"ecnb: error: run directory {tmp_path} holds a study with a different "
                                      "configuration (train.epochs: 3 -> 2); use another --run-dir, or --force to "
                                      "start it afresh")


def test_damaged_files_are_named_with_the_way_out_and_force_recovers(fresh_runs, tmp_path):
    run_dir = copy_run(fresh_runs[0], tmp_path / "run")
    originals = {name: (run_dir / name).read_bytes() for name in ("config.json", "results.csv", "seed0/models/original.pt")}

    def truncate(name: str) -> Path:
        """Cut the file in half, never right after a line break: a cut there would leave a shorter but
        complete table, which is not damage."""
        path, data = run_dir / name, originals[name]
        cut = len(data) // 2
        path.write_bytes(data[: cut - 1 if data[cut - 1 : cut] == b"\n" else cut])
        return path

    path = truncate("config.json")
    code, stderr = cli(study_args(run_dir))
    assert code == 1
    line = one_error_line(stderr)
    assert line.startswith(f"ecnb: error: {path} is unreadable (") and line.endswith("rerun with --force to recompute it")
    path.write_text('{"profile": "quick"}')
    code, stderr = cli(study_args(run_dir))
    assert code == 1
    assert one_error_line(stderr) == (f"ecnb: error: {path} is not an ecnb configuration (KeyError('train')); "
                                      "rerun with --force to recompute it")
    path.write_bytes(originals["config.json"])

    path = truncate("results.csv")
    code, stderr = cli(["summary", str(run_dir)])
    assert code == 1
    assert one_error_line(stderr) == (f"ecnb: error: results file {path} is corrupted (it does not end with a complete "
                                      "row); rerun with --force to recompute it")
    path.write_bytes(originals["results.csv"])

    path = truncate("seed0/models/original.pt")
    code, stderr = cli(study_args(run_dir))
    assert code == 1
    line = one_error_line(stderr)
    assert line.startswith("ecnb: study failed: 01_train_original.ipynb failed in cell 6: ArtifactError: "
                           f"checkpoint {path} is corrupted or truncated (")
    assert "rerun with --force to recompute it" in line

    for name in originals:
        truncate(name)
    code, stderr = cli(study_args(run_dir, "--force"))
    assert code == 0, stderr[-2000:]
    load_checkpoint(path)
    expected = values(fresh_runs[0])
    expected = expected[expected["method"].isin(["original", "retrain", "retrain#1", "retrain#2"])
                        & expected["metric"].isin(["accuracy", "split_size"])]
    pd.testing.assert_frame_equal(values(run_dir), expected.reset_index(drop=True), check_exact=True)


def test_a_diverging_method_is_recorded_as_failed_and_the_others_go_on(fresh_runs, tmp_path, monkeypatch, capsys):
    run, seed = ecnb.Run.load(copy_run(fresh_runs[0], tmp_path / "run")), 0
    ds = ecnb.run_dataset(run, "cpu")
    split = ecnb.forget_split(run, ds, seed)
    references = ecnb.train_references(run, ds, split, seed, "cpu")
    run.checkpoint_path("ga", seed).unlink()
    assert "ga" in set(read_results(run.root)["method"]), "rows of an earlier success"
    # on 40 images a class, a step's loss overflows first at this rate (at 1e6 the weights do, at an epoch's end)
    monkeypatch.setitem(unlearn.HPARAMS["quick"], "ga", {**unlearn.HPARAMS["quick"]["ga"], "lr": 1e20})

    models = evaluate.run_methods(run, ds, split, ["ga", "rl"], seed, references, "cpu")

    assert list(models) == ["rl"]
    message = run.failures(seed)["ga"]
    assert re.fullmatch(r"unlearning method 'ga' diverged: the loss became non-finite at epoch \d/5, step \d+ of "
                        r"phase 'train' \(step \d+ of the run\); lower its learning rate \(lr=1e\+20\)", message)
    assert f"ga failed and is left out of the results: {message}" in capsys.readouterr().out.splitlines()
    results = read_results(run.root)
    assert "ga" not in set(results["method"]) and "rl" in set(results["method"])
    assert not run.checkpoint_path("ga", seed).exists()
    table = ecnb.verdicts.judge_run(run, seed, ["ga", "rl"])
    assert "ga" not in table.index and table.loc["rl", "verdict"] and table.loc["rl", "depth"] in ecnb.verdicts.DEPTHS
    assert not run.outcomes_path("ga", seed).exists(), "a failed method keeps no outcomes of an earlier success"
    ecnb.viz.accuracy_bars(results, title="a failed method is just absent")
    assert run.failure_lines() == [f"ga (seed 0) failed: {message}"]
    assert main(["summary", str(run.root)]) == 0
    assert f"ga (seed 0) failed: {message}" in capsys.readouterr().out

    monkeypatch.undo()
    evaluate.run_methods(run, ds, split, ["ga"], seed, references, "cpu")
    assert run.failures(seed) == {} and "ga" in set(read_results(run.root)["method"])


def test_a_method_whose_representation_collapses_is_recorded_as_failed_and_the_others_go_on(fresh_runs, tmp_path,
                                                                                            monkeypatch):
    """A network can be wrecked without a non-finite weight (a plug-in at a high rate): its features go
    constant, CKA is undefined, and the method is left out like a diverging one, not the whole notebook."""
    run, seed = ecnb.Run.load(copy_run(fresh_runs[0], tmp_path / "run")), 0
    ds = ecnb.run_dataset(run, "cpu")
    split = ecnb.forget_split(run, ds, seed)
    references = ecnb.train_references(run, ds, split, seed, "cpu")
    remove_results(run.root, seed, "ga")
    unlearn_or_load = evaluate._unlearn_or_load

    def collapsed(run, ds, split, method, *args, **kwargs):
        model, wall_time, loaded = unlearn_or_load(run, ds, split, method, *args, **kwargs)
        if method == "ga":
            with torch.no_grad():
                for p in model.stages.parameters():
                    p.zero_()
        return model, wall_time, loaded

    monkeypatch.setattr(evaluate, "_unlearn_or_load", collapsed)
    models = evaluate.run_methods(run, ds, split, ["ga", "rl"], seed, references, "cpu")

    assert list(models) == ["rl"]
    assert run.failures(seed)["ga"].startswith("its representation collapsed, so it cannot be measured (CKA is undefined")
    assert "ga" not in set(read_results(run.root)["method"]) and "rl" in set(read_results(run.root)["method"])


def test_a_failing_cell_or_a_killed_kernel_leaves_a_failed_copy_not_an_executed_one(tmp_path):
    source = tmp_path / "99_fault.ipynb"
    target = tmp_path / "out" / "99_fault.ipynb"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("fault = 'none'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os, signal\n"
                                  "if fault == 'kill': os.kill(os.getpid(), signal.SIGKILL)\n"
                                  "if fault == 'raise': raise ValueError('broken cell')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, source)
    execute_notebook(source, target, {"fault": "none"})
    assert target.exists()
    failed = target.with_name("99_fault.failed.ipynb")
    for fault, message in (("raise", "failed in cell 3: ValueError: broken cell"),
                           ("kill", "stopped: its kernel died (killed, or out of memory)")):
        with pytest.raises(StudyError) as info:
            execute_notebook(source, target, {"fault": fault})
        assert str(info.value) == f"99_fault.ipynb {message} (see {failed})"
        assert failed.exists() and not target.exists() and not leftovers(tmp_path)
        target.write_text("{}")  # an executed copy from an earlier run must not survive a failure


@pytest.mark.parametrize("parameters,message", [
    ({"seed": -1}, "cell 4: ConfigError: seed -1 must be an integer >= 0"),
    ({"device": "gpu"}, "cell 4: ConfigError: unknown device 'gpu'; valid: auto, cpu, cuda"),
    ({"methods": ["ga", "nope"]}, "cell 4: ConfigError: unknown baseline method 'nope'; valid: ft, ga, rl"),
], ids=["seed", "device", "method"])
def test_bad_notebook_parameters_fail_with_the_config_error(fresh_runs, tmp_path, parameters, message):
    run_dir = copy_run(fresh_runs[0], tmp_path / "run")
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "seed0" / "models").iterdir()}
    params = {**notebook_parameters(ecnb.Run.load(run_dir).config, 0), "methods": ["ga"], **parameters}
    with pytest.raises(StudyError, match=f"^02_superficial_forgetting.ipynb failed in {message}"):
        execute_notebook(NOTEBOOKS_DIR / NB02, tmp_path / "02.ipynb", params)
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "seed0" / "models").iterdir()} == before, "no model was trained"


def test_bad_options_and_hyperparameters_are_refused_in_one_line_before_any_work(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["study", "--methods", "ga", "nope", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ecnb: error: unknown baseline method 'nope'; valid: ft, ga, rl") and len(err.splitlines()) == 1
    assert not run_dir.exists()
    with pytest.raises(ConfigError, match=r"^ga: hyperparameter lr=-1 is invalid; valid: a number > 0$"):
        unlearn.hparams("ga", lr=-1)
