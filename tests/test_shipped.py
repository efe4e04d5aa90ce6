"""The sweep the repository ships (shipped/sweep-digits): notebook 05 reads it before a sweep of one's own exists,
so it must have been made with the code's current settings."""
from __future__ import annotations

import pandas as pd

from ecnb import shipped, sweep


def test_the_shipped_sweep_was_made_with_the_current_settings():
    """Fails after a retune, a changed attack or training recipe or population: `make ship-sweep` makes it again."""
    assert shipped.stale() == []


def test_the_shipped_sweep_holds_what_notebook_05_reads():
    tables = sweep.load(sweep.SHIPPED_DIR)
    made = shipped.record()
    assert len(made["cells"]) == 6 and made["population"] == 5
    verdicts = tables["verdicts"]
    assert set(verdicts["forget_set"]) == {"3", "5", "8"} and set(verdicts["seed"]) == {0, 1}
    assert set(tables["results"]["metric"]) == set(shipped.KEPT_METRICS)
    assert len(tables["null_tests"]) == 6 and not tables["claims"].empty
    assert "shipped with the repository" in shipped.label(sweep.SHIPPED_DIR)
    assert isinstance(tables["summary"], pd.DataFrame) and not tables["summary"].empty
