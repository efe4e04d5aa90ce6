"""The sweep the repository ships (shipped/sweep): notebook 05 reads it before a sweep of one's own exists,
so it must have been made with the code's current settings."""
from __future__ import annotations

import pandas as pd

from ecnb import shipped, sweep
from ecnb.config import SWEEP_DATASETS, SWEEP_SEEDS


def test_the_shipped_sweep_was_made_with_the_current_settings():
    """Fails after a retune, a changed attack or training recipe or population: `make ship-sweep` makes it again."""
    assert shipped.stale() == []


def test_the_shipped_sweep_holds_what_notebook_05_reads():
    tables = sweep.load(sweep.SHIPPED_DIR)
    made = shipped.record()
    default = sweep.grid(list(SWEEP_DATASETS), None, list(SWEEP_SEEDS))
    assert made["cells"] == [c.name for c in default], "the default sweep's cells: both data sets"
    assert {p: s["population"] for p, s in made["profiles"].items()} == {"quick": 5, "fashion": 5}
    verdicts = tables["verdicts"]
    assert {d: set(v["forget_set"]) for d, v in verdicts.groupby("dataset")} == {
        "digits": {"3", "5", "8"}, "fashion_mnist": {"0", "4", "8"}} and set(verdicts["seed"]) == {0, 1}
    assert set(tables["results"]["metric"]) == set(shipped.KEPT_METRICS)
    assert len(tables["null_tests"]) == 12 and set(tables["claims"]["dataset"]) == {"digits", "fashion_mnist"}
    assert "shipped with the repository" in shipped.label(sweep.SHIPPED_DIR)
    assert isinstance(tables["summary"], pd.DataFrame) and not tables["summary"].empty


def test_the_readmes_findings_are_the_shipped_sweeps():
    """The README's opening quotes no number the shipped tables do not hold: `python -m ecnb ship` writes it."""
    assert shipped.readme_findings() == shipped.findings()
