"""The one-command study: every numbered notebook, in order, executed headlessly by papermill, then
one offline HTML report and a summary table.

Later notebooks are picked up by their file name (`notebooks/NN_*.ipynb`); each receives only the
parameters its parameters cell declares, so adding a notebook never touches this runner.
"""
from __future__ import annotations

import dataclasses
import fcntl
import functools
import os
import queue
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from jupyter_client.manager import AsyncKernelManager
from traitlets import default

from .artifacts import Run, atomic_write, remove_temporaries
from .config import ConfigError, StudyConfig, resolve_device
from .attacks import check_shots
from .data import DATASET_TITLES, check_available, class_label, load_dataset
from .methods import check_config
from .scopes import selection
from .user_models import check_checkpoints
from .results import population_names, read_results, summarize
from .verdicts import judge_run, summary, summary_key

if TYPE_CHECKING:  # imported where a report is rendered: notebook kernels import this module, nbformat costs 0.8 s
    import nbformat
    import torch

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
RUNS_DIR = NOTEBOOKS_DIR.parent / "runs"
# The run directory notebook 01 prepared last when it was given none (JupyterLab): notebooks 02 to 04 read it
# when they are given none either, so changing the forget class in notebook 01 is the only edit needed.
LATEST_RUN = RUNS_DIR / "LATEST"
RUNNING_SUFFIX = ".running.ipynb"  # a notebook being executed, renamed into place only when it succeeds
PLOTLY_MIME = "application/vnd.plotly.v1+json"
KERNEL_DIR_PREFIX = "ecnb-kernel-"  # each kernel's private folder for its IPC sockets, removed at shutdown


class _IPCKernelManager(AsyncKernelManager):
    """Kernels talk over local IPC sockets: nothing listens on TCP, and the kernel has nothing to warn about."""

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"

    @default("ip")
    def _default_ip(self) -> str:
        """Socket files go to a private temporary folder, not the notebook's working directory."""
        return os.path.join(tempfile.mkdtemp(prefix=KERNEL_DIR_PREFIX), "ipc")

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        """After the kernel's own clean-up (its socket files), the folder goes too."""
        await super()._async_cleanup_resources(restart=restart)
        folder = Path(self.ip).parent
        if not restart and folder.name.startswith(KERNEL_DIR_PREFIX):
            shutil.rmtree(folder, ignore_errors=True)


class StudyError(RuntimeError):
    """A notebook failed; the message names it and where its executed copy is."""


# Numbered notebooks that read a sweep directory, not a run: the sweep command executes them, a study skips them.
SWEEP_NOTEBOOKS = ("05_across_forget_classes.ipynb",)


def notebook_paths(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks of a study, in order."""
    return sorted(p for p in folder.glob("*.ipynb") if re.match(r"\d\d_", p.name) and p.name not in SWEEP_NOTEBOOKS)


def open_notebook_run(run_dir: str | None = None, **options: Any) -> Run:
    """Notebook 01's run: `StudyConfig.from_options(**options)` opened at `run_dir`, or, when none is given,
    at the directory the options name under the project's `runs/`, recorded in `LATEST_RUN` for the
    notebooks that follow."""
    config = StudyConfig.from_options(run_dir=run_dir, **options)
    check_config(config)
    if run_dir is None:
        config = dataclasses.replace(config, run_dir=str(RUNS_DIR.parent / config.run_dir))
    run = Run.open(config)
    if run_dir is None:
        atomic_write(LATEST_RUN, lambda tmp: tmp.write_text(str(run.root) + "\n"))
    return run


def find_run(run_dir: str | None = None) -> Run:
    """Notebooks 02 to 05's run: `run_dir`, or the one notebook 01 prepared last (`LATEST_RUN`)."""
    if run_dir is None:
        if not LATEST_RUN.exists():
            raise ConfigError("no run_dir was given and notebook 01 has prepared none yet: run notebook 01 first, "
                              "or give run_dir")
        run_dir = LATEST_RUN.read_text().strip()
        print(f"run_dir not given: reading the run notebook 01 prepared last, {run_dir}")
    return Run.load(run_dir)


def notebook_parameters(
    config: StudyConfig, seed: int, methods: list[str] | None = None, ablations: list[str] | None = None
) -> dict[str, Any]:
    """The study's options as notebook parameters (plain literals, one seed per execution).

    `methods` (the baselines; EC's plug-ins follow them) and `ablations` are passed only when given,
    so the scope's selection (`ecnb.scopes`) applies otherwise.
    """
    selection = {k: list(v) for k, v in (("methods", methods), ("ablations", ablations)) if v is not None}
    return {
        **selection,
        "scope": config.scope,
        "population": config.population,
        "overrides": config.overrides,
        "method_files": list(config.method_files),
        "checkpoints": {name: brought["path"] for name, brought in config.checkpoints.items()},
        "profile": config.profile,
        "dataset": config.dataset,
        "model": config.model,
        "forget_classes": list(config.forget_classes),
        "forget_fraction": config.forget_fraction,
        "seed": seed,
        "epochs": config.train.epochs,
        "device": config.device,
        "run_dir": str(Path(config.run_dir).absolute()),
        # as options: 0 where the study reads every image and its profile would otherwise cap them
        **{name: config.cap_option(name) for name in ("train_per_class", "test_per_class")},
        "attacks": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config.attacks).items()},
        # Notebook 04's widgets need a live kernel; the executed copies and the report get its static figures
        # even when a person saved the notebook with `interactive = True`.
        "interactive": False,
    }


