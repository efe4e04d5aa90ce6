"""The one-command study: every numbered notebook, in order, executed headlessly by papermill, then
one offline HTML report and a summary table.

Later notebooks are picked up by their file name (`notebooks/NN_*.ipynb`); each receives only the
parameters its parameters cell declares, so adding a notebook never touches this runner.
"""
from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager
from traitlets import default

from .artifacts import Run, atomic_write
from .config import ConfigError, StudyConfig
from .data import check_available
from .results import read_results, summarize

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


class _IPCKernelManager(AsyncKernelManager):
    """Kernels talk over local IPC sockets: nothing listens on TCP, and the kernel has nothing to warn about."""

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"


class StudyError(RuntimeError):
    """A notebook failed; the message names it and where its executed copy is."""


def notebook_paths(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks, in order."""
    return sorted(p for p in folder.glob("*.ipynb") if re.match(r"\d\d_", p.name))


def notebook_parameters(config: StudyConfig, seed: int) -> dict[str, Any]:
    """The study's options as notebook parameters (plain literals, one seed per execution)."""
    return {
        "profile": config.profile,
        "dataset": config.dataset,
        "model": config.model,
        "forget_classes": list(config.forget_classes),
        "forget_fraction": config.forget_fraction,
        "seed": seed,
        "epochs": config.train.epochs,
        "device": config.device,
        "run_dir": str(Path(config.run_dir).absolute()),
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


def execute_notebook(source: Path, target: Path, parameters: dict[str, Any]) -> None:
    """Run `source` with papermill; the executed copy appears at `target` only when every cell passed.

    A failing notebook is kept beside it as `<name>.failed.ipynb` for inspection.
    """
    import papermill

    declared = papermill.inspect_notebook(str(source))
    params = {k: v for k, v in parameters.items() if k in declared}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.running.ipynb")
    failed = target.with_name(f"{target.stem}.failed.ipynb")
    try:
        papermill.execute_notebook(
            str(source), str(partial), parameters=params, kernel_name="python3", cwd=str(source.parent),
            progress_bar={"desc": source.stem, "leave": False}, kernel_manager_class=_IPCKernelManager,
        )
    except papermill.PapermillExecutionError as e:
        os.replace(partial, failed)
        raise StudyError(f"{source.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue} (see {failed})") from None
    os.replace(partial, target)
    failed.unlink(missing_ok=True)


def run_study(
    config: StudyConfig,
    force: bool = False,
    notebooks: list[Path] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Execute the notebook sequence for every seed, write `report.html`, print the summary."""
    config.validate()
    check_available(config.dataset)
    config.check_writable()
    notebooks = notebook_paths() if notebooks is None else notebooks
    root = Path(config.run_dir)
    with study_lock(root):
        run = Run.open(config, force=force)
        for seed in config.seeds:
            for nb in notebooks:
                start = time.perf_counter()
                log(f"[seed {seed}] {nb.name} ...")
                execute_notebook(nb, root / "notebooks" / f"seed{seed}" / nb.name, notebook_parameters(config, seed))
                log(f"[seed {seed}] {nb.name} done in {time.perf_counter() - start:.1f} s")
        report = build_report(run, [root / "notebooks" / f"seed{config.seeds[0]}" / nb.name for nb in notebooks])
    table = summarize(read_results(root), config.seeds)
    log("\n" + (table.to_string() if not table.empty else "(no results)"))
    log(f"\nreport: {report.absolute()}")
    return report


def build_report(run: Run, executed: list[Path]) -> Path:
    """All executed notebooks as one offline HTML page, plotly.js embedded once, no outside requests."""
    from nbconvert import HTMLExporter
    from plotly.offline import get_plotlyjs

    config = run.config
    table = summarize(read_results(run.root), config.seeds)
    intro = (
        f"# ecnb study: {config.dataset}, {config.model}, "
        + (f"forgetting class(es) {list(config.forget_classes)}" if config.scenario == "class"
           else f"forgetting a random {config.forget_fraction:.0%} of the training set")
        + f"\n\nSeeds: {list(config.seeds)}; the notebooks below are those of seed {config.seeds[0]}. "
        "Accuracy is reported as is (not 1 - accuracy).\n\n"
        + (table.to_html() if not table.empty else "")
    )
    merged = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(intro)])
    merged.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for path in executed:
        merged.cells.extend(_static_plotly(nbformat.read(path, as_version=4)).cells)
    exporter = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(merged)
    html = _strip_remote_scripts(html)
    html = html.replace("</head>", f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>', 1)
    return atomic_write(run.root / "report.html", lambda tmp: tmp.write_text(html))


def _static_plotly(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Turn plotly's mime-type outputs into HTML divs that need only the page's one copy of plotly.js."""
    import plotly.io as pio

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PLOTLY_MIME in data:
                fig = pio.from_json(_json(data[PLOTLY_MIME]), skip_invalid=True)
                out["data"] = {"text/html": pio.to_html(fig, include_plotlyjs=False, full_html=False)}
    return nb


def _json(obj: Any) -> str:
    import json

    return obj if isinstance(obj, str) else json.dumps(obj)


def _strip_remote_scripts(html: str) -> str:
    """Drop the template's CDN scripts (require.js, MathJax): the report must open offline."""
    return re.sub(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', "", html)
