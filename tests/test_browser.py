"""The study's pages in a real browser (Debian's Chromium): the shared tiny study's notebook 04 and its report,
for both scopes; JupyterLab running notebook 04 with live widgets; the Voila explorer app.

Playwright drives the system Chromium (it cannot download browsers of its own here). Screenshots of every
browser session go to `test-artifacts/`, and a failing session names its screenshot.
"""
from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import numpy as np
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook
from PIL import Image

from conftest import plotly_figures

import ecnb
from ecnb import serve
from ecnb.study import NOTEBOOKS_DIR, build_report, execute_notebook, notebook_parameters

# Move every figure that has frames to its last one, as its slider would.
ANIMATE_TO_LAST_FRAME = """() => Promise.all([...document.querySelectorAll(".js-plotly-plot")].map(gd => {
  const frames = gd._transitionData._frames;
  if (!frames.length) return null;
  const last = frames[frames.length - 1].name;
  return Plotly.animate(gd, [last], {mode: "immediate", frame: {duration: 0, redraw: true}, transition: {duration: 0}})
    .then(() => gd.setAttribute("data-shown-frame", last));
}))"""


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def shared_run(tiny_study, tmp_path_factory):
    """The shared tiny study (tests/conftest.py): its run and seed 0's executed notebooks. Notebook 04 is also
    executed from a copy saved with `interactive = True`, as a person would leave it after JupyterLab, with the
    study's own parameters: the study must still run it headless."""
    run = ecnb.Run.load(tiny_study[0])
    executed = sorted((run.root / "notebooks" / "seed0").glob("0*.ipynb"))
    saved = tmp_path_factory.mktemp("saved") / "04_representations.ipynb"
    source = (NOTEBOOKS_DIR / saved.name).read_text()
    saved.write_text(source.replace('"interactive = False', '"interactive = True'))
    assert saved.read_text() != source
    execute_notebook(saved, saved.with_name("04_executed.ipynb"), notebook_parameters(run.config, seed=0))
    return run, executed, saved.with_name("04_executed.ipynb")


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "headless Chromium not found: install the Debian package `chromium` (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_notebook_04_caches_embeddings_and_stays_small(shared_run):
    run, executed, saved = shared_run
    methods = ["original", "retrain", *ecnb.scopes.selection(run.config.scope, ["ga", "scrub"], ["ec[last]"]).methods]
    taps = ecnb.build_model(run.config.model, 1, 10).taps
    cached = sorted(p.name.split("__")[:2] for p in (run.seed_dir(0) / "embeddings").glob("*.npz"))
    assert cached == sorted([m, tap] for m in methods for tap in taps), "one embedding per model and layer"
    for notebook in (executed[3], saved):
        embedding, cka = plotly_figures(notebook)
        assert [f["name"] for f in embedding["frames"]] == taps
        titles = [a["text"] for a in embedding["layout"]["annotations"]]
        largest = max(len(page) for _, page in ecnb.explorer.pages(methods))
        assert len(titles) == largest <= ecnb.explorer.PANELS and titles[:2] == ["original", "retrain"], \
            "a handful of panels: the grid of the largest page"
        assert len(embedding["layout"]["updatemenus"][-1]["buttons"]) > 1, "a menu pages through the other models"
        views = [b["label"] for b in cka["layout"]["updatemenus"][0]["buttons"]]
        assert views == [f"{m} · {s}" for m in ecnb.explorer.CKA_METRICS for s in ecnb.evaluate.CKA_SPLITS]
        text = notebook.read_text()
        assert "widgets" not in json.loads(text)["metadata"] and "widget-view" not in text, "no widgets when headless"
        assert "plotly.js v" not in text and notebook.stat().st_size < 1_000_000, "the figures' data, no plotly.js copy"


