from __future__ import annotations

import math

import pytest

from ecnb.results import COLUMNS, read_results, result_row, summarize, write_results


def test_rows_are_upserted_not_duplicated(tmp_path):
    write_results(tmp_path, [result_row(0, "ga", "accuracy", 0.5, split="forget_train"),
                             result_row(0, "ga", "cka_to_original", 0.9, split="forget_train", layer="layer1"),
                             result_row(0, "ga", "cka_to_original", 0.8, split="forget_train", layer="layer2")])
    write_results(tmp_path, [result_row(0, "ga", "accuracy", 0.25, split="forget_train")])
    df = read_results(tmp_path)
    assert list(df.columns) == COLUMNS and len(df) == 3
    assert df.loc[df["metric"] == "accuracy", "value"].item() == 0.25
    assert list(df["layer"]) == ["", "layer1", "layer2"], "rows keep their first-written (network) order"


def test_values_roundtrip_exactly(tmp_path):
    write_results(tmp_path, [result_row(0, "m", "accuracy", 1 / 3, split="test_retain")])
    assert read_results(tmp_path)["value"].item() == 1 / 3


def test_non_finite_values_are_refused():
    with pytest.raises(ValueError, match="not finite"):
        result_row(0, "ga", "accuracy", math.nan, split="forget_train")


def test_summary_mean_and_std_over_seeds(tmp_path):
    write_results(tmp_path, [
        result_row(0, "ft", "accuracy", 0.5, split="test_retain"),
        result_row(1, "ft", "accuracy", 0.7, split="test_retain"),
        result_row(0, "original", "accuracy", 1.0, split="test_retain"),
        result_row(1, "original", "accuracy", 1.0, split="test_retain"),
        result_row(0, "ft", "cka_to_original", 0.9, split="test_retain", layer="layer1"),
    ])
    table = summarize(read_results(tmp_path), seeds=[0, 1])
    assert list(table.index) == ["original", "ft"], "references come first"
    assert list(table.columns) == ["accuracy [test_retain]"], "per-layer rows are not whole-model metrics"
    assert table.loc["ft", "accuracy [test_retain]"] == "0.600 ± 0.141"  # std of (0.5, 0.7) with ddof=1
    assert table.loc["original", "accuracy [test_retain]"] == "1.000 ± 0.000"
    assert summarize(read_results(tmp_path), seeds=[0]).loc["ft", "accuracy [test_retain]"] == "0.500"
