"""What a reader of the report sees besides the figures: progress bars as their last state (never a frozen
widget), tables whose cells are not cut, and a header in words."""
from __future__ import annotations

import pandas as pd

import ecnb.verdicts  # noqa: F401  (sets how notebooks show its tables)
from ecnb.progress import epoch_bar, text_bar
from ecnb.study import seeds_line


def test_a_jobs_bar_is_text_on_stdout_that_ends_at_its_last_state(capsys):
    bar = text_bar(total=3, desc="methods", unit="method")
    for _ in range(3):
        bar.update()
    bar.close()
    out, err = capsys.readouterr()
    assert err == "", "stderr reads as an error in a notebook"
    last = out.split("\r")[-1]
    assert "methods: 100%" in last and "3/3" in last


def test_an_epoch_bar_says_nothing_where_no_terminal_reads_it(capsys):
    assert list(epoch_bar(4, "ga")) == [0, 1, 2, 3]
    assert capsys.readouterr() == ("", ""), "captured output is not a tty, like a notebook kernel's"


def test_a_long_verdict_is_shown_whole_in_a_notebook_table():
    verdict = "superficial, keeps retain; output tell, over-resistance tell (resolution 0.21)"
    claims = "ft, ga, rl, neggrad_plus, l1_sparse, salun, scrub, bad_teacher, cu"
    html = pd.DataFrame({"verdict": [verdict], "measured": [claims]})._repr_html_()
    assert verdict in html and claims in html and "..." not in html


def test_the_header_says_which_seeds_in_words():
    assert seeds_line((0,)) == "One seed (0): the table and the notebooks below are its run."
    line = seeds_line((0, 1, 2))
    assert line.startswith("3 seeds (0, 1 and 2):") and line.endswith("the notebooks below are those of seed 0.")
    assert "[" not in line