@contextmanager
def study_lock(root: Path) -> Iterator[None]:
    """One study per run directory at a time; a second one stops at once instead of corrupting the first."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".study.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ConfigError(
                f"run directory {root} is in use by another study (pid {f.read().strip() or '?'}); "
                "wait for it or give another --run-dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# What the study's kernel does before the first notebook's first cell: import the modules every notebook reads (about
# 2 s of torch, scikit-learn, pandas and plotly) while its job workers start and import what the jobs run.
WARM_IMPORTS = "import ecnb.study, ecnb.evaluate, ecnb.verdicts, ecnb.prose, ecnb.viz"
# The job workers started beside those imports, as many as `ecnb.workers.worker_count` gives the study's device (none
# on an accelerator, whose jobs run in the kernel); `{device}` is filled in.
PRESTART_WORKERS = ("import ecnb.workers; "
                    "ecnb.workers.prestart(('ecnb.evaluate', 'ecnb.train', 'torch._dynamo'), {device!r})")
# Each notebook starts from an empty namespace with its execution count at 1; what stays is what the kernel imported,
# and the job workers `ecnb.workers` keeps between calls.
FRESH_SESSION = "__import__('ecnb.study').study.fresh_namespace()"


def fresh_namespace() -> None:
    """In a notebook kernel: IPython's reset to a new session (no variables, no history, execution count 1), with the
    module attributes a fresh kernel's namespace has (`__spec__` and the like), which the reset drops but spawning a
    worker process reads; then the memory the last notebook's objects held, an accelerator's cache included, given
    back. What a reset keeps (imported modules and their state, the environment, the working folder) no notebook
    changes."""
    import gc

    from IPython import get_ipython

    shell = get_ipython()
    kept = {k: v for k, v in shell.user_ns.items() if k.startswith("__") and k.endswith("__")}
    shell.reset(new_session=True)
    shell.user_ns.update(kept)
    gc.collect()
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        sys.modules["torch"].cuda.empty_cache()


class StudyKernel:
    """The kernel the study runs its notebooks in, one after another, in the notebooks' folder: each notebook after
    the first would otherwise start a kernel of its own and, in it, job workers of its own, about 8 s of imports on
    the two cores for nothing. It is told to import `WARM_IMPORTS` at once, and `fresh_session` empties it between
    notebooks, so a notebook sees none of the one before it. `close` shuts it down (at once, as papermill does with
    its own)."""

    def __init__(self, cwd: Path, device: torch.device | str = "cpu") -> None:
        """`device`: the study's (resolved), for which the job workers start with the kernel."""
        from jupyter_client.blocking import BlockingKernelClient
        from jupyter_core.utils import run_sync

        self.cwd = cwd
        self.manager = _IPCKernelManager(kernel_name="python3")
        run_sync(self.manager.start_kernel)(cwd=str(cwd))
        self._client = BlockingKernelClient()
        self._client.load_connection_info(self.manager.get_connection_info())
        self._client.start_channels(iopub=False, stdin=False, hb=False, control=False)  # the replies alone
        self._client.execute(f"{PRESTART_WORKERS.format(device=str(device))}; {WARM_IMPORTS}", silent=True,
                             store_history=False)

    def fresh_session(self, timeout: float = 60.0) -> None:
        """Empty the namespace and restart the execution count, and wait until that is done."""
        msg_id = self._client.execute(FRESH_SESSION, silent=True, store_history=False)
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self._client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise StudyError(f"the study's kernel did not answer within {timeout:.0f} s between notebooks"
                                 ) from None
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        if reply["content"]["status"] != "ok":
            raise StudyError(f"the study's kernel could not be emptied between notebooks: {reply['content']}")

    def close(self) -> None:
        """Shut the kernel down (once; a second call does nothing)."""
        from jupyter_core.utils import run_sync

        if self._client.channels_running:
            self._client.stop_channels()
        if self.manager.has_kernel:
            run_sync(self.manager.shutdown_kernel)(now=True)


