"""Sweeps: the study over a grid of data sets x forget sets x seeds, each cell an ordinary study, on Ray.

One forget class and one seed can mislead (docs/study.md), so the verdicts are read over cells. A
cell is one study (the same notebooks, executed headlessly) with one data set, one forget set and one
seed, in its own run directory `<sweep>/cells/<cell>/`: it can be opened, re-run and reported like any
study. Ray runs the cells (a local Ray started and stopped here, or an existing cluster at `address`),
each with a fixed CPU (and GPU) share and as many BLAS/OpenMP threads as CPUs, so two cells never fight
over the same cores. A cell that finished is reused (its `cell.json` records the configuration it ran);
a finished cell drops its cached features, most of its disk, recomputed whenever a notebook asks for them
again; a failing cell is reported and the others go on; Ctrl-C cancels the running cells, whose files are each
complete or absent (every write in a study is atomic), and the next run resumes.

At the top of the sweep directory: `results.csv` (every cell's rows plus `dataset` and `forget_set`;
`seed` is already a column), `verdicts.csv` (each method's verdict and evidence per cell, every gap with its
interval), `summary.csv` (per method, mean +- std over cells and how often it is superficial / erased /
undecided), `claims.csv` (docs/study.md section 6's claims read over the cells, with how many cells were
undecided), `null_tests.csv` (per cell, how many retrained models pass their null read, and the cell's
resolution), notebook 05 executed, and `report.html`.
"""
from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .artifacts import ArtifactError, Run, atomic_write
from .config import (POPULATION, SWEEP_DATASETS, SWEEP_SEEDS, ConfigError, StudyConfig, profile_for,
                     reported_classes, resolve_device, sweep_scope)
from .ec import variant_names
from .features import remove_all_cached
from .results import read_results
from .study import (
    NOTEBOOKS_DIR,
    RUNS_DIR,
    SWEEP_NOTEBOOKS,
    TITLE,
    StudyError,
    execute_notebook,
    preflight,
    render_report,
    run_study,
    study_verdicts,
)
from .methods import builtin_baselines, revisions, table_digest
from .scopes import Selection, selection as scope_selection
from .unlearn import TAMPER_RESISTANT
from .verdicts import (
    CKA,
    DEPTH,
    DEPTHS,
    ERASED,
    FEWSHOT,
    FEWSHOT_GAP,
    FORGET,
    OUTPUT_DISTANCE,
    RELEARN_GAP,
    RESOLUTION,
    RETAIN,
    SUCCEEDS,
    SUPERFICIAL,
    TELLS,
    UNDECIDED,
    VERDICT,
    claims,
    null_test,
    variant_claims,
)

SWEEP_NOTEBOOK = NOTEBOOKS_DIR / SWEEP_NOTEBOOKS[0]
# The default sweep's tables, shipped with the repository (`ecnb.shipped`): what notebook 05 reads before a sweep of
# one's own has run.
SHIPPED_DIR = NOTEBOOKS_DIR.parent / "shipped" / "sweep"
CELL_FILE = "cell.json"  # written into a cell's run directory when its study has finished
HEADLINE = [FORGET, RETAIN, CKA, FEWSHOT, RELEARN_GAP, FEWSHOT_GAP, OUTPUT_DISTANCE]


@dataclass(frozen=True)
class Cell:
    """One study of the grid: a data set, a forget set (one class or several forgotten together), a seed."""

    dataset: str
    forget_set: tuple[int, ...]
    seed: int

    @property
    def forget_label(self) -> str:
        return "+".join(map(str, self.forget_set))

    @property
    def name(self) -> str:
        return f"{self.dataset}-forget{self.forget_label}-seed{self.seed}"


def parse_forget_sets(values: list[str]) -> list[tuple[int, ...]]:
    """`["3,8", "1"]` -> `[(3, 8), (1,)]`; one line naming the bad value otherwise."""
    sets = []
    for value in values:
        try:
            sets.append(tuple(int(part) for part in value.split(",")))
        except ValueError:
            raise ConfigError(f"forget set {value!r} must be class numbers separated by commas, e.g. 3,8") from None
    return sets


