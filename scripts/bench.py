"""Benchmarks of the study: how long it takes, where the time goes, against the project's targets.

    python scripts/bench.py [--device auto|cpu|cuda] [--out docs/benchmarks.md] [--skip-study]
                            [--parts study steps driver cka measure umap tests]

Parts (each prints its figures and fills its own block of the machine's section in --out):
- study: the whole quick study (`python -m ecnb study`) in a fresh temporary run directory, after
  filling a fresh numba cache as `make setup` does (timed apart): total wall time, time per notebook,
  `wall_time` per method from results.csv, peak resident memory of the study's largest process.
- steps: images/s of one training step (cross-entropy, backward, SGD) and one EC unlearning step
  (`ecnb.ec.ec_term` on a forget + retain minibatch, auxiliary modules from `ecnb.ec.ec_setup`) for the
  embedded model (smallcnn, digits 1x16x16) and, on CUDA, ResNet-18 on random 3x32x32 batches of 512;
  fp32 on the CPU, bf16 autocast x channels-last on CUDA. The EC step's cost is given relative to a
  fine-tuning step on the same retain batch, and split into "twice the images" and "EC's own work".
- driver: the project's own loops (`ecnb.train.fit`, `ecnb.unlearn.run_method` for ft and ec) on the
  digits, per step, to show what the loops add to a bare step.
- cka: every per-layer CKA between two models on `--cka-samples` inputs, `ecnb.features` +
  `ecnb.metrics.layer_cka` against the `pytorch-cka` package (a dev dependency) on the same models,
  the same features and the same (full-sample, unbiased) estimator, and both against the exact value
  (float64 products); skipped with the reason when the package is missing.
- measure: the time to measure one unlearned model (`ecnb.evaluate.measure` for `ft`, one thread,
  as a worker of the study) on the digits and on Fashion-MNIST's full test set (the walkthrough with 300
  training images per class), in a fresh process whose peak resident memory is reported; the
  references' features are cached first, as their own jobs leave them. Fashion-MNIST is skipped, with
  the reason, where it is not installed.
- umap: `ecnb.embeddings.fit_umap` (umap-learn, notebook 04's settings) on each tap's flat and pooled
  features of `--umap-samples` test digits; import and first call (numba compiling, into an empty
  NUMBA_CACHE_DIR and with a filled one) apart from the steady per-layer time.
- tests: the whole test suite (`python -m pytest`), off by default because it takes many minutes.

`--threads N` sets torch's and the BLAS libraries' thread count here and in the study's and the tests'
processes (default: the libraries' own, one per core).

Timing: untimed warm-up calls first, then the median of `--repeats` timed repeats; cases that are
compared with each other are interleaved repeat by repeat, so a busy neighbour on a shared machine slows
them alike; CUDA is synchronised before every clock read.

`--out` holds one section per machine (device kind + CPU or GPU model); a run replaces only its own
machine's blocks, so a GPU run adds its section beside the CPU one instead of wiping it.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TypeVar

# Numba compiles into this folder; an empty one per benchmark run makes UMAP's first call a cold one.
_NUMBA_CACHE = tempfile.TemporaryDirectory(prefix="ecnb-bench-numba-")
os.environ["NUMBA_CACHE_DIR"] = _NUMBA_CACHE.name

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import ecnb  # noqa: E402
from ecnb.config import PROFILES, ConfigError, resolve_device  # noqa: E402
from ecnb.data import make_forget_split, split_tensors  # noqa: E402
from ecnb.ec import ec_setup, ec_term  # noqa: E402
from ecnb.embeddings import UmapSettings, fit_umap  # noqa: E402
from ecnb import evaluate  # noqa: E402
from ecnb.evaluate import max_spatial  # noqa: E402
from ecnb.features import extract_features  # noqa: E402
from ecnb.metrics import CKA_FLOAT32_TOLERANCE, cka, cka_rows, layer_cka  # noqa: E402
from ecnb.models import TappedNet, build_model  # noqa: E402
from ecnb.results import REFERENCES  # noqa: E402
from ecnb.train import fit, seed_everything  # noqa: E402
from ecnb.methods import hparams, run_method  # noqa: E402
from ecnb.unlearn import Batch, Step, UnlearnData  # noqa: E402

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
PARTS = ("study", "steps", "driver", "cka", "measure", "umap", "tests")
DEFAULT_PARTS = PARTS[:-1]
FORGET_CLASS = 3  # the quick study's default forget set
RESNET_BATCH = 512
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # torch's and numpy/scipy's pools

# The project's targets. Seconds, ratios and images/s; each is checked by the part that measures it.
STUDY_TARGET_S = 120.0  # `make study` (the walkthrough) after set-up, caches removed, 2 cores
TESTS_TARGET_S = 6 * 60.0  # pytest itself (`make test` with set-up at most 10 min)
EC_RATIO_TARGET = 1.5
RESNET_TARGET_IPS = 20_000.0
CKA_RATIO_TARGET = 1.0  # ecnb's per-layer CKA (extraction included) against pytorch-cka's time
MEASURE_TARGET_S = 15.0  # CPU seconds (one core) to measure one unlearned model on Fashion-MNIST's full test set


# ----------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_cases(
    cases: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int, calls: int = 1
) -> tuple[dict[str, float], dict[str, int]]:
    """Median seconds per call of each case, and its peak CUDA memory in bytes (CUDA only).

    Every case is warmed up first (its peak memory taken there); then each repeat times `calls` calls of
    every case in turn, so the cases of one comparison share whatever the machine is doing meanwhile.
    """
    peaks: dict[str, int] = {}
    for name, fn in cases.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(warmup):
            fn()
        _sync(device)
        if device.type == "cuda":
            peaks[name] = torch.cuda.max_memory_allocated(device)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            _sync(device)
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(s) for name, s in samples.items()}, peaks


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """`fn()` and the seconds it took (for one-off costs: a first call, an import)."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


