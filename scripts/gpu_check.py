"""The GPU path, measured once: a paper-like study on Fashion-MNIST with ResNet-18, and its figures.

    python scripts/gpu_check.py [--device auto] [--run-dir runs/gpu-check] [--out DIR] [--tiny]

On Fashion-MNIST (read offline: Debian's dataset-fashion-mnist, or the same four idx files in
data/fashion-mnist/), 28x28 padded to 32x32, the CIFAR-style ResNet-18 of the paper profile: trains
`original` and `retrain`, runs every baseline, `ec` and every plug-in with the paper profile's settings,
measures every metric of docs/study.md, "Metrics" through the study's own evaluation path (attacks included;
UMAP is not), and writes a normal run directory (config.json, checkpoints, results.csv). Then it prints,
and writes to `gpu_check.md` / `gpu_check.json` in the run directory:

- training throughput: images/s of the real training loop (`ecnb.train.fit`, bf16 autocast and
  channels-last on CUDA) and of bare steps at batch 512 in fp32/NCHW and bf16/channels-last, beside
  airbench's published CIFAR-10 speed as the reference for what a GPU can do;
- host synchronisations per training epoch (PyTorch's sync debug mode counts them);
- each method's wall time, the EC step against a fine-tuning step, peak GPU memory;
- per-layer CKA computed on the GPU against the CPU (values and time);
- the summary table with the verdicts.

`--out DIR` copies what a machine without the GPU needs to read the run (config.json, results.csv,
failures, the figures; not the checkpoints) into DIR; `python -m ecnb summary DIR` reads it there.
`--tiny` shrinks everything (one baseline, `ga`, with `ec` and `ga+ec`, one epoch of each stage) so that
the whole script runs on a CPU in a minute or two (the test does this).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("ECNB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import ecnb  # noqa: E402
from ecnb import ec, evaluate, verdicts  # noqa: E402
from ecnb.config import StudyConfig, resolve_device  # noqa: E402
from ecnb.features import extract_features  # noqa: E402
from ecnb.methods import one_epoch_each  # noqa: E402
from ecnb.metrics import layer_cka  # noqa: E402
from ecnb.results import read_results  # noqa: E402
from ecnb.train import fit, prepare_model, seed_everything  # noqa: E402
from ecnb.unlearn import UnlearnData  # noqa: E402

# airbench94 (Jordan 2024, arXiv 2404.00498): 94% on CIFAR-10 in 3.29 s on one A100, about ten epochs of
# 50,000 images with a small network built for speed: roughly 150,000 training images/s.
AIRBENCH_IPS = 150_000
FORGET_CLASS = 0  # T-shirt/top


def step_throughput(ds: ecnb.Dataset, device: torch.device, batch: int, steps: int) -> dict[str, float]:
    """Images/s of bare ResNet-18 training steps (cross-entropy, backward, SGD) on the run's images, in
    fp32/NCHW and in bf16/channels-last (CUDA only; the CPU takes fp32/NCHW)."""
    out = {}
    x, y = ds.x_train[:batch], ds.y_train[:batch]
    modes = [(False, False), (True, True)] if device.type == "cuda" else [(False, False)]
    for bf16, channels_last in modes:
        seed_everything(0)
        model = ecnb.build_model("resnet18", ds.input_shape[0], ds.num_classes).to(device)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt).train()
        xb = x.contiguous(memory_format=fmt)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model(xb), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        out[f"{'bf16' if bf16 else 'fp32'}, {'channels-last' if channels_last else 'NCHW'}"] = (
            len(y) / _seconds_per_step(step, steps, device))
    return out


def _seconds_per_step(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Mean wall time of `step` over `steps` calls, after 3 warm-up calls (compilation, allocator, autotuning)."""
    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def ec_against_ft(data: UnlearnData, device: torch.device, batch: int, steps: int) -> dict[str, float]:
    """Seconds per step of EC (`ec_term` on a forget + a retain batch, paper-profile settings) and of fine-tuning
    on the same forget + retain images, as the study runs them (its autocast and memory format)."""
    seed_everything(0)
    model = prepare_model(ecnb.build_model("resnet18", data.retain_x.shape[1], data.num_classes), device).train()
    hp = ecnb.methods.hparams("ec", "paper", 0, ec_aux_epochs=0)
    state = ec.ec_setup(model, data, hp)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    n = min(batch, len(data.forget_y), len(data.retain_y))
    idx = torch.arange(n, device=device)
    f = ecnb.unlearn.Batch(data.forget_x[:n], data.forget_y[:n], idx)
    r = ecnb.unlearn.Batch(data.retain_x[:n], data.retain_y[:n], idx)
    both_x, both_y = torch.cat([f.x, r.x]), torch.cat([f.y, r.y])
    step = ecnb.unlearn.Step(0, "train", 0, 0, 1, f, r, hp)
    cases = {"ft": lambda: torch.nn.functional.cross_entropy(model(both_x), both_y),
             "ec": lambda: ec.ec_term(model, state, step)}
    times = {}
    for name, loss_fn in cases.items():
        def run() -> None:
            with ecnb.train.autocast(device):
                loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times[name] = _seconds_per_step(run, steps, device)
    return {"images per step": 2 * n, "ft s/step": times["ft"], "ec s/step": times["ec"], "ratio": times["ec"] / times["ft"]}


