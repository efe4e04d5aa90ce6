"""Screenshots of a study's report, one set per section, to read every figure as a reader of the report sees it.

    python scripts/screenshots.py [REPORT] [--out DIR] [--width 1400] [--chunk 1800] [--figures] [--layer NAME]

REPORT defaults to runs/quick-digits-forget3/report.html, the default walkthrough's report (`make study`). The
report's sections are its first-level headings: the header with the summary table, then each notebook from its title
to the next one. Each is written as DIR/<NN>-<slug>-<k>.png (DIR defaults to test-artifacts/screenshots), cut into
pieces at most --chunk pixels high so that an image viewer shows them at full size; every figure is drawn first.
--figures also writes each figure alone, DIR/<NN>-<slug>-fig<k>.png; --layer moves every figure with a slider over
layers (notebook 04's embeddings) to that layer first (docs/report.png is notebook 04's first figure at layer3).

Playwright's Python package drives the system Chromium (`shutil.which("chromium")`, the Debian package `chromium`),
as tests/test_browser.py does: Playwright cannot download a browser here.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPORT = ROOT / "runs" / "quick-digits-forget3" / "report.html"
DEFAULT_OUT = ROOT / "test-artifacts" / "screenshots"
# Every first-level heading: its text, where it starts and where the next one starts (page pixels).
SECTIONS = """() => {
  const heads = [...document.querySelectorAll('h1')];
  const top = h => h.getBoundingClientRect().top + window.scrollY;
  const end = document.documentElement.scrollHeight;
  return heads.map((h, i) => [h.textContent.replace('¶', '').trim(), top(h), i + 1 < heads.length ? top(heads[i + 1]) : end]);
}"""
# Every figure with frames (a slider over layers) shown at one frame, as its slider would.
TO_FRAME = """(name) => Promise.all([...document.querySelectorAll('.js-plotly-plot')]
  .filter(gd => gd._transitionData && gd._transitionData._frames.some(f => f.name === name))
  .map(gd => Plotly.animate(gd, [name], {mode: "immediate", frame: {duration: 0, redraw: true}, transition: {duration: 0}})))"""
ALL_DRAWN = """() => document.querySelectorAll('.js-plotly-plot .main-svg').length
                     >= document.querySelectorAll('.plotly-graph-div').length"""


def slug(index: int, heading: str) -> str:
    """`01-what-forgetting-should-look-like` for the heading `01 · What forgetting should look like` (the report's
    own title, first, is the header: `00-header`)."""
    if index == 0:
        return "00-header"
    words = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
    return words if re.match(r"\d\d-", words) else f"{index:02d}-{words}"


def capture(report: Path, out: Path, width: int, chunk: int, figures: bool = False, layer: str | None = None) -> list[Path]:
    """Every section of `report` as PNGs in `out` (and each figure alone with `figures`, at `layer` where a figure has
    a slider over layers); the paths written."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("no system Chromium: install the Debian package `chromium`")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000})
            page.goto(report.resolve().as_uri(), wait_until="load")
            page.wait_for_function(ALL_DRAWN, timeout=120_000)
            if layer is not None:
                page.evaluate(TO_FRAME, layer)
            plots = page.locator(".js-plotly-plot")
            tops = [box["y"] for box in (plots.nth(j).bounding_box() for j in range(plots.count()))]
            scroll = page.evaluate("() => window.scrollY")
            for i, (heading, top, end) in enumerate(page.evaluate(SECTIONS)):
                name = slug(i, heading)
                for k, y in enumerate(range(int(top), int(end), chunk), start=1):
                    path = out / f"{name}-{k}.png"
                    page.screenshot(path=path, full_page=True,
                                    clip={"x": 0, "y": y, "width": width, "height": min(chunk, int(end) - y)})
                    written.append(path)
                inside = [j for j, t in enumerate(tops) if top <= t + scroll < end] if figures else []
                for k, j in enumerate(inside, start=1):
                    path = out / f"{name}-fig{k}.png"
                    plots.nth(j).screenshot(path=path)
                    written.append(path)
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", nargs="?", type=Path, default=DEFAULT_REPORT)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--width", type=int, default=1400, help="the browser window's width in pixels")
    parser.add_argument("--chunk", type=int, default=1800, help="the most pixels of height in one PNG")
    parser.add_argument("--figures", action="store_true", help="also each figure alone")
    parser.add_argument("--layer", help="show figures with a slider over layers at this layer (e.g. layer3)")
    args = parser.parse_args(argv)
    if not args.report.exists():
        print(f"{args.report} does not exist: run `make study` first (or name a report)", file=sys.stderr)
        return 2
    for path in capture(args.report, args.out, args.width, args.chunk, args.figures, args.layer):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