# ----------------------------------------------------------------------------- report blocks


@dataclass(frozen=True)
class Target:
    """One of the project's targets as measured here: its text, the measured value, and whether it holds."""

    what: str
    measured: str
    holds: bool


@dataclass
class Block:
    """One part's figures: markdown for the doc (also printed) and the targets it checked."""

    part: str
    title: str
    command: str
    lines: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    load: float = field(default_factory=lambda: os.getloadavg()[0])  # other work on a shared machine skews timings

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.lines += ["", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        self.lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        self.lines.append("")

    def note(self, text: str) -> None:
        self.lines += ["", text]

    def markdown(self) -> str:
        when = f"measured {self.started}, 1-min load average {self.load:.1f} at the start"
        head = [f"### {self.title}", "", f"Command: `{self.command}` ({when})"]
        body = head + self.lines
        if self.targets:
            body += ["", "| target | measured | |", "|---|---|---|"]
            body += [f"| {t.what} | {t.measured} | {_verdict(t.holds)} |" for t in self.targets]
        return "\n".join(body).replace("\n\n\n", "\n\n").strip() + "\n"


def _verdict(holds: bool) -> str:
    return "pass" if holds else "**FAIL**"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def ips(images: int, seconds: float) -> str:
    return f"{images / seconds:,.0f}"


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


# ----------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_title(device: torch.device) -> str:
    """The key of this machine's section: device kind and model (a GPU run never replaces a CPU one)."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    return f"CPU: {cpu_model()}, {os.cpu_count()} cores"


def machine_block(device: torch.device, command: str) -> Block:
    block = Block("machine", "Machine", command)
    rows = [
        ("CPU", f"{cpu_model()} ({os.cpu_count()} cores; torch threads: {torch.get_num_threads()})"),
        ("Python / torch", f"{platform.python_version()} / {torch.__version__}"),
        ("OS", platform.platform()),
    ]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        rows.append(("GPU", f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"))
    block.table(("", ""), rows)
    return block


# ----------------------------------------------------------------------------- study and tests


# Runs argv[2:] and writes getrusage(RUSAGE_CHILDREN).ru_maxrss (KiB) to argv[1]. The study is started
# through this small process because a child's ru_maxrss keeps the memory it had when forked: forked
# from the benchmark itself (torch imported), it would report the benchmark's size, not the study's.
PEAK_RSS_LAUNCHER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


def bench_study(command: str, device_arg: str) -> Block:
    """The quick study end to end in a fresh run directory, as a user would run it after set-up: with an
    empty run directory and numba's cache filled as `make setup` fills it (timed apart)."""
    block = Block("study", "Whole quick study", command)
    with tempfile.TemporaryDirectory(prefix="ecnb-bench-study-") as tmp:
        run_dir = Path(tmp) / "run"
        env = {**os.environ, "NUMBA_CACHE_DIR": str(Path(tmp) / "numba"), "PYTHONUNBUFFERED": "1"}
        compile_start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from ecnb.embeddings import compile_umap; compile_umap()"],
                       env=env, cwd=ROOT, check=True)
        compiled = time.perf_counter() - compile_start
        cmd = [sys.executable, "-m", "ecnb", "study", "--run-dir", str(run_dir), "--device", device_arg]
        print("$", " ".join(cmd), flush=True)
        peak_file = Path(tmp) / "peak_rss_kib"
        notebooks: list[tuple[str, float]] = []
        with open(Path(tmp) / "stderr.txt", "w+") as err:
            start = time.perf_counter()
            launch = [sys.executable, "-c", PEAK_RSS_LAUNCHER, str(peak_file), *cmd]
            proc = subprocess.Popen(launch, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=ROOT)
            assert proc.stdout is not None
            for line in proc.stdout:
                print("  " + line, end="", flush=True)
                done = re.match(r"\[seed \d+\] (\S+\.ipynb) done in ([\d.]+) s", line)
                if done:
                    notebooks.append((done.group(1), float(done.group(2))))
            rc = proc.wait()
            total = time.perf_counter() - start
            if rc:
                err.seek(0)
                raise SystemExit(f"the study failed (exit status {rc}):\n{err.read()[-3000:]}")
        peak = int(peak_file.read_text()) * 1024  # Linux reports KiB
        results = ecnb.read_results(run_dir)
    walls = results[results["metric"] == "wall_time"]
    block.table(("", "seconds"), [("whole study (process start to exit)", f"{total:.1f}"),
                                  *((name, f"{s:.1f}") for name, s in notebooks)])
    rest = total - sum(s for _, s in notebooks)
    block.note(f"Outside the notebooks (imports, report, summary): {rest:.1f} s. Peak resident memory of the "
               f"largest process of the study (a notebook kernel or a worker): {mib(peak)} (getrusage "
               f"RUSAGE_CHILDREN). Before the study, as in `make setup`: numba compiling umap-learn's kernels into "
               f"an empty cache, {compiled:.1f} s. Workers: {os.environ.get('ECNB_WORKERS', 'one per core')}.")
    block.note("`wall_time` per method (results.csv: training for original/retrain, unlearning otherwise; "
               "in a worker, while the other worker runs another job):")
    rows = [(m, f"{v:.2f}") for m, v in zip(walls["method"], walls["value"], strict=True)]
    block.table(("method", "seconds"), rows + [("**sum**", f"{walls['value'].sum():.1f}")])
    block.targets.append(Target(f"whole quick study <= {STUDY_TARGET_S:.0f} s", f"{total:.0f} s", total <= STUDY_TARGET_S))
    return block