# papermill writes the whole executed notebook, figures' data included, at the start and at the end of every cell:
# about 0.1 s a cell once a notebook holds its figures, a few seconds of a study spent between cells. Here at most
# every `SAVE_EVERY_S` seconds (papermill's own autosave keeps a long cell's output coming), and always at the end.
SAVE_EVERY_S = 10.0


@functools.cache
def _sparse_saves_engine() -> str:
    """The name of a papermill engine that is nbclient's with `SAVE_EVERY_S` between writes (registered on first use:
    notebook kernels import this module, and papermill is not theirs to import)."""
    from papermill.engines import NBClientEngine, NotebookExecutionManager, catch_nb_assignment, papermill_engines

    class SparseSaves(NotebookExecutionManager):
        final = False

        @catch_nb_assignment
        def save(self, **kwargs: Any) -> None:
            if self.final or (self.now() - self.last_save_time).total_seconds() >= SAVE_EVERY_S:
                super().save(**kwargs)

        def notebook_complete(self, **kwargs: Any) -> None:
            self.final = True
            super().notebook_complete(**kwargs)

    class Engine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None, progress_bar: Any = True,
                             log_output: bool = False, autosave_cell_every: int = 30, **kwargs: Any) -> Any:
            """papermill's `Engine.execute_notebook`, with `SparseSaves` managing the notebook."""
            nb_man = SparseSaves(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                                 autosave_cell_every=autosave_cell_every)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

    papermill_engines.register("ecnb-sparse-saves", Engine)
    return "ecnb-sparse-saves"


def execute_notebook(
    source: Path, target: Path, parameters: dict[str, Any], kernel: StudyKernel | None = None
) -> None:
    """Run `source` with papermill (in `kernel` when given, else in a kernel of its own); the executed copy appears at
    `target` only when every cell passed.

    A failing cell or a dead kernel raises StudyError; the notebook is then kept as `<name>.failed.ipynb`
    for inspection and an executed copy from an earlier run is removed, so `target` never shows a
    success that this run did not have. When interrupted, the half-executed copy is deleted.
    """
    import papermill
    from nbclient.exceptions import DeadKernelError

    declared = papermill.inspect_notebook(str(source))
    params = {k: v for k, v in parameters.items() if k in declared}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}{RUNNING_SUFFIX}")
    failed = target.with_name(f"{target.stem}.failed.ipynb")
    try:
        papermill.execute_notebook(
            str(source), str(partial), parameters=params, kernel_name="python3", cwd=str(source.parent),
            engine_name=_sparse_saves_engine(),
            progress_bar={"desc": source.stem, "leave": False}, kernel_manager_class=_IPCKernelManager,
            shutdown_kernel="immediate",  # on Ctrl-C too: stop the kernel mid-cell, not ask it to finish the cell
            **({} if kernel is None else {"km": kernel.manager}),
        )
    except papermill.PapermillExecutionError as e:
        why = f"failed in cell {e.exec_count}: {e.ename}: {e.evalue}"
    except DeadKernelError:
        why = "stopped: its kernel died (killed, or out of memory)"
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    else:
        os.replace(partial, target)
        failed.unlink(missing_ok=True)
        return
    os.replace(partial, failed)
    target.unlink(missing_ok=True)
    raise StudyError(f"{source.name} {why} (see {failed})")


