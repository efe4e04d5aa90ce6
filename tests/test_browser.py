"""The study's pages in a real browser (Debian's Chromium): notebook 04 executed by papermill on a tiny run
and the report it goes into; JupyterLab running notebook 04 with live widgets; the Voila explorer app.

Playwright drives the system Chromium (it cannot download browsers of its own here). Screenshots of every
browser session go to `test-artifacts/`, and a failing session names its screenshot.
"""
from __future__ import annotations

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

import ecnb
from ecnb import serve
from ecnb.config import StudyConfig
from ecnb.study import NOTEBOOKS_DIR, PLOTLY_MIME, build_report, execute_notebook, notebook_parameters

METHODS = ["original", "retrain", "ga"]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--hide-scrollbars",
]
# After the page loads, move every figure that has frames to its last one, as its slider would.
ANIMATE_TO_LAST_FRAME = """<script>
window.addEventListener("load", function () {
  document.querySelectorAll(".js-plotly-plot").forEach(function (gd) {
    var frames = gd._transitionData._frames;
    if (!frames.length) return;
    var last = frames[frames.length - 1].name;
    Plotly.animate(gd, [last], {mode: "immediate", frame: {duration: 0, redraw: true}, transition: {duration: 0}})
      .then(function () { gd.setAttribute("data-shown-frame", last); });
  });
});
</script>"""


SMALL_SAMPLE = {"n_retain": 60, "n_forget": 20, "n_neighbors": 10}
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, digits):
    """Notebook 01 (2 epochs), `ga` and the metrics of every model (relearning scored up to step 10), then
    notebook 04 on a small sample, executed where the study puts them. Notebook 04 is a copy saved with
    `interactive = True`, as a person would leave it after JupyterLab: the study must still run it headless."""
    root = tmp_path_factory.mktemp("explore")
    config = StudyConfig.from_options(epochs=2, run_dir=str(root / "run"), relearn_steps=[0, 5, 10])
    executed = [Path(config.run_dir) / "notebooks" / "seed0" / name
                for name in ("01_train_original.ipynb", "04_representations.ipynb")]
    execute_notebook(NOTEBOOKS_DIR / executed[0].name, executed[0], notebook_parameters(config, seed=0))
    run = ecnb.Run.load(config.run_dir)
    split = ecnb.forget_split(run, digits, 0)
    references = {name: ecnb.train_reference(run, digits, split, name, 0, "cpu") for name in ("original", "retrain")}
    ecnb.evaluate.run_methods(run, digits, split, ["ga"], 0, references, "cpu")
    ecnb.evaluate.run_references(run, digits, split, 0, references)
    saved = root / "saved" / executed[1].name
    saved.parent.mkdir()
    source = (NOTEBOOKS_DIR / executed[1].name).read_text()
    saved.write_text(source.replace('"interactive = False', '"interactive = True'))
    assert saved.read_text() != source
    execute_notebook(saved, executed[1], {**notebook_parameters(config, seed=0), **SMALL_SAMPLE})
    return run, executed


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "headless Chromium not found: install the Debian package `chromium` (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def plotly_figures(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    return [o["data"][PLOTLY_MIME] for o in outputs if PLOTLY_MIME in o.get("data", {})]