def bench_tests(command: str) -> Block:
    """The whole test suite, timed as `make test` runs it (minus the set-up)."""
    block = Block("tests", "Test suite", command)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "auto"]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    total = time.perf_counter() - start
    block.note(f"`{' '.join(['python', *cmd[1:]])}`: {total:.0f} s, exit status {rc}.")
    block.targets.append(Target(f"test suite <= {TESTS_TARGET_S / 60:.0f} min", f"{total / 60:.1f} min",
                                total <= TESTS_TARGET_S))
    return block


# ----------------------------------------------------------------------------- training and EC steps


@dataclass(frozen=True)
class Setting:
    """bf16 autocast and channels-last memory, each on or off, and torch's CPU thread count."""

    bf16: bool
    channels_last: bool
    threads: int

    def label(self, device: torch.device) -> str:
        text = f"{'bf16' if self.bf16 else 'fp32'}, {'channels-last' if self.channels_last else 'NCHW'}"
        return text if device.type == "cuda" else f"{text}, {self.threads} thread{'s' * (self.threads > 1)}"

    def is_driver_default(self, device: torch.device) -> bool:
        """What the study does here: `ecnb.train.autocast` turns bf16 on on CUDA, `prepare_model` uses
        channels-last everywhere, and every job of `ecnb.workers` runs on one CPU thread."""
        if device.type == "cuda":
            return self.bf16 and self.channels_last
        return not self.bf16 and self.channels_last and self.threads == 1


def settings(device: torch.device) -> list[Setting]:
    """All four combinations on CUDA. On the CPU bf16 is slower and unused, so fp32 in both layouts, at
    torch's default thread count and at the one thread of the study's workers."""
    threads = torch.get_num_threads()
    if device.type == "cuda":
        return [Setting(b, c, threads) for b in (False, True) for c in (False, True)]
    counts = sorted({threads, 1}, reverse=True)
    return [Setting(False, c, n) for n in counts for c in (False, True)]


def digits_data(device: torch.device) -> tuple[ecnb.Dataset, UnlearnData]:
    """The embedded digits and the quick study's default forget set (class 3), on `device`."""
    ds = ecnb.load_dataset("digits").to(device)
    split = make_forget_split(ds.y_train, (FORGET_CLASS,))
    return ds, UnlearnData.from_splits(split_tensors(ds, split), ds.num_classes, (FORGET_CLASS,), device)