def run_study(
    config: StudyConfig,
    force: bool = False,
    notebooks: list[Path] | None = None,
    log: Callable[[str], None] = print,
    methods: list[str] | None = None,
    ablations: list[str] | None = None,
) -> Path:
    """Execute the notebook sequence for every seed, write `report.html`, print the summary."""
    preflight(config, methods, ablations)
    notebooks = notebook_paths() if notebooks is None else notebooks
    root = Path(config.run_dir)
    with study_lock(root):
        run = Run.open(config, force=force)
        _remove_partial_files(root)
        kernel: StudyKernel | None = None
        try:
            for seed in config.seeds:
                for nb in notebooks:
                    start = time.perf_counter()
                    log(f"[seed {seed}] {nb.name} ...")
                    if kernel is not None and kernel.cwd == nb.parent:
                        kernel.fresh_session()
                    else:
                        if kernel is not None:
                            kernel.close()
                        kernel = StudyKernel(nb.parent, resolve_device(config.device))
                    params = notebook_parameters(config, seed, methods, ablations)
                    execute_notebook(nb, root / "notebooks" / f"seed{seed}" / nb.name, params, kernel)
                    log(f"[seed {seed}] {nb.name} done in {time.perf_counter() - start:.1f} s")
        finally:
            if kernel is not None:
                kernel.close()
        table, key = study_summary(run, methods, ablations)
        report = build_report(run, [root / "notebooks" / f"seed{config.seeds[0]}" / nb.name for nb in notebooks],
                              table, key)
    log("\n" + (table.to_string() if not table.empty else "(no results)"))
    log(key)
    for line in run.failure_lines():
        log(line)
    log(f"\nreport: {report.absolute()}")
    return report


def preflight(config: StudyConfig, methods: list[str] | None = None, ablations: list[str] | None = None) -> None:
    """Every check a study makes before any work (a sweep makes them for each of its cells): the
    configuration (and what the method registry says of it), the method selection, the data, the run directory,
    the attacker's shots and the models brought as checkpoints."""
    config.validate()
    check_config(config)
    selection(config.scope, methods, ablations, config)
    check_available(config.dataset)
    config.check_writable()
    if config.scenario == "class" or config.checkpoints:
        labels, channels = _data_facts(config.dataset, config.train_per_class, config.test_per_class)
        if config.scenario == "class":
            check_shots(labels, config.forget_classes, config.attacks)
        check_checkpoints(config, channels)


@functools.lru_cache(maxsize=8)
def _data_facts(dataset: str, train_per_class: int | None, test_per_class: int | None) -> tuple[np.ndarray, int]:
    """The training labels and input channels of a data set as a study loads it; a sweep's cells share one read per
    data set."""
    ds = load_dataset(dataset, train_per_class=train_per_class, test_per_class=test_per_class)
    return ds.y_train.numpy(), ds.input_shape[0]


def _remove_partial_files(root: Path) -> None:
    """What a killed study left behind: temporaries of interrupted writes and half-executed notebooks.

    Nothing reads them (readers open final names only); removing them keeps the run directory tidy.
    Only called under the study lock, when no other study writes here.
    """
    remove_temporaries(root)
    for path in (root / "notebooks").rglob(f".*{RUNNING_SUFFIX}"):
        path.unlink()


def study_results(run: Run, methods: list[str] | None = None, ablations: list[str] | None = None) -> pd.DataFrame:
    """The run's results for its seeds, limited to the references, the retrained population and the methods of
    its scope (a full study run earlier in the same directory leaves rows a walkthrough does not show)."""
    shown = {"original", *population_names(run.config.population),
             *selection(run.config.scope, methods, ablations, run.config).methods}
    results = read_results(run.root)
    return results[results["seed"].isin(run.config.seeds) & results["method"].isin(shown)]


def study_verdicts(run: Run, methods: list[str] | None = None, ablations: list[str] | None = None) -> dict[int, pd.DataFrame]:
    """The `judge` table of each seed of the run, for the methods of its scope that were measured."""
    chosen = selection(run.config.scope, methods, ablations, run.config).methods
    measured = set(read_results(run.root)["method"])
    return {seed: judge_run(run, seed, [m for m in chosen if m in measured]) for seed in run.config.seeds}


