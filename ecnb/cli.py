"""`python -m ecnb ...`: the study, sweeps of it, a run's summary, two runs compared, JupyterLab, the explorer, the data.

Bad input stops before any work with one line (`ecnb: error: ...`) and exit status 2, no traceback.
A damaged file in the run directory or a failed notebook also ends in one line, with status 1;
an interrupted study with status 130.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

from .artifacts import ArtifactError
from .config import (DEVICES, POPULATION, PROFILES, REPORTED_CLASSES, SCOPES, SWEEP_DATASETS, SWEEP_SEEDS, ConfigError,
                     StudyConfig, parse_checkpoints, parse_overrides)

# The sweep's default cells, per data set, as its help names them.
_REPORTED = "; ".join(f"{dataset} {' '.join(map(str, classes))}" for dataset, classes in REPORTED_CLASSES.items())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ecnb: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m ecnb", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    study = sub.add_parser("study", help="run every notebook headlessly and write the run directory")
    study.add_argument("--dataset", help="digits, cifar10, cifar100, mnist, fashion_mnist, svhn (default: the profile's)")
    what = study.add_mutually_exclusive_group()
    what.add_argument("--forget-classes", type=int, nargs="+", metavar="C",
                      help="class-wise forgetting (default: the data set's first reported class, 3 on digits, 0 on "
                           "Fashion-MNIST)")
    what.add_argument("--forget-fraction", type=float, metavar="F", help="random-sample forgetting of this fraction")
    study.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S", help="one or more seeds (default: 0)")
    study.add_argument("--run-dir", help="where artifacts go (default: runs/<profile>-<dataset>-<forget set>)")
    study.add_argument("--scope", choices=list(SCOPES), default="walkthrough",
                       help="walkthrough: what a lab needs, in minutes (default); full: every ablation and plug-in")
    study.add_argument("--checkpoint", nargs="+", action="extend", default=[], metavar="NAME=PATH", dest="checkpoints",
                       help="a model of the study's architecture unlearned elsewhere (a state dict), measured and judged "
                       "like a method under NAME")
    _study_options(study)

    sweep = sub.add_parser("sweep", help="the study over forget classes x seeds (x data sets), one study per cell, on Ray")
    sweep.add_argument("--datasets", nargs="+", metavar="D",
                       help=f"data sets (default: {' '.join(SWEEP_DATASETS)}, or the profile's when one is named)")
    sets = sweep.add_mutually_exclusive_group()
    sets.add_argument("--forget-classes", type=int, nargs="+", metavar="C",
                      help=f"each class is its own cell (default: each data set's reported classes: {_REPORTED})")
    sets.add_argument("--forget-sets", nargs="+", metavar="C,C",
                      help='cells that forget several classes together, e.g. "3,8" "1"')
    sweep.add_argument("--seeds", type=int, nargs="+", default=list(SWEEP_SEEDS), metavar="S",
                       help=f"seeds (default: {' '.join(map(str, SWEEP_SEEDS))})")
    sweep.add_argument("--scope", choices=list(SCOPES),
                       help="full: every ablation and plug-in, which the claims are read over; walkthrough (default: "
                       "each cell's profile's: full under quick, walkthrough under fashion)")
    sweep.add_argument("--run-dir", help="the sweep directory (default: runs/sweep-<profile>-<data>-<sets>-<seeds>)")
    sweep.add_argument("--address", help="an existing Ray cluster (host:port); default: a local Ray for this command")
    sweep.add_argument("--cpus-per-cell", type=int, default=1, metavar="N",
                       help="CPUs (and BLAS threads) each cell gets; cells run side by side on the rest (default: 1)")
    _study_options(sweep)

    summary = sub.add_parser("summary", help="print the summary table of a run directory")
    summary.add_argument("run_dir")

    ship = sub.add_parser("ship", help="copy a finished sweep's tables into shipped/ (what notebook 05 reads first)")
    ship.add_argument("sweep_dir")

    compare = sub.add_parser("compare", help="what changed from one run (or sweep) to another beyond noise; exit 1 when "
                             "a verdict or a claim changed")
    compare.add_argument("run_a", metavar="RUN_A", help="the run directory (or sweep directory) to compare against")
    compare.add_argument("run_b", metavar="RUN_B", help="the run directory (or sweep directory) to compare")

    lab = sub.add_parser("lab", help="JupyterLab over the project: the notebooks and every run's executed copies")
    lab.add_argument("--port", type=int, help="port on 127.0.0.1 (default: Jupyter's, 8888 or the next free)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser tab")

    explore = sub.add_parser("explore", help="a finished run's explorer, CKA and attack views as a Voila app")
    explore.add_argument("run_dir")
    explore.add_argument("--seed", type=int, help="which seed of the run (default: its first)")
    explore.add_argument("--port", type=int, help="port on 127.0.0.1 (default: Voila's, 8866)")
    explore.add_argument("--no-browser", action="store_true", help="do not open a browser tab")

    download = sub.add_parser("download", help="download a torchvision data set into data/ (needs internet)")
    download.add_argument("dataset")
    return parser


def _study_options(parser: argparse.ArgumentParser) -> None:
    """The options a study and a sweep share (a sweep passes them to every cell's study)."""
    parser.add_argument("--profile", choices=list(PROFILES),
                        help="quick: embedded digits on a CPU; fashion: Fashion-MNIST on a CPU; paper: CIFAR + ResNet-18 "
                        "on a GPU (default: the data set's own, quick for digits and the data sets without one)")
    parser.add_argument("--model", help="smallcnn or resnet18 (default: the profile's)")
    parser.add_argument("--epochs", type=int, help="training epochs of original/retrain (default: the profile's)")
    parser.add_argument("--device", default="auto", choices=list(DEVICES), help="auto picks CUDA when present")
    parser.add_argument("--methods", nargs="+", metavar="M",
                        help="baseline methods to run (default: every baseline); the scope's plug-ins of EC follow them")
    parser.add_argument("--ablations", nargs="*", metavar="A",
                        help="EC ablations for notebook 03 (default: the scope's; give none to skip them)")
    parser.add_argument("--train-per-class", type=int, metavar="N",
                        help="at most N training images per class (default: the profile's, 300 on fashion and all "
                        "otherwise; 0 for all)")
    parser.add_argument("--test-per-class", type=int, metavar="N", help="at most N test images per class")
    parser.add_argument("--population", type=int, metavar="K",
                        help=f"retrained models every verdict is read against (default: {POPULATION['walkthrough']} in "
                        f"the walkthrough scope, {POPULATION['full']} in the full scope and in every sweep's cell)")
    attacks = parser.add_argument_group("recovery attacks (default: the profile's, chosen on validation tasks)")
    attacks.add_argument("--attack-shots", type=int, metavar="K", dest="shots",
                         help="training images of each forgotten class the attacker holds (k)")
    attacks.add_argument("--attack-retain-shots", type=int, metavar="M", dest="retain_shots",
                         help="training images of each retained class the attacker holds (m)")
    attacks.add_argument("--probe-draws", type=int, metavar="R", dest="probe_draws",
                         help="seeded draws the few-shot probe is averaged over (R)")
    attacks.add_argument("--relearn-steps", type=int, nargs="+", metavar="N", dest="relearn_steps",
                         help="steps after which the relearning attack is scored, increasing (e.g. 0 5 10 20 50)")
    attacks.add_argument("--relearn-draws", type=int, metavar="N", dest="relearn_draws",
                         help="draws of the attacker's images the relearning attack is averaged over (at most R)")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="METHOD.PARAM=VALUE",
                        dest="overrides", help="change a method's hyperparameter, e.g. ga.lr=0.01 "
                        "(recorded in config.json; only the methods it names are recomputed)")
    parser.add_argument("--method-file", nargs="+", action="extend", default=[], metavar="FILE", dest="method_files",
                        help="a Python file that registers unlearning methods of your own (ecnb.register_method): "
                        "they run, and are judged, like the baselines")
    parser.add_argument("--force", action="store_true", help="recompute everything in the run directory")