def syncs_per_epoch(ds: ecnb.Dataset, device: torch.device, recipe) -> int | None:
    """Host synchronisations in one epoch of `ecnb.train.fit`, counted by PyTorch's sync debug mode (CUDA only)."""
    if device.type != "cuda":
        return None
    model = ecnb.build_model("resnet18", ds.input_shape[0], ds.num_classes)
    one = dataclasses.replace(recipe, epochs=1)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(model, ds.x_train, ds.y_train, one, 0, device)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def cka_gpu_against_cpu(run: ecnb.Run, ds: ecnb.Dataset, split, models: dict, device: torch.device) -> dict:
    """Per-layer CKA of `ec` (or the first unlearned model) to `original` on test_retain's flat features,
    on the GPU and on the CPU: the largest difference and both times."""
    name = "ec" if "ec" in models else next(iter(models))
    x = ecnb.split_tensors(ds, split)["test_retain"][0]
    spatial = evaluate.max_spatial(run.config.profile, ds.input_shape)
    a, b = (extract_features(m, x, max_spatial=spatial) for m in (models[name], models["original"]))
    taps = models["original"].taps
    out = {"method": name, "n": len(x)}
    for where in (["cuda", "cpu"] if device.type == "cuda" else ["cpu"]):
        _sync(device)
        start = time.perf_counter()
        out[where] = layer_cka(a, b, taps, where)
        _sync(device)
        out[f"{where} s"] = time.perf_counter() - start
    if "cuda" in out:
        out["max |gpu - cpu|"] = max(abs(out["cuda"][t] - out["cpu"][t]) for t in taps)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def markdown(figures: dict, table: str) -> str:
    """The section for docs/benchmarks.md."""
    f = figures
    lines = [f"## GPU check: {f['gpu']}", "",
             f"`{f['command']}` on {f['when']}: torch {f['torch']}, CUDA {f['cuda']}, {f['cpu_threads']} CPU threads. "
             f"Fashion-MNIST padded to 32x32, {f['train_images']} training images ({f['config']['train_per_class']} per "
             f"class), {f['test_images']} test images, forgetting class {FORGET_CLASS}, ResNet-18, paper-profile "
             f"settings, {f['config']['train']['epochs']} training epochs. Whole check {f['total_s']:.0f} s.", "",
             "| figure | value |", "|---|---|"]
    for mode, ips in f["step_ips"].items():
        lines.append(f"| bare training step, batch {f['batch']}, {mode} | {ips:,.0f} images/s |")
    lines.append(f"| `ecnb.train.fit` (original: {f['config']['train']['epochs']} epochs, augmentation, bf16, "
                 f"channels-last) | {f['fit_ips']:,.0f} images/s |")
    lines.append(f"| airbench94 on an A100 (reference, a small network built for speed) | about {AIRBENCH_IPS:,} images/s |")
    if f["syncs_per_epoch"] is not None:
        lines.append(f"| host synchronisations in one training epoch | {f['syncs_per_epoch']} |")
    e = f["ec_step"]
    lines.append(f"| EC step / fine-tuning step on the same {e['images per step']} images | {e['ratio']:.2f}x "
                 f"({e['ec s/step'] * 1e3:.1f} ms against {e['ft s/step'] * 1e3:.1f} ms) |")
    if f["peak_gpu_mib"] is not None:
        lines.append(f"| peak GPU memory | {f['peak_gpu_mib']:,.0f} MiB |")
    c = f["cka"]
    if "cuda" in c:
        lines.append(f"| per-layer CKA of `{c['method']}` to `original`, {c['n']} images, GPU / CPU | "
                     f"{c['cuda s']:.3f} s / {c['cpu s']:.3f} s, largest difference {c['max |gpu - cpu|']:.1e} |")
    lines += ["", "Wall time of each method (s): " + ", ".join(f"`{m}` {s:.1f}" for m, s in f["wall_times"].items()), "",
              "The run's summary (`python -m ecnb summary` of the copied run directory):", "", "```", table, "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--run-dir", default="runs/gpu-check")
    parser.add_argument("--out", help="copy what a CPU machine needs to read the run into this folder")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=1000)
    parser.add_argument("--test-per-class", type=int, default=300)
    parser.add_argument("--methods", nargs="+", help="baselines (default: all, or ga with --tiny); EC and plug-ins follow")
    parser.add_argument("--population", type=int, default=3, help="retrained models the verdicts read against")
    parser.add_argument("--tiny", action="store_true", help="CPU-sized: a minute end to end")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    device = resolve_device(args.device)
    attacks, overrides = {}, {}
    batch, steps = 512, 20
    if args.tiny:
        args.epochs, args.train_per_class, args.test_per_class = 1, 4, 4
        attacks = {"shots": 2, "retain_shots": 1, "probe_draws": 2, "relearn_steps": [0, 1], "relearn_draws": 1}
        batch, steps = 8, 1
        args.population = 2
    args.methods = args.methods or (["ga"] if args.tiny else ec.baselines())
    methods = [*args.methods, "ec", *(f"{b}+ec" for b in args.methods)]
    if args.tiny:  # one epoch of each stage: the path is what is checked, and ResNet-18's steps are most of its time
        overrides = one_epoch_each(methods, "paper")
    torch.backends.cudnn.benchmark = device.type == "cuda"
    config = StudyConfig.from_options(
        profile="paper", dataset="fashion_mnist", model="resnet18", forget_classes=[FORGET_CLASS], epochs=args.epochs,
        device=args.device, run_dir=args.run_dir, train_per_class=args.train_per_class,
        test_per_class=args.test_per_class, population=args.population, overrides=overrides, **attacks)
    run = ecnb.Run.open(config, force=True)
    ds = ecnb.run_dataset(run, device).padded(32)
    split = ecnb.forget_split(run, ds, 0)
    splits = ecnb.split_tensors(ds, split)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}); "
          f"{len(ds.y_train)} train / {len(ds.y_test)} test images, input {ds.input_shape}", flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    references = ecnb.train_references(run, ds, split, 0, device)  # `original` and the retrained population
    fit_wall = ecnb.artifacts.load_checkpoint(run.checkpoint_path("original", 0))["meta"]["wall_time"]
    ecnb.write_results(run.root, [r for m, net in references.items() for r in ecnb.reference_rows(run, net, splits, m, 0)])
    models = evaluate.run_methods(run, ds, split, methods, 0, references, device)
    evaluate.run_references(run, ds, split, 0, references)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None

    results = read_results(run.root)
    wall = results[results["metric"] == "wall_time"].set_index("method")["value"]
    data = evaluate.unlearn_data(ds, split)
    figures = {
        "command": "python scripts/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (tiny check)",
        "torch": torch.__version__, "cuda": torch.version.cuda, "cpu_threads": torch.get_num_threads(),
        "config": config.to_dict(), "train_images": len(ds.y_train), "test_images": len(ds.y_test), "batch": batch,
        "fit_ips": config.train.epochs * len(ds.y_train) / fit_wall,
        "step_ips": step_throughput(ds, device, batch, steps),
        "syncs_per_epoch": syncs_per_epoch(ds, device, config.train),
        "ec_step": ec_against_ft(data, device, 256 if not args.tiny else 4, steps),
        "peak_gpu_mib": peak,
        "cka": cka_gpu_against_cpu(run, ds, split, {**models, "original": references["original"],
                                                    "retrain": references["retrain"]}, device),
        "wall_times": {m: float(s) for m, s in wall.items()},
        "failures": run.failure_lines(),
    }
    judged = {0: verdicts.judge_run(run, 0, methods)}
    table = verdicts.summary(judged).to_string() + "\n" + verdicts.summary_key(judged)
    figures["total_s"] = time.perf_counter() - start
    text = markdown(figures, table)
    ecnb.artifacts.save_json(run.root / "gpu_check.json", json.loads(json.dumps(figures, default=float)))
    ecnb.artifacts.atomic_write(run.root / "gpu_check.md", lambda tmp: tmp.write_text(text))
    print(text, flush=True)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "results.csv", "gpu_check.json", "gpu_check.md", "seed0/failures.json",
                     "seed0/attack_set.json"):
            if (run.root / name).exists():
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run.root / name, out / name)
        shutil.copytree(run.root / "seed0" / "outcomes", out / "seed0" / "outcomes", dirs_exist_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