def grid(datasets: list[str], forget_sets: list[tuple[int, ...]] | None, seeds: list[int]) -> list[Cell]:
    """Every (data set, forget set, seed), refusing empty or repeated entries before any work. `forget_sets`
    None: each data set's reported classes (`ecnb.config.reported_classes`), one cell per class."""
    sets = {d: _reported_sets(d) if forget_sets is None else forget_sets for d in datasets}
    for values, what in ((datasets, "data set"), (forget_sets, "forget set"), (seeds, "seed")):
        if values is None:
            continue
        if not values:
            raise ConfigError(f"the sweep needs at least one {what}")
        repeated = [v for i, v in enumerate(values) if v in values[:i]]
        if repeated:
            shown = ",".join(map(str, repeated[0])) if isinstance(repeated[0], tuple) else repeated[0]
            raise ConfigError(f"{what} {shown} is given twice")
    return [Cell(d, f, s) for d in datasets for f in sets[d] for s in seeds]


def _reported_sets(dataset: str) -> list[tuple[int, ...]]:
    """A data set's default forget sets: each of its reported classes alone."""
    return [(c,) for c in reported_classes(dataset)]


def cell_configs(cells: list[Cell], sweep_dir: Path, **options: Any) -> dict[Cell, StudyConfig]:
    """Each cell's study configuration: the sweep's options with the cell's data set, forget set and seed; without
    a scope, the one its profile's sweeps run (`sweep_scope`), without a population the full scope's five.
    Every one is validated here (an unknown class, a bad option), so a bad grid stops before any work."""
    configs = {}
    for cell in cells:
        profile = options.get("profile") or profile_for(cell.dataset)
        scope, population = options.get("scope"), options.get("population")
        given = {**options, "profile": profile, "scope": sweep_scope(profile) if scope is None else scope,
                 "population": POPULATION["full"] if population is None else population}
        configs[cell] = StudyConfig.from_options(
            **given, dataset=cell.dataset, forget_classes=list(cell.forget_set), seeds=[cell.seed],
            run_dir=str(sweep_dir / "cells" / cell.name))
    return configs


def default_sweep_dir(profile: str | None, datasets: list[str], forget_sets: list[tuple[int, ...]] | None,
                      seeds: list[int]) -> Path:
    """runs/sweep-<profile>-<data sets>-forget<sets>-seed<seeds>; `profile` None (each data set's own) names the data
    sets' profiles, `forget_sets` None (each data set's reported classes) each data set's classes after it where they
    differ."""
    def named(sets: list[tuple[int, ...]]) -> str:
        return "_".join("+".join(map(str, f)) for f in sets)

    if profile is None:
        profile = "_".join(dict.fromkeys(profile_for(d) for d in datasets))
    seeds_named = "_".join(map(str, seeds))
    if forget_sets is None:
        per = {d: _reported_sets(d) for d in datasets}
        if len({named(s) for s in per.values()}) > 1:
            cells = "-".join(f"{d}-forget{named(s)}" for d, s in per.items())
            return Path("runs") / f"sweep-{profile}-{cells}-seed{seeds_named}"
        forget_sets = per[datasets[0]]
    return Path("runs") / f"sweep-{profile}-{'_'.join(datasets)}-forget{named(forget_sets)}-seed{seeds_named}"


def find_sweep(sweep_dir: str | Path | None = None) -> Path:
    """Notebook 05's sweep: `sweep_dir`, or the default sweep's directory under the project's `runs/` once it has
    run, or else the sweep the repository ships (`SHIPPED_DIR`, `ecnb.shipped`)."""
    if sweep_dir is not None:
        return Path(sweep_dir)
    default = default_sweep_dir(None, list(SWEEP_DATASETS), None, list(SWEEP_SEEDS))
    local = RUNS_DIR.parent / default
    return local if (local / "sweep.json").exists() else SHIPPED_DIR


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail in one line, before any work, when nothing listens at a Ray cluster's `host:port`."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} must be host:port (or ray://host:port)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"cannot reach a Ray cluster at {address} ({e.strerror or e}); "
                          "start one with `ray start --head` or leave --address out for a local one") from None