def _shared(args: argparse.Namespace) -> dict:
    """The shared options as `StudyConfig.from_options` keywords."""
    return dict(profile=args.profile, model=args.model, epochs=args.epochs, device=args.device,
                train_per_class=args.train_per_class, test_per_class=args.test_per_class, scope=args.scope,
                overrides=parse_overrides(args.overrides), shots=args.shots, retain_shots=args.retain_shots,
                probe_draws=args.probe_draws, relearn_steps=args.relearn_steps, relearn_draws=args.relearn_draws,
                population=args.population, method_files=args.method_files)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "study":
            from .study import StudyError, run_study

            config = StudyConfig.from_options(
                **_shared(args), dataset=args.dataset, forget_classes=args.forget_classes,
                forget_fraction=args.forget_fraction, seeds=args.seeds, run_dir=args.run_dir,
                checkpoints=parse_checkpoints(args.checkpoints),
            )
            try:
                run_study(config, force=args.force, methods=args.methods, ablations=args.ablations)
            except StudyError as e:
                print(f"ecnb: study failed: {e}", file=sys.stderr)
                return 1
        elif args.command == "sweep":
            from pathlib import Path

            from . import sweep
            from .config import PROFILES as profiles
            from .study import StudyError

            datasets = args.datasets or ([profiles[args.profile]["dataset"]] if args.profile else list(SWEEP_DATASETS))
            if args.forget_sets is not None:
                sets = sweep.parse_forget_sets(args.forget_sets)
            else:
                sets = None if args.forget_classes is None else [(c,) for c in args.forget_classes]
            cells = sweep.grid(datasets, sets, args.seeds)
            if args.cpus_per_cell < 1:
                raise ConfigError(f"--cpus-per-cell {args.cpus_per_cell} must be at least 1")
            root = Path(args.run_dir) if args.run_dir else sweep.default_sweep_dir(args.profile, datasets, sets, args.seeds)
            configs = sweep.cell_configs(cells, root, **_shared(args))
            try:
                failed = sweep.run_sweep(configs, root, address=args.address, cpus_per_cell=args.cpus_per_cell,
                                         force=args.force, methods=args.methods, ablations=args.ablations)
            except StudyError as e:
                print(f"ecnb: sweep failed: {e}", file=sys.stderr)
                return 1
            if failed:
                print(f"ecnb: {len(failed)} of {len(cells)} cells failed (named above)", file=sys.stderr)
                return 1
        elif args.command == "summary":
            from .artifacts import Run
            from .study import study_summary

            run = Run.load(args.run_dir)
            table, key = study_summary(run)
            print(table.to_string() if not table.empty else "(no results)")
            print(key)
            for line in run.failure_lines():
                print(line)
        elif args.command == "ship":
            from .shipped import ship

            print(f"shipped: {ship(args.sweep_dir)}")
        elif args.command == "compare":
            from .compare import compare

            try:
                comparison = compare(args.run_a, args.run_b)
            except ArtifactError as e:  # exit 1 says "changed": a run that cannot be read is bad input here
                print(f"ecnb: error: {e}", file=sys.stderr)
                return 2
            print(comparison.report())
            return 1 if comparison.changed else 0
        elif args.command in ("lab", "explore"):
            from . import serve

            if args.command == "lab":
                cmd = serve.lab_command(args.port, browser=not args.no_browser)
            else:
                notebook = serve.app_notebook(args.run_dir, args.seed)
                cmd = serve.explore_command(notebook, args.port, browser=not args.no_browser)
            os.execv(cmd[0], cmd)  # the server takes over this process: Ctrl-C stops it as usual
        elif args.command == "download":
            from .data import load_dataset

            ds = load_dataset(args.dataset)
            print(f"{args.dataset}: {len(ds.y_train)} train, {len(ds.y_val)} val, {len(ds.y_test)} test images")
    except ConfigError as e:
        print(f"ecnb: error: {e}", file=sys.stderr)
        return 2
    except ArtifactError as e:
        print(f"ecnb: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # The notebook runner's pending asyncio tasks end with "kernel died" once the kernel is stopped;
        # asyncio would log each with a traceback when it is collected, burying the one line below.
        for name in ("asyncio", "papermill", "nbclient"):
            logging.getLogger(name).disabled = True
        print("ecnb: interrupted; complete artifacts are kept and the next run resumes from them", file=sys.stderr)
        return 130
    return 0