def random_cifar_data(device: torch.device, n: int, seed: int = 0) -> UnlearnData:
    """CIFAR-shaped random images: n forget samples of class 0 and n retain samples of classes 1-9."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, 3, 32, 32, generator=gen)
    y = torch.cat([torch.zeros(n, dtype=torch.long), torch.randint(1, 10, (n,), generator=gen)])
    return UnlearnData(x[:n], y[:n], x[n:], y[n:], 10, (0,), device)


def step_cases(
    model_name: str, data: UnlearnData, batch: int, setting: Setting, device: torch.device
) -> dict[str, Callable[[], None]]:
    """Three SGD steps on one model: FT on a retain batch, FT on the forget + retain images, and EC.

    FT-on-both processes exactly the images of the EC step, so EC / FT = (FT-on-both / FT: twice the
    images) x (EC / FT-on-both: EC's auxiliary modules, contrastive and per-point losses).
    """
    seed_everything(0)
    fmt = torch.channels_last if setting.channels_last else torch.contiguous_format
    model = build_model(model_name, data.retain_x.shape[1], data.num_classes).to(device, memory_format=fmt)
    hp = hparams("ec", "quick", 0, ec_aux_epochs=0)  # EC's loss settings; warm-up does not change a step's cost
    state = ec_setup(model, data, hp)
    state.aux.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    fx, fy = data.forget_x[:batch].contiguous(memory_format=fmt), data.forget_y[:batch]
    rx, ry = data.retain_x[:batch].contiguous(memory_format=fmt), data.retain_y[:batch]
    both_x, both_y = torch.cat([fx, rx]).contiguous(memory_format=fmt), torch.cat([fy, ry])
    idx = torch.arange(batch, device=device)
    ec_step = Step(0, "train", 0, 0, 1, Batch(fx, fy, idx[: len(fy)]), Batch(rx, ry, idx[: len(ry)]), hp)
    model.train()

    def sgd_step(loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=setting.bf16):
                loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    return {
        "ft": sgd_step(lambda: F.cross_entropy(model(rx), ry)),
        "ft_both": sgd_step(lambda: F.cross_entropy(model(both_x), both_y)),
        "ec": sgd_step(lambda: ec_term(model, state, ec_step)),
    }


def bench_steps(command: str, device: torch.device, repeats: int) -> Block:
    block = Block("steps", "Training and unlearning steps", command)
    _, digits = digits_data(device)
    setups = [("smallcnn", "digits 1x16x16", digits, PROFILES["quick"]["train"].batch_size)]
    if device.type == "cuda":
        setups.append(("resnet18", "random 3x32x32", random_cifar_data(device, RESNET_BATCH), RESNET_BATCH))
    else:
        print("steps: ResNet-18 at batch 512 is measured on CUDA only (minutes per step on a small CPU)")
    rows, ratio_rows = [], []
    calls = 10 if device.type == "cuda" else 5
    for model_name, inputs, data, batch in setups:
        for setting in settings(device):
            label = setting.label(device)
            print(f"steps: {model_name}, {label} ...", flush=True)
            default_threads = torch.get_num_threads()
            torch.set_num_threads(setting.threads)
            cases = step_cases(model_name, data, batch, setting, device)
            times, peaks = time_cases(cases, device, 3, repeats, calls)
            torch.set_num_threads(default_threads)
            ft, both, ec = times["ft"], times["ft_both"], times["ec"]
            n_ec = batch + min(batch, len(data.forget_y))
            peak = mib(max(peaks.values())) if peaks else "-"
            rows.append((model_name, inputs, batch, label, ms(ft), ips(batch, ft), ms(ec), ips(n_ec, ec), peak))
            ratio_rows.append((model_name, label, f"{ec / ft:.2f}", f"{ec / ft * batch / n_ec:.2f}",
                               f"{both / ft:.2f}", f"{ec / both:.2f}"))
            if setting.is_driver_default(device):
                # "On the same batch": the fine-tuning step on the images the EC step takes (forget + retain).
                block.targets.append(Target(f"EC step <= {EC_RATIO_TARGET}x FT step on its images ({model_name}, {label})",
                                            f"{ec / both:.2f}x", ec / both <= EC_RATIO_TARGET))
            if model_name == "resnet18" and setting.bf16 and setting.channels_last:
                what = f"ResNet-18 training >= {RESNET_TARGET_IPS:,.0f} images/s (bf16 + channels-last)"
                block.targets.append(Target(what, f"{batch / ft:,.0f} images/s", batch / ft >= RESNET_TARGET_IPS))
    block.note(f"One SGD step (momentum 0.9, weight decay 5e-4), median of {repeats} repeats of {calls} steps after "
               "3 warm-up steps. Training = cross-entropy on a batch; EC = `ec_term` (all taps, quick-profile loss "
               "settings) on a forget batch plus a retain batch of the same size, so it processes twice the images. "
               "Peak = torch.cuda.max_memory_allocated.")
    block.table(("model", "inputs", "batch", "setting", "train step", "train images/s", "EC step",
                 "EC images/s", "peak GPU memory"), rows)
    block.note("EC step against a fine-tuning (FT) step on the same retain batch; the ratio splits into "
               "FT on the forget + retain images / FT (the doubled batch) times EC / that (EC's own work):")
    block.table(("model", "setting", "EC / FT per step", "per image", "FT(f+r) / FT", "EC / FT(f+r)"), ratio_rows)
    return block


# ----------------------------------------------------------------------------- the project's loops


@dataclass
class Models:
    """Two models of the quick study for the CKA and UMAP parts: the original and its EC-unlearned copy."""

    original: TappedNet
    unlearned: TappedNet


def bench_driver(command: str, device: torch.device, epochs: int | None) -> tuple[Block, Models]:
    """`fit` and `run_method` as the study calls them (quick-profile settings; `epochs` None keeps each
    loop's own); per-step time includes everything the loops do besides the bare step."""
    block = Block("driver", "The project's loops (digits, smallcnn)", command)
    ds, data = digits_data(device)
    recipe = PROFILES["quick"]["train"]
    recipe = dataclasses.replace(recipe, epochs=epochs or recipe.epochs)
    seed_everything(0)
    original = build_model("smallcnn", ds.input_shape[0], ds.num_classes)
    _, wall = timed(lambda: fit(original, ds.x_train, ds.y_train, recipe, 0, device))
    steps = recipe.epochs * -(-len(ds.y_train) // recipe.batch_size)
    rows = [("`fit` (original)", recipe.epochs, steps, f"{wall:.2f}", ms(wall / steps))]
    unlearned: dict[str, TappedNet] = {}
    for name in ("ft", "ec"):
        hp = hparams(name, "quick", 0, **({"epochs": epochs} if epochs else {}))
        unlearned[name], stats = run_method(name, original, data, hp)
        rows.append((f"`run_method({name!r})`", hp["epochs"], stats.steps, f"{stats.wall_time:.2f}",
                     ms(stats.wall_time / stats.steps)))
    block.note("Quick-profile settings, batches of 64. Wall time includes each loop's set-up (for ec, "
               f"{hparams('ec', 'quick', 0)['ec_aux_epochs']} epochs of auxiliary warm-up); compare the time "
               "per step with the bare steps above to see what the loops add.")
    block.table(("loop", "epochs", "steps", "seconds", "per step"), rows)
    return block, Models(original.eval(), unlearned["ec"])


# ----------------------------------------------------------------------------- CKA


class HookableTaps(nn.Module):
    """A TappedNet whose taps pass through identity modules, so forward hooks (pytorch-cka's) see exactly
    the features ecnb's CKA sees (conv taps average-pooled to at most `max_spatial` per side)."""

    def __init__(self, net: TappedNet, max_spatial: int | None):
        super().__init__()
        self.net, self.max_spatial = net, max_spatial
        self.taps = nn.ModuleDict({tap: nn.Identity() for tap in net.taps})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, feats = self.net.forward_taps(x)
        for tap, a in feats.items():
            if a.dim() == 4 and self.max_spatial is not None:
                a = F.adaptive_avg_pool2d(a, tuple(min(s, self.max_spatial) for s in a.shape[2:]))
            self.taps[tap](a)
        return logits


@dataclass(frozen=True)
class CkaPair:
    """Two models of one architecture compared on the same inputs, with the feature pooling the study uses."""

    label: str
    a: TappedNet
    b: TappedNet
    x: torch.Tensor
    max_spatial: int | None

    def cases(self, device: torch.device, compute_cka: Callable[..., list[torch.Tensor]] | None
              ) -> tuple[dict[str, Callable[[], object]], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The timed calls (ecnb's extraction and CKA, CKA on GPU tensors on CUDA, pytorch-cka when
        installed) and the two models' features that ecnb's CKA reads."""
        fa, fb = (extract_features(m, self.x, max_spatial=self.max_spatial) for m in (self.a, self.b))
        taps = self.a.taps
        cases: dict[str, Callable[[], object]] = {
            "extract": lambda: [extract_features(m, self.x, max_spatial=self.max_spatial) for m in (self.a, self.b)],
            "cka": lambda: layer_cka(fa, fb, taps),
        }
        if device.type == "cuda":
            def on_gpu(feats: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
                return {t: torch.from_numpy(feats[t]).to(device) for t in taps}
            cases["cka on the GPU"] = lambda: layer_cka(on_gpu(fa), on_gpu(fb), taps)
        if compute_cka is not None:
            cases["pytorch-cka"] = lambda: self.reference(device, compute_cka)
        return cases, fa, fb

    def reference(self, device: torch.device, compute_cka: Callable[..., list[torch.Tensor]]) -> torch.Tensor:
        """pytorch-cka's per-tap values, from hooks on the same features and one batch of all samples."""
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x), batch_size=len(self.x))
        hooked = [HookableTaps(m, self.max_spatial) for m in (self.a, self.b)]
        layers = [f"taps.{t}" for t in self.a.taps]
        return compute_cka(*hooked, loader, layers=layers, device=device, progress=False)[0].diagonal()


def cka_pairs(device: torch.device, models: Models, n: int) -> list[CkaPair]:
    """The study's model on this device: the small CNN everywhere, ResNet-18 on CUDA; random inputs."""
    gen = torch.Generator().manual_seed(0)
    pairs = [CkaPair("smallcnn: original vs ec", models.original, models.unlearned,
                     torch.randn(n, 1, 16, 16, generator=gen), max_spatial("quick", (1, 16, 16)))]
    if device.type == "cuda":
        nets = []
        for seed in (0, 1):
            seed_everything(seed)
            nets.append(build_model("resnet18", 3, 10).to(device).eval())
        pairs.append(CkaPair("resnet18: two initialisations", *nets, torch.randn(n, 3, 32, 32, generator=gen),
                             max_spatial("paper", (3, 32, 32))))
    return pairs


def pytorch_cka() -> Callable[..., list[torch.Tensor]] | None:
    """pytorch-cka's `compute_cka`, or None (with the reason printed) where the dev dependency is missing."""
    try:
        from cka import compute_cka
    except ImportError as e:
        print(f"cka: pytorch-cka cannot be imported ({e}); comparing nothing")
        return None
    return compute_cka


def bench_cka(command: str, device: torch.device, models: Models, n: int, repeats: int) -> Block:
    """ecnb's per-layer CKA as the study computes it (features extracted to numpy, `CKA_PRODUCTS` on the
    CPU) against pytorch-cka on the same models, inputs and features; on CUDA also `layer_cka` on GPU
    tensors. Values: both against the exact CKA (float64 products)."""
    block = Block("cka", f"Per-layer CKA between two models ({n:,} samples)", command)
    compute_cka = pytorch_cka()
    rows = []
    for pair in cka_pairs(device, models, n):
        print(f"cka: {pair.label} ...", flush=True)
        cases, fa, fb = pair.cases(device, compute_cka)
        times, _ = time_cases(cases, device, 1, repeats)
        ours = times["extract"] + times["cka"]
        on_gpu = f"{times['extract'] + times['cka on the GPU']:.3f}" if "cka on the GPU" in times else "-"
        taps = pair.a.taps
        row = [pair.label, ", ".join(f"{fa[t].shape[1]:,}" for t in taps), f"{times['extract']:.3f}",
               f"{times['cka']:.3f}", f"{ours:.3f}", on_gpu]
        exact = {t: cka(fa[t], fb[t]) for t in taps}
        ours_off = max(abs(v - exact[t]) for t, v in layer_cka(fa, fb, taps).items())
        row.append(f"{ours_off:.1e}")
        model = pair.label.split(":")[0]
        block.targets.append(Target(f"ecnb's CKA within {CKA_FLOAT32_TOLERANCE:.0e} of the exact value ({model})",
                                    f"{ours_off:.1e}", ours_off <= CKA_FLOAT32_TOLERANCE))
        if compute_cka is None:
            row += ["-", "-", "-"]
        else:
            theirs = times["pytorch-cka"]
            theirs_off = max(abs(float(v) - exact[t])
                             for v, t in zip(pair.reference(device, compute_cka), taps, strict=True))
            row += [f"{theirs:.3f}", f"{ours / theirs:.2f}", f"{theirs_off:.1e}"]
            what = f"per-layer CKA at most {CKA_RATIO_TARGET:g}x pytorch-cka's time ({model}, as the study runs it)"
            block.targets.append(Target(what, f"{ours / theirs:.2f}x its time", ours / theirs <= CKA_RATIO_TARGET))
        rows.append(row)
    reference = (f"pytorch-cka {metadata.version('pytorch-cka')}" if compute_cka is not None
                 else "pytorch-cka (not installed here: `pip install -c constraints.txt -e '.[dev]'`)")
    block.note(f"Median of {repeats} after one warm-up; seconds for all taps of a pair. ecnb: `extract_features` of "
               "both models (256 images a batch on the CPU, 1,024 on CUDA, to numpy, as the study caches them) then "
               "`layer_cka` (unbiased HSIC, "
               "centred in float64, float32 products summed in float64, Gram blocks or the feature-space form, "
               f"whichever costs less, on the CPU arrays; on CUDA also on GPU tensors). {reference}: `compute_cka` "
               "with forward hooks on the same taps and one batch of all samples, so both compute the same "
               "full-sample unbiased CKA; it works in float32 without centring and also fills the cross-layer "
               "matrix. 'off the exact value': the largest difference, over taps, to `ecnb.metrics.cka` with "
               "float64 products. Inputs: random normal images.")
    block.table(("models", "feature dims per tap", "ecnb extract", "ecnb layer_cka", "ecnb total",
                 "ecnb total, CKA on the GPU", "ecnb off the exact value", "pytorch-cka", "ecnb / pytorch-cka",
                 "pytorch-cka off the exact value"), rows)
    return block


# ----------------------------------------------------------------------------- measuring one model


# The runs of the measure part: data set -> (training, test) images per class; Fashion-MNIST as the walkthrough
# on it runs (300 training images per class) with its whole test set (1,000 per class).
MEASURE_RUNS = {"digits": (None, None), "fashion_mnist": (300, 1000)}
MEASURE_METHOD = "ft"

# Measures one unlearned model of a run as a worker of the study does (one thread), in a process of its own so
# that its peak resident memory is the measurement's; argv: run directory, method. torch.optim's one-time
# import is paid first, as a worker pays it when it unlearns.
MEASURE_ONE = (
    "import json, resource, sys, time\n"
    "import torch, ecnb\n"
    "from ecnb import evaluate\n"
    "from ecnb.workers import one_thread\n"
    "run, method = ecnb.Run.load(sys.argv[1]), sys.argv[2]\n"
    "ds = ecnb.run_dataset(run); split = ecnb.forget_split(run, ds, 0)\n"
    "refs = ecnb.train_references(run, ds, split, 0, 'cpu')\n"
    "model, wall_time = evaluate.unlearn_or_load(run, ds, split, method, 0, refs['original'], 'cpu')\n"
    "torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)\n"
    "with one_thread():\n"
    "    start, cpu = time.perf_counter(), time.process_time()\n"
    "    rows, _ = evaluate.measure(run, ds, split, method, model, 0, refs, wall_time)\n"
    "    wall, cpu = time.perf_counter() - start, time.process_time() - cpu\n"
    "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
    "print(json.dumps({'wall': wall, 'cpu': cpu, 'rows': len(rows), 'peak': peak}))\n"
)


def measure_run(root: Path, dataset: str, per_class: tuple[int | None, int | None]) -> tuple[ecnb.Run, dict[str, int]]:
    """A run on `dataset` (forget class 3, seed 0) with `original`, `retrain` and `MEASURE_METHOD` trained, and
    the references' features of the CKA splits cached, as their own measuring leaves them; and its split sizes."""
    config = ecnb.StudyConfig.from_options(dataset=dataset, train_per_class=per_class[0], test_per_class=per_class[1],
                                           forget_classes=3, run_dir=str(root / dataset), device="cpu")
    run = ecnb.Run.open(config)
    ds = ecnb.run_dataset(run)
    split = ecnb.forget_split(run, ds, 0)
    refs = ecnb.train_references(run, ds, split, 0, "cpu")
    evaluate.unlearn_or_load(run, ds, split, MEASURE_METHOD, 0, refs["original"], "cpu")
    splits = split_tensors(ds, split)
    spatial = max_spatial(config.profile, ds.input_shape)
    cka_rows(run, refs["original"], "original", 0, {r: refs[r] for r in REFERENCES},
             {s: splits[s] for s in evaluate.CKA_SPLITS}, spatial)
    return run, {name: len(y) for name, (_, y) in splits.items()}


def bench_measure(command: str) -> Block:
    """`evaluate.measure` of one unlearned model on each of `MEASURE_RUNS`, timed in a fresh one-thread process."""
    block = Block("measure", f"Measuring one model (`evaluate.measure` of `{MEASURE_METHOD}`)", command)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ecnb-bench-measure-") as tmp:
        for dataset, per_class in MEASURE_RUNS.items():
            print(f"measure: {dataset}: training the references and {MEASURE_METHOD} ...", flush=True)
            try:
                run, sizes = measure_run(Path(tmp), dataset, per_class)
            except ConfigError as e:
                print(f"measure: {dataset} skipped: {e}")
                rows.append((dataset, "-", "-", "-", "-", f"skipped: {e}"))
                continue
            out = subprocess.run([sys.executable, "-c", MEASURE_ONE, str(run.root), MEASURE_METHOD], cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            m = json.loads(out.stdout.strip().splitlines()[-1])
            split_text = ", ".join(f"{name} {n:,}" for name, n in sizes.items())
            rows.append((dataset, split_text, f"{m['wall']:.1f}", f"{m['cpu']:.1f}", mib(m["peak"]), m["rows"]))
            if dataset == "fashion_mnist":
                block.targets.append(Target(f"measuring one model on Fashion-MNIST's full test set <= "
                                            f"{MEASURE_TARGET_S:.0f} s of one core", f"{m['cpu']:.1f} s",
                                            m["cpu"] <= MEASURE_TARGET_S))
    block.note(f"Forget class 3, seed 0, each data set's own profile (quick, fashion); `{MEASURE_METHOD}` unlearned, then measured alone in a fresh "
               "process at one thread, as a worker of `run_methods` measures it, with the references' features "
               "already cached. CPU = the process's CPU time over the measurement; peak = its largest resident "
               "memory (getrusage), imports, data and the three models included.")
    block.table(("data set", "images per split", "wall (s)", "CPU (s)", "peak memory", "rows"), rows)
    return block


# ----------------------------------------------------------------------------- UMAP


# A fresh process's `import umap` and first fit with numba's cache already filled: what notebook 04's
# kernel pays in every study after the first (the Makefile keeps the cache in .numba_cache).
WARM_UMAP = (
    "import sys, time\n"
    "start = time.perf_counter(); import umap; imported = time.perf_counter() - start\n"
    "import numpy as np; from ecnb.embeddings import UmapSettings, fit_umap\n"
    "x = np.load(sys.argv[1]); start = time.perf_counter(); fit_umap(x, UmapSettings())\n"
    "print(imported, time.perf_counter() - start)\n"
)


def bench_umap(command: str, device: torch.device, models: Models, n: int) -> Block:
    """`ecnb.embeddings.fit_umap` as notebook 04 calls it, per tap, on the flat features it embeds and on
    the pooled ones; import and first call (numba compiling) apart from the steady time, cold and warm."""
    block = Block("umap", f"UMAP per layer ({n} digits)", command)
    ds, _ = digits_data(device)
    x = ds.x_test[:n]
    views = {"flat": extract_features(models.original, x, max_spatial=max_spatial("quick", (1, 16, 16))),
             "pooled": extract_features(models.original, x, global_pool=True)}
    taps = models.original.taps
    settings = UmapSettings()
    umap_module, cold_import = timed(lambda: importlib.import_module("umap"))
    _, cold_first = timed(lambda: fit_umap(views["flat"][taps[0]], settings))
    with tempfile.NamedTemporaryFile(suffix=".npy") as f:
        np.save(f, views["flat"][taps[0]])
        f.flush()
        out = subprocess.run([sys.executable, "-c", WARM_UMAP, f.name], capture_output=True, text=True, check=True)
    warm_import, warm_first = map(float, out.stdout.split())
    cases = {f"{view}/{tap}": (lambda f=feats[tap]: fit_umap(f, settings))
             for view, feats in views.items() for tap in taps}
    times, _ = time_cases(cases, torch.device("cpu"), 0, 2)
    steady = times[f"flat/{taps[0]}"]
    block.note(f"umap-learn {umap_module.__version__} through `ecnb.embeddings.fit_umap` with its default "
               f"`UmapSettings()` ({settings}; single-threaded), on {len(x)} test digits. Numba compiles umap's "
               "and pynndescent's kernels at import and at the first fit; those it may cache go to NUMBA_CACHE_DIR, "
               "where a new process (each later study's notebook 04) finds them:")
    block.table(("", "import umap (s)", f"first fit, {taps[0]} (s)", "of which compiling or loading (s)"), [
        ("empty cache (a first study)", f"{cold_import:.1f}", f"{cold_first:.1f}", f"{cold_first - steady:.1f}"),
        ("filled cache (later studies)", f"{warm_import:.1f}", f"{warm_first:.1f}", f"{warm_first - steady:.1f}"),
    ])
    block.note("Steady time per fit (median of 2 after the first), for the flat features notebook 04 embeds "
               "(for every model of the run) and for the pooled ones:")
    rows = [(tap, *(c for view in views for c in (views[view][tap].shape[1], f"{times[f'{view}/{tap}']:.2f}")))
            for tap in taps]
    rows.append(("**all taps**", *(c for view in views
                                    for c in ("", f"{sum(times[f'{view}/{tap}'] for tap in taps):.2f}"))))
    block.table(("tap", "flat dims", "flat (s)", "pooled dims", "pooled (s)"), rows)
    return block


# ----------------------------------------------------------------------------- the document


def marker(key: str, end: bool = False) -> str:
    return f"<!-- bench:{key} {'end' if end else 'begin'} -->"


def between(text: str, key: str) -> str | None:
    """What stands between `key`'s markers in `text`, or None when they are not both there."""
    begin, end = marker(key), marker(key, end=True)
    if begin not in text or end not in text.split(begin, 1)[1]:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0]


def update_doc(path: Path, title: str, blocks: dict[str, str]) -> None:
    """Write `blocks` into this machine's section of `path`, keeping its other blocks and other machines'."""
    key = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    text = path.read_text() if path.exists() else "# Benchmarks\n\nWritten by `scripts/bench.py`.\n"
    section = between(text, key) or ""
    merged = {part: blocks.get(part) or between(section, f"{key}:{part}") for part in ("machine", *PARTS)}
    inner = [f"## {title}"]
    inner += [f"{marker(f'{key}:{p}')}\n{b.strip()}\n{marker(f'{key}:{p}', end=True)}" for p, b in merged.items() if b]
    new = f"{marker(key)}\n" + "\n\n".join(inner) + f"\n{marker(key, end=True)}"
    if between(text, key) is None:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    else:
        head, rest = text.split(marker(key), 1)
        text = head + new + rest.split(marker(key, end=True), 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ----------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the study and the benchmarks run (auto: CUDA when present)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md",
                        help="markdown file whose section for this machine is (re)written")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(DEFAULT_PARTS),
                        help=f"what to measure (default: {' '.join(DEFAULT_PARTS)})")
    parser.add_argument("--skip-study", action="store_true", help="leave out the whole study (it takes minutes)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads of torch and of numpy/scipy's BLAS, here and in the study's processes "
                             "(default: the libraries' own, one per core)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement (median)")
    parser.add_argument("--epochs", type=int,
                        help="epochs of the driver part's loops (default: the quick profile's, 30 / 5 / 10)")
    parser.add_argument("--cka-samples", type=int, default=2000, help="samples for the CKA comparison")
    parser.add_argument("--umap-samples", type=int, default=400, help="digits embedded by UMAP per layer")
    args = parser.parse_args(argv)
    if args.skip_study:
        args.parts = [p for p in args.parts if p != "study"]
    for name in ("threads", "repeats", "epochs", "cka_samples", "umap_samples"):
        value = getattr(args, name)
        if value is not None and value < (4 if name == "cka_samples" else 1):
            parser.error(f"--{name.replace('_', '-')} {value} is too small")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ConfigError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    if args.threads:  # here, and through the environment in the study's and the tests' processes
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
        os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(args.threads)))
    command = " ".join(["python scripts/bench.py", *(argv if argv is not None else sys.argv[1:])])
    base = f"python scripts/bench.py --device {args.device}" + (f" --threads {args.threads}" if args.threads else "")
    epochs = f" --epochs {args.epochs}" if args.epochs else ""
    title = machine_title(device)
    blocks: list[Block] = []

    def report(block: Block) -> None:
        """Print a part's figures and write them at once, so a later part's failure loses nothing."""
        print("\n" + block.markdown(), flush=True)
        update_doc(args.out, title, {block.part: block.markdown()})
        blocks.append(block)

    report(machine_block(device, command))
    if "study" in args.parts:
        report(bench_study(f"{base} --parts study", args.device))
    if "tests" in args.parts:
        report(bench_tests(f"{base} --parts tests"))
    if "measure" in args.parts:
        report(bench_measure(f"{base} --parts measure"))
    if "steps" in args.parts:
        report(bench_steps(f"{base} --parts steps --repeats {args.repeats}", device, args.repeats))
    if {"driver", "cka", "umap"} & set(args.parts):
        driver, models = bench_driver(f"{base} --parts driver{epochs}", device, args.epochs)
        if "driver" in args.parts:
            report(driver)
        if "cka" in args.parts:
            report(bench_cka(f"{base} --parts cka --cka-samples {args.cka_samples}", device, models,
                             args.cka_samples, min(args.repeats, 3)))
        if "umap" in args.parts:
            report(bench_umap(f"{base} --parts umap --umap-samples {args.umap_samples}", device, models,
                              args.umap_samples))
    print("\nTargets:")
    for t in (t for block in blocks for t in block.targets):
        print(f"  {_verdict(t.holds):9} {t.what}: {t.measured}")
    print(f"\nwrote the section '{title}' of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