def _selection(methods: list[str] | None, ablations: list[str] | None, notebooks: list[Path] | None) -> dict:
    return {"methods": methods, "ablations": ablations,
            "notebooks": [str(Path(p).absolute()) for p in notebooks] if notebooks else None}


def record_cell(config: StudyConfig, selection: dict, seconds: float, node: str | None = None) -> None:
    """Mark a cell's study as finished: `cell.json` with the configuration, the selection of methods and
    notebooks, the digest of every method's hyperparameters it ran under, and the Ray node it ran on (which
    machine of a cluster to look at)."""
    record = {"config": config.to_dict(), "selection": selection, "hparams": table_digest(config.profile),
              "revisions": revisions(), "seconds": seconds, "node": node}
    atomic_write(Path(config.run_dir) / CELL_FILE, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))


def is_complete(config: StudyConfig, selection: dict) -> bool:
    """A cell is reused when its study finished with this configuration, this selection and the methods'
    hyperparameters and code revisions as they are now (a retuned or revised method runs the cell again; the study
    then recomputes only the models whose settings or revision changed, as their checkpoints are keyed by them)."""
    path = Path(config.run_dir) / CELL_FILE
    if not path.exists():
        return False
    done = json.loads(path.read_text())
    return (_portable(done["config"]) == _portable(config.to_dict()) and done["selection"] == selection
            and done.get("hparams") == table_digest(config.profile) and done.get("revisions", {}) == revisions())


def _portable(config: dict) -> dict:
    """A cell's configuration without where it ran: the same cell reached through another path, or run on
    another kind of device, is the same cell."""
    return {k: v for k, v in config.items() if k not in ("run_dir", "device")}


def run_cell(config: dict, selection: dict, threads: int, force: bool = False) -> dict:
    """One cell's study, in a Ray worker: `threads` worker processes for its jobs (`ecnb.workers`, one
    thread each) and as many BLAS/OpenMP threads here and in its notebook kernels. Returns {"ok",
    "seconds", "error"}; an error is reported as text so that one cell cannot stop the sweep."""
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), ECNB_WORKERS=str(threads))
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    study = StudyConfig.from_dict(config)
    notebooks = [Path(p) for p in selection["notebooks"]] if selection["notebooks"] else None
    try:
        run_study(study, force=force, notebooks=notebooks, log=lambda _: None, methods=selection["methods"],
                  ablations=selection["ablations"])
    except (StudyError, ConfigError, ArtifactError) as e:
        return {"ok": False, "seconds": time.perf_counter() - start, "error": str(e)}
    except Exception as e:  # a bug in one cell is that cell's failure, reported with the others
        return {"ok": False, "seconds": time.perf_counter() - start, "error": f"{type(e).__name__}: {e}"}
    seconds = time.perf_counter() - start
    import ray

    record_cell(study, selection, seconds, ray.get_runtime_context().get_node_id() if ray.is_initialized() else None)
    try:  # a cache: a file left behind costs disk, never a result
        remove_all_cached(Run.load(study.run_dir))
    except OSError:
        pass
    return {"ok": True, "seconds": seconds, "error": None}


