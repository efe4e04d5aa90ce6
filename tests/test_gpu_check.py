"""scripts/gpu_check.py, the GPU path's one prepared command, kept working on the CPU with tiny settings."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ecnb

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_check_runs_on_the_cpu_and_its_copied_run_reads_back(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--tiny", "--device", "cpu",
         "--run-dir", str(tmp_path / "run"), "--out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## GPU check" in done.stdout and "EC step / fine-tuning step" in done.stdout
    assert {p.name for p in out.iterdir()} >= {"config.json", "results.csv", "gpu_check.json", "gpu_check.md", "seed0"}
    assert not list(out.rglob("*.pt")), "checkpoints stay on the GPU machine"
    results = ecnb.read_results(out)
    for method in ("original", "retrain", "ga", "ec", "ga+ec"):
        metrics = set(results.loc[results["method"] == method, "metric"])
        assert {"accuracy", "mia_efficacy", "cka_to_original", "probe_accuracy", "fewshot_probe_accuracy",
                "relearn_accuracy", "wall_time"} <= metrics, method
    figures = json.loads((out / "gpu_check.json").read_text())
    assert figures["fit_ips"] > 0 and figures["ec_step"]["ratio"] > 0

    # A run made on a GPU says device "cuda"; this machine has none, and the summary still reads it.
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "device": "cuda"}))
    summary = subprocess.run([sys.executable, "-m", "ecnb", "summary", str(out)], capture_output=True, text=True,
                             timeout=120, cwd=ROOT)
    assert summary.returncode == 0, summary.stderr
    assert "verdict" in summary.stdout and "ga+ec" in summary.stdout