@pytest.mark.parametrize("scope", ["walkthrough", "full"])
def test_report_draws_every_figure_offline_in_a_browser(shared_run, tiny_full_study, chromium, scope):
    run, executed = (shared_run[0], shared_run[1]) if scope == "walkthrough" else (
        ecnb.Run.load(tiny_full_study[0]), sorted((tiny_full_study[0] / "notebooks" / "seed0").glob("0*.ipynb")))
    report = build_report(run, executed)
    html = report.read_text()
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=[\"'](https?:)?//", html), "no outside request"
    assert html.count("plotly.js v") == 1, "plotly.js embedded once"
    n_figures = html.count('class="plotly-graph-div"')
    assert n_figures == sum(len(plotly_figures(p)) for p in executed)

    taps = ecnb.build_model(run.config.model, 1, 10).taps
    with browser_page(chromium, f"report-{scope}-last-layer") as page:  # screenshots kept in test-artifacts/
        page.goto(report.as_uri(), wait_until="load")
        assert page.title().startswith("Superficial forgetting and Erase at the Core: digits")
        page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n_figures}")
        assert page.locator(".plotly-graph-div.js-plotly-plot").count() == n_figures, "plotly drew every figure"
        slider = page.locator(f'text[data-unformatted="layer: {taps[0]}"]')
        assert slider.count() >= 1, "the layer slider opens on the first layer, not playing"
        page.screenshot(path=ARTIFACTS / f"report-{scope}.png", full_page=True)
        page.evaluate(ANIMATE_TO_LAST_FRAME)
        page.wait_for_selector(f'[data-shown-frame="{taps[-1]}"]')
        assert page.locator(f'text[data-unformatted="layer: {taps[-1]}"]').count() >= 1, "the slider follows the frame"
    pixels = np.asarray(Image.open(ARTIFACTS / f"report-{scope}.png").convert("RGB")).astype(np.int64)
    colours = np.unique(pixels[..., 0] << 16 | pixels[..., 1] << 8 | pixels[..., 2])
    assert len(colours) > 200, "a drawn page, not a blank one"
    assert pixels.std() > 20


# --- JupyterLab and the Voila app, driven by Playwright ------------------------------------------------

