"""Notebook 04 executed by papermill on a tiny run, and the report it goes into, opened in headless Chromium."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ecnb
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


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, digits):
    """Notebook 01 (2 epochs), `ga` and its metrics, then notebook 04 on a small sample."""
    root = tmp_path_factory.mktemp("explore")
    config = StudyConfig.from_options(epochs=2, run_dir=str(root / "run"))
    executed = [root / "01_train_original.ipynb", root / "04_representations.ipynb"]
    execute_notebook(NOTEBOOKS_DIR / executed[0].name, executed[0], notebook_parameters(config, seed=0))
    run = ecnb.Run.load(config.run_dir)
    split = ecnb.forget_split(run, digits, 0)
    references = {name: ecnb.train_reference(run, digits, split, name, 0, "cpu") for name in ("original", "retrain")}
    ecnb.evaluate.run_methods(run, digits, split, ["ga"], 0, references, "cpu")
    params = {**notebook_parameters(config, seed=0), "n_retain": 60, "n_forget": 20, "n_neighbors": 10}
    execute_notebook(NOTEBOOKS_DIR / executed[1].name, executed[1], params)
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