def study_summary(run: Run, methods: list[str] | None = None, ablations: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """The run's summary table and its key: the verdicts once `original` and the retrained models are measured
    (notebook 02) for every seed, else the whole-model figures measured so far (a study cut to notebook 01)."""
    measured = all(run.outcomes_path(m, seed).exists() for seed in run.config.seeds
                   for m in ("original", *population_names(run.config.population)))
    if not measured:
        return summarize(study_results(run, methods, ablations), run.config.seeds), (
            "No verdicts yet: notebook 02 measures the retrained models they are read against.")
    judged = study_verdicts(run, methods, ablations)
    return summary(judged), summary_key(judged)


TITLE = "Superficial forgetting and Erase at the Core"


def study_title(config: StudyConfig) -> str:
    """The report's title: the study, its data and forget set, and its scope."""
    what = (f"forgetting class{'es' if len(config.forget_classes) > 1 else ''} "
            f"{', '.join(class_label(config.dataset, c) for c in config.forget_classes)}" if config.scenario == "class"
            else f"forgetting a random {config.forget_fraction:.0%} of the training set")
    return f"{TITLE}: {DATASET_TITLES.get(config.dataset, config.dataset)}, {config.model}, {what} ({config.scope})"


def seeds_line(seeds: tuple[int, ...]) -> str:
    """The report header's sentence about seeds, in words: which seeds the table reads and whose notebooks follow."""
    if len(seeds) == 1:
        return f"One seed ({seeds[0]}): the table and the notebooks below are its run."
    listed = ", ".join(map(str, seeds[:-1])) + f" and {seeds[-1]}"
    return (f"{len(seeds)} seeds ({listed}): the table gives the mean ± std over them and how many seeds gave each "
            f"verdict; the notebooks below are those of seed {seeds[0]}.")


def build_report(run: Run, executed: list[Path], table: pd.DataFrame | None = None, key: str | None = None) -> Path:
    """All executed notebooks as one offline HTML page, plotly.js embedded once, no outside requests.
    `table` and `key` are the run's summary and its key when the caller already has them."""
    config = run.config
    if table is None or key is None:
        table, key = study_summary(run)
    intro = (
        f"# {study_title(config)}\n\n{seeds_line(config.seeds)} Accuracy is reported as is (not 1 - accuracy); "
        "every accuracy on the forgotten class's test images comes with its Wilson 95% interval.\n\n"
        + (table.to_html() if not table.empty else "")
        + "\n\n" + "\n\n".join(key.splitlines())
        + "".join(f"\n\n**{line}**" for line in run.failure_lines())
    )
    return render_report(run.root / "report.html", executed, intro, study_title(config))


def render_report(target: Path, executed: list[Path], intro: str, title: str) -> Path:
    """`intro` (Markdown) and the executed notebooks as one offline HTML page at `target` (a study's report
    and a sweep's) titled `title`: plotly.js embedded once, no outside requests."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor
    from plotly.offline import get_plotlyjs

    merged = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(intro)])
    merged.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for path in executed:
        merged.cells.extend(_static_plotly(nbformat.read(path, as_version=4)).cells)
    exporter = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True)
    # A text progress bar is stored as one stream output per update; show only its last state.
    exporter.register_preprocessor(CoalesceStreamsPreprocessor, enabled=True)
    html, _ = exporter.from_notebook_node(merged, resources={"metadata": {"name": title}})
    html = _strip_remote_scripts(html)
    html = html.replace("</head>", f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>', 1)
    return atomic_write(target, lambda tmp: tmp.write_text(html))


def _static_plotly(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Turn plotly's mime-type outputs into HTML divs that need only the page's one copy of plotly.js.

    A figure with frames (a slider over layers) opens on its first frame instead of playing through them. The figure
    goes in as plotly wrote it, not validated again (half a second for the atlas of notebook 04).
    """
    import json

    import plotly.io as pio

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PLOTLY_MIME in data:
                fig = data[PLOTLY_MIME]
                fig = json.loads(fig) if isinstance(fig, str) else dict(fig)
                out["data"] = {"text/html": pio.to_html(fig, include_plotlyjs=False, full_html=False, auto_play=False,
                                                        validate=False)}
    return nb


def _strip_remote_scripts(html: str) -> str:
    """Drop the template's CDN scripts (require.js, MathJax): the report must open offline."""
    return re.sub(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', "", html)