def run_sweep(
    configs: dict[Cell, StudyConfig],
    sweep_dir: Path,
    address: str | None = None,
    cpus_per_cell: int = 1,
    force: bool = False,
    methods: list[str] | None = None,
    ablations: list[str] | None = None,
    notebooks: list[Path] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Run every cell not yet complete on Ray, then merge the tables and execute notebook 05.

    Returns the failed cells' errors by cell name (empty when every cell finished).
    """
    for config in configs.values():
        preflight(config, methods, ablations)
    if address is not None:
        check_address(address)
    selection = _selection(methods, ablations, notebooks)
    pending = {c: cfg for c, cfg in configs.items() if force or not is_complete(cfg, selection)}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    record = {"cells": [c.name for c in configs], "selection": selection, "address": address,
              "cpus_per_cell": cpus_per_cell}
    atomic_write(sweep_dir / "sweep.json", lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    log(f"{len(configs)} cells: {len(configs) - len(pending)} complete and reused, {len(pending)} to run")
    failures = _run_on_ray(pending, selection, address, cpus_per_cell, force, log) if pending else {}
    runs = {c: Path(cfg.run_dir) if c.name not in failures and is_complete(cfg, selection) else None
            for c, cfg in configs.items()}
    scopes: dict[str, Selection] = {}  # each data set's methods, from its first cell (its cells share one scope)
    for cell, config in configs.items():
        if cell.dataset not in scopes:
            scopes[cell.dataset] = scope_selection(config.scope, methods, ablations, config)
    tables = write_tables(sweep_dir, runs, baselines_of(methods), scopes)
    if any(path is not None for path in runs.values()):
        log("\n" + summary_text(tables))
        executed = sweep_dir / "notebooks" / SWEEP_NOTEBOOK.name
        execute_notebook(SWEEP_NOTEBOOK, executed, {"sweep_dir": str(sweep_dir.absolute())})
        intro = _report_intro(tables["summary"], configs, failures)
        report = render_report(sweep_dir / "report.html", [executed], intro, f"{TITLE}: a sweep of {len(configs)} cells")
        log(f"\nreport: {report.absolute()}")
    for name, error in failures.items():
        log(f"cell {name} failed: {error}")
    return failures


def _run_on_ray(pending: dict[Cell, StudyConfig], selection: dict, address: str | None, cpus_per_cell: int,
                force: bool, log: Callable[[str], None]) -> dict[str, str]:
    import ray

    for config in pending.values():
        (Path(config.run_dir) / CELL_FILE).unlink(missing_ok=True)  # complete again only when it finishes
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    gpus = {c: 1 if resolve_device(cfg.device).type == "cuda" else 0 for c, cfg in pending.items()}
    task = ray.remote(run_cell)
    refs = {task.options(num_cpus=cpus_per_cell, num_gpus=gpus[c], max_retries=0).remote(
        cfg.to_dict(), selection, cpus_per_cell, force): c for c, cfg in pending.items()}
    failures: dict[str, str] = {}
    start = time.perf_counter()
    waiting = list(refs)
    try:
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            cell = refs[done[0]]
            try:
                outcome = ray.get(done[0])
            except ray.exceptions.RayError as e:  # the cell's process died (killed, out of memory, a crash)
                what = str(e).strip().splitlines()[0] if str(e).strip() else ""
                outcome = {"ok": False, "seconds": time.perf_counter() - start,
                           "error": f"its process died ({type(e).__name__}{': ' + what if what else ''})"}
            status = "done" if outcome["ok"] else "FAILED"
            if not outcome["ok"]:
                failures[cell.name] = outcome["error"]
            log(f"[{len(refs) - len(waiting)}/{len(refs)}] {cell.name} {status} in {outcome['seconds']:.0f} s; "
                f"{len(waiting)} left, {time.perf_counter() - start:.0f} s so far")
    except KeyboardInterrupt:
        # Only the cells still queued or running: cancelling a task that has just finished races with its
        # completion inside Ray (2.49), whose task manager then aborts this whole process.
        running = ray.wait(waiting, num_returns=len(waiting), timeout=0)[1] if waiting else []
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()
    return failures


def baselines_of(methods: list[str] | None) -> list[str]:
    """The baselines a sweep's claims are read over: those chosen (default: every one) that the package has, not
    the methods a user brought (`ecnb.methods.builtin_baselines`)."""
    return [b for b in (methods if methods is not None else builtin_baselines()) if b in builtin_baselines()]


def write_tables(sweep_dir: Path, runs: dict[Cell, Path | None], base: list[str],
                 scopes: Mapping[str, Selection] | None = None) -> dict[str, pd.DataFrame]:
    """The sweep's merged tables from the finished cells' own `results.csv` (a failed cell's run is None),
    written and returned by name (`results`, `verdicts`, `summary`, `claims`, as `load` reads them back).
    The claims are read per data set, over every cell of it: a failed cell counts as one where no claim holds."""
    frames, judged = [], {}
    for cell, run_dir in runs.items():
        if run_dir is None:
            continue
        rows = read_results(run_dir)
        frames.append(rows.assign(dataset=cell.dataset, forget_set=cell.forget_label))
        chosen = json.loads((Path(run_dir) / CELL_FILE).read_text())["selection"]
        judged[cell] = study_verdicts(Run.load(run_dir), chosen["methods"], chosen["ablations"])[cell.seed]
    columns = ["dataset", "forget_set", "seed", "method", "metric", "layer", "split", "value"]
    merged = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    verdicts = pd.concat([t.assign(dataset=c.dataset, forget_set=c.forget_label, seed=c.seed)
                          for c, t in judged.items()]).rename_axis("method").reset_index() if judged else pd.DataFrame()
    tables = {"results.csv": merged, "verdicts.csv": verdicts, "summary.csv": summarize_cells(verdicts),
              "claims.csv": claims_by_dataset(runs, judged, base, scopes),
              "null_tests.csv": null_tests(verdicts) if not verdicts.empty else pd.DataFrame()}
    for name, table in tables.items():
        atomic_write(sweep_dir / name, lambda tmp, t=table: t.to_csv(tmp, index=False))
    return {name.removesuffix(".csv"): table for name, table in tables.items()}


def null_tests(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per cell: how many retrained models pass their null read (erased, keeps retain, no tell, read against
    the others) out of how many, and the cell's resolution."""
    rows = []
    for (dataset, forget_set, seed), part in verdicts.groupby(["dataset", "forget_set", "seed"], sort=False):
        passed, read = null_test(part.set_index("method"))
        rows.append({"dataset": dataset, "forget_set": forget_set, "seed": seed, "null reads passed": passed,
                     "null reads": read, RESOLUTION: part[RESOLUTION].iloc[0]})
    return pd.DataFrame(rows)


def claims_by_dataset(runs: dict[Cell, Path | None], judged: dict[Cell, pd.DataFrame], base: list[str],
                      scopes: Mapping[str, Selection] | None = None) -> pd.DataFrame:
    """The claims (`ecnb.verdicts.claims` and, for the variants that ran, `variant_claims`) of each data set
    over all of its cells, failed ones included, with a `dataset` column. With `scopes` (each data set's cells'
    methods), the plug-in claims are read over the plug-ins its scope runs (a walkthrough's cells plug EC into two
    baselines, the full scope's into every one), so a scope never counts as failing a claim it did not test."""
    frames = []
    for dataset in dict.fromkeys(c.dataset for c in runs):
        cells = {c.name: judged.get(c) for c in runs if c.dataset == dataset}
        tables = [t for t in cells.values() if t is not None]
        ran = [v for v in variant_names() if any(v in t.index for t in tables)]
        anchors = [a for a in TAMPER_RESISTANT if any(a in t.index for t in tables)]
        chosen = (scopes or {}).get(dataset)
        plugin_bases = base if chosen is None else [b for b in base if b in chosen.plugin_bases]
        variant_bases = base if chosen is None else [b for b in base if b in chosen.variant_bases]
        table = pd.concat([claims(cells, base, plugin_bases),
                           variant_claims(cells, variant_bases, ran, anchors)]).reset_index()
        frames.append(table.assign(dataset=dataset, cells=len(cells), failed=len(cells) - len(tables)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarize_cells(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per data set and method: mean and std over cells of the headline figures, in how many cells it was
    measured, and in how many it is superficial, erased, and succeeds."""
    if verdicts.empty:
        return pd.DataFrame()
    grouped = verdicts.groupby(["dataset", "method"], sort=False)
    stats = grouped[HEADLINE].agg(["mean", "std"])
    stats.columns = [f"{col} {stat}" for col, stat in stats.columns]
    counts = grouped.agg(cells=(DEPTH, "size"), superficial=(DEPTH, lambda v: int((v == SUPERFICIAL).sum())),
                         erased=(DEPTH, lambda v: int((v == ERASED).sum())),
                         undecided=(DEPTH, lambda v: int((v == UNDECIDED).sum())),
                         succeeds=(SUCCEEDS, lambda v: int(v.astype(bool).sum())))
    return pd.concat([counts, stats], axis=1).reset_index()


def agreement(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per data set and method: how many cells give each depth, the most common whole verdict and in how many
    cells: which verdicts are stable over forget classes and seeds, and which flip."""
    rows = []
    for (dataset, method), part in verdicts.groupby(["dataset", "method"], sort=False):
        lines = part[VERDICT].value_counts()
        rows.append({"dataset": dataset, "method": method, "cells": len(part),
                     **{d: int((part[DEPTH] == d).sum()) for d in DEPTHS},
                     "most common verdict": lines.index[0], "in cells": int(lines.iloc[0])})
    return pd.DataFrame(rows)


def summary_text(tables: dict[str, pd.DataFrame]) -> str:
    """What the sweep command prints: per data set and method, mean ± std over cells of the headline figures
    and in how many cells it is superficial / erased / succeeds; then per data set how many claims hold and how
    many retrained models pass their null read."""
    summary, claims_table = tables["summary"], tables["claims"]
    short = {FORGET: "forget_train acc.", RETAIN: "test_retain acc.", FEWSHOT_GAP: "few-shot gap",
             RELEARN_GAP: "relearning gap", OUTPUT_DISTANCE: "output distance", CKA: "mean int. CKA"}
    table = summary[["dataset", "method"]].copy()
    for column, name in short.items():
        mean, std = summary[f"{column} mean"], summary[f"{column} std"]
        table[name] = [f"{m:.3f}" if pd.isna(d) else f"{m:.3f} ± {d:.3f}" for m, d in zip(mean, std)]
    for counted in ("superficial", "erased", "undecided", "succeeds"):
        table[counted] = [f"{k}/{n}" for k, n in zip(summary[counted], summary["cells"])]
    held = ([f"{dataset}: {int(part['holds'].astype(bool).sum())} of {len(part)} claims hold over the cells"
             for dataset, part in claims_table.groupby("dataset", sort=False)]
            if not claims_table.empty else ["0 of 0 claims hold over the cells"])
    nulls = tables.get("null_tests", pd.DataFrame())
    null = [] if nulls.empty else [
        f"{dataset}: null test: {int(part['null reads passed'].sum())} of {int(part['null reads'].sum())} retrained "
        "models read as erased, keeps retain, no tell against the others, over the cells"
        for dataset, part in nulls.groupby("dataset", sort=False)]
    return f"{table.set_index(['dataset', 'method']).to_string()}\n\n" + "\n".join(held + null)


def load(sweep_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The tables a sweep wrote, by name (`results`, `verdicts`, `summary`, `claims`); `results` keeps its
    empty `layer` and `split` fields as empty strings, as `ecnb.read_results` does."""
    root = Path(sweep_dir)
    if not (root / "sweep.json").exists():
        raise ArtifactError(f"{root} is not a sweep directory (no sweep.json): run `python -m ecnb sweep` first")
    tables = {}
    for name in ("results", "verdicts", "summary", "claims", "null_tests"):
        path = root / f"{name}.csv"
        if not path.exists() or path.stat().st_size <= 1:  # a table with no rows is written as one newline
            tables[name] = pd.DataFrame()
        elif name == "results":
            tables[name] = pd.read_csv(path, keep_default_na=False, dtype={c: str for c in _TEXT_COLUMNS})
        else:
            tables[name] = pd.read_csv(path, dtype={"forget_set": str, TELLS: str}).fillna({TELLS: ""})
    return tables


_TEXT_COLUMNS = ("dataset", "forget_set", "method", "metric", "layer", "split")


def _report_intro(summary: pd.DataFrame, configs: dict[Cell, StudyConfig], failures: dict[str, str]) -> str:
    profiles = "; ".join(dict.fromkeys(f"{c.dataset}: {c.profile} profile, {c.model}, {c.scope} scope"
                                       for c in configs.values()))
    lines = [f"# {TITLE}: a sweep of {len(configs)} cells", "", f"{profiles}.",
             "", "Cells: " + ", ".join(c.name for c in configs) + ".", ""]
    lines += [f"**cell {name} failed**: {error}" for name, error in failures.items()]
    if not summary.empty:
        lines += ["", summary.round(3).to_html(index=False)]
    return "\n".join(lines)