# The explorer's figure (the first plot inside a widget Output): its title and, per trace, what is shown.
EXPLORER_FIGURE = """(n) => {
  const gd = document.querySelectorAll('.widget-output .js-plotly-plot')[n];
  if (!gd || !gd.layout || !gd.data) return null;
  const title = gd.layout.title && gd.layout.title.text;
  const shown = t => (t.visible === undefined || t.visible === true) && !(t.marker && t.marker.opacity === 0);
  return JSON.stringify([title, gd.data.map(t => [t.name, shown(t), t.x.length])]);
}"""
NOTEBOOK_DONE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel) return false;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const outputs = cells.flatMap(c => c.model.outputs.toJSON());
  if (outputs.some(o => o.output_type === 'error')) return 'error';
  return kernel.status === 'idle' && cells.every(c => c.model.executionCount !== null);
}"""
NOTEBOOK_OUTPUTS = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .filter(c => c.model.type === 'code').flatMap(c => c.model.outputs.toJSON())"""
KERNEL_IDLE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const session = panel && panel.sessionContext && panel.sessionContext.session;
  return Boolean(session && session.kernel && session.kernel.status === 'idle');
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(cmd: list[str], port: int, log: Path, home: Path, timeout: float = 120) -> Iterator[None]:
    """A server started from `cmd`, its Jupyter folders private to the test, until it listens on `port`;
    stopped with its children afterwards. Its output goes to `log`, quoted when it does not come up."""
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings")}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"server not listening after {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def browser_page(chromium: str, name: str) -> Iterator:
    """A Playwright page in the system Chromium. Its screenshot is kept as test-artifacts/<name>.png, or
    <name>-failed.png when the test fails inside, with the browser console's errors in the message."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.console = console
        try:
            yield page
            page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
        except Exception as e:
            shot = ARTIFACTS / f"{name}-failed.png"
            page.screenshot(path=shot, full_page=True)
            errors = "\n".join(line for line in console if line.startswith("error"))
            raise AssertionError(f"{e}\nscreenshot: {shot}\nbrowser console errors:\n{errors}") from e
        finally:
            browser.close()


def figure_state(page, n: int = 0) -> str:
    page.wait_for_function(f"() => ({EXPLORER_FIGURE})({n}) !== null", timeout=60_000)
    return page.evaluate(EXPLORER_FIGURE, n)


def redrawn(page, before: str, n: int = 0) -> str:
    """Wait until the n-th figure inside a widget differs from `before`; return its new state."""
    page.wait_for_function(f"(before) => ({EXPLORER_FIGURE})({n}) !== null && ({EXPLORER_FIGURE})({n}) !== before",
                           arg=before, timeout=60_000)
    return page.evaluate(EXPLORER_FIGURE, n)


def move_layer_slider(page) -> None:
    handle = page.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")


def assert_widgets_drawn(page) -> None:
    assert page.locator("text=Error displaying widget").count() == 0
    assert not [line for line in page.console if "matches" in line], "no axis matched to itself"


def test_jupyterlab_runs_notebook_04_with_live_widgets(shared_run, chromium, tmp_path):
    run, executed, _ = shared_run
    root = run.root.parent  # the run's executed notebooks are inside the server's root, as with `make lab`
    params = {"run_dir": str(run.root), "interactive": True}
    nbformat.write(parameterize_notebook(load_notebook_node(str(NOTEBOOKS_DIR / executed[3].name)), params),
                   root / "explore.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    cmd = [*serve.lab_command(port, token, browser=False, root=root), "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    started = time.perf_counter()
    with serving(cmd, port, tmp_path / "lab.log", tmp_path), browser_page(chromium, "jupyterlab") as page:
        executed_copy = executed[3].relative_to(root).as_posix()
        reply = page.request.get(f"http://127.0.0.1:{port}/api/contents/{executed_copy}?content=0&token={token}")
        assert reply.ok and reply.json()["type"] == "notebook", "the run's executed notebooks can be opened"

        page.goto(f"http://127.0.0.1:{port}/lab/tree/explore.ipynb?token={token}")
        page.wait_for_function(KERNEL_IDLE, timeout=120_000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(NOTEBOOK_DONE, timeout=240_000)
        outputs = page.evaluate(NOTEBOOK_OUTPUTS)
        errors = [o for o in outputs if o["output_type"] == "error"]
        assert not errors, errors[0]["evalue"] if errors else ""
        assert not [o for o in outputs if o.get("name") == "stderr" and "UMAP" in "".join(o["text"])], \
            "the UMAP bar is not shown as an error"
        page.locator(".widget-output .js-plotly-plot").first.wait_for(timeout=60_000)
        assert_widgets_drawn(page)

        first = figure_state(page)
        taps = ecnb.build_model(run.config.model, 1, 10).taps
        assert json.loads(first)[0] == f"UMAP of test images at {taps[0]}"
        move_layer_slider(page)
        second = redrawn(page, first)
        assert json.loads(second)[0] == f"UMAP of test images at {taps[1]}"
        page.locator("button.widget-toggle-button", has_text="test_forget").first.click()
        third = redrawn(page, second)
        shown = [visible for _, visible, _ in json.loads(third)[1]]
        assert not all(shown) and any(shown), "one split only: some classes hidden"
    print(f"JupyterLab browser session: {time.perf_counter() - started:.1f} s")


def test_explorer_app_serves_a_finished_run_without_code(shared_run, chromium, tmp_path):
    run, _, _ = shared_run
    notebook = serve.app_notebook(run.root, 0)
    from papermill import inspect_notebook

    def defaults(path: Path) -> dict:
        return {k: ast.literal_eval(v["default"]) for k, v in inspect_notebook(str(path)).items()}

    app = defaults(notebook)
    recorded = json.loads((run.root / "notebooks" / "seed0" / "04_representations.ipynb").read_text())
    used = {**defaults(NOTEBOOKS_DIR / "04_representations.ipynb"), **recorded["metadata"]["papermill"]["parameters"]}
    assert all(app[k] == used[k] for k in serve.APP_PARAMETERS if k != "run_dir"), \
        "the sample of the run's notebook 04, whose embeddings are cached"
    port, token = free_port(), secrets.token_hex(16)
    started = time.perf_counter()
    with serving(serve.explore_command(notebook, port, token, browser=False), port, tmp_path / "voila.log",
                 tmp_path), browser_page(chromium, "explorer-app") as page:
        page.goto(f"http://127.0.0.1:{port}/?token={token}", timeout=240_000)  # cells appear as they finish
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 4", timeout=240_000)
        assert page.locator("text=error when executing").count() == 0
        assert page.locator("text=import ecnb").count() == 0, "no code shown"
        assert_widgets_drawn(page)
        first = figure_state(page)
        move_layer_slider(page)
        assert redrawn(page, first) != first
        attack = figure_state(page, 1)
        assert json.loads(attack)[0].startswith("Relearning attack")
        page.locator("button.widget-toggle-button", has_text="few-shot probe").first.click()
        assert json.loads(redrawn(page, attack, 1))[0].startswith("Few-shot probe per layer")
    print(f"Voila browser session: {time.perf_counter() - started:.1f} s")