def browse(chromium: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Chromium on a local page with a fresh profile and 10 s of virtual time for the scripts to finish."""
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args,
           page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def test_notebook_04_caches_embeddings_and_stays_small(tiny_study):
    run, (_, executed) = tiny_study
    taps = ecnb.build_model(run.config.model, 1, 10).taps
    cached = sorted(p.name.split("__")[:2] for p in (run.seed_dir(0) / "embeddings").glob("*.npz"))
    assert cached == sorted([m, tap] for m in METHODS for tap in taps), "one embedding per model and layer"
    embedding, cka = plotly_figures(executed)
    assert [f["name"] for f in embedding["frames"]] == taps
    assert [a["text"] for a in embedding["layout"]["annotations"]] == METHODS
    views = [b["label"] for b in cka["layout"]["updatemenus"][0]["buttons"]]
    assert views == [f"{m} · {s}" for m in ecnb.explorer.CKA_METRICS for s in ecnb.evaluate.CKA_SPLITS]
    text = executed.read_text()
    assert "widgets" not in json.loads(text)["metadata"] and "widget-view" not in text, "no widgets when headless"
    assert "plotly.js v" not in text and executed.stat().st_size < 300_000, "the figures' data, no plotly.js copy"


def test_report_draws_every_figure_offline_in_a_browser(tiny_study, chromium, tmp_path):
    run, executed = tiny_study
    report = build_report(run, executed)
    html = report.read_text()
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=[\"'](https?:)?//", html), "no outside request"
    assert html.count("plotly.js v") == 1, "plotly.js embedded once"
    n_figures = html.count('class="plotly-graph-div"')
    assert n_figures == sum(len(plotly_figures(p)) for p in executed)

    dom = browse(chromium, report, tmp_path / "profile", "--dump-dom").stdout
    assert dom.count('class="plotly-graph-div js-plotly-plot"') == n_figures, "plotly drew every figure"
    assert dom.count('class="main-svg"') >= n_figures
    taps = ecnb.build_model(run.config.model, 1, 10).taps
    assert f'data-unformatted="layer: {taps[0]}"' in dom, "the layer slider opens on the first layer, not playing"

    animated = tmp_path / "animated.html"
    animated.write_text(html.replace("</body>", ANIMATE_TO_LAST_FRAME + "</body>", 1))
    dom = browse(chromium, animated, tmp_path / "profile2", "--dump-dom").stdout
    assert f'data-shown-frame="{taps[-1]}"' in dom and f'data-unformatted="layer: {taps[-1]}"' in dom

    shot = tmp_path / "report.png"
    browse(chromium, report, tmp_path / "profile3", f"--screenshot={shot}", "--window-size=1280,4000")
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200, "a drawn page, not a blank one"
    assert pixels.std() > 20


# --- JupyterLab and the Voila app, driven by Playwright ------------------------------------------------

# The explorer's figure (the first plot inside a widget Output): its title and, per trace, what is shown.
EXPLORER_FIGURE = """(n) => {
  const gd = document.querySelectorAll('.widget-output .js-plotly-plot')[n];
  if (!gd || !gd.layout || !gd.data) return null;
  const title = gd.layout.title && gd.layout.title.text;
  return JSON.stringify([title, gd.data.map(t => [t.name, t.visible === undefined ? true : t.visible, t.x.length])]);
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


def test_jupyterlab_runs_notebook_04_with_live_widgets(tiny_study, chromium, tmp_path):
    run, executed = tiny_study
    root = run.root.parent  # the run's executed notebooks are inside the server's root, as with `make lab`
    params = {**SMALL_SAMPLE, "run_dir": str(run.root), "interactive": True}
    nbformat.write(parameterize_notebook(load_notebook_node(str(NOTEBOOKS_DIR / executed[1].name)), params),
                   root / "explore.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    cmd = [*serve.lab_command(port, token, browser=False, root=root), "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    started = time.perf_counter()
    with serving(cmd, port, tmp_path / "lab.log", tmp_path), browser_page(chromium, "jupyterlab") as page:
        executed_copy = executed[1].relative_to(root).as_posix()
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


def test_explorer_app_serves_a_finished_run_without_code(tiny_study, chromium, tmp_path):
    run, _ = tiny_study
    notebook = serve.app_notebook(run.root, 0)
    injected = "".join(json.loads(notebook.read_text())["cells"][3]["source"])
    assert "n_retain = 60" in injected, "the sample of the run's notebook 04, whose embeddings are cached"
    port, token = free_port(), secrets.token_hex(16)
    started = time.perf_counter()
    with serving(serve.explore_command(notebook, port, token, browser=False), port, tmp_path / "voila.log",
                 tmp_path), browser_page(chromium, "explorer-app") as page:
        page.goto(f"http://127.0.0.1:{port}/?token={token}", timeout=240_000)  # after `load`, the widget models exist
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
