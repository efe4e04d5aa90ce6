"""The per-image outcomes a verdict resamples: kept beside each model's rows, complete or not at all."""
from __future__ import annotations

import numpy as np
import pytest

import ecnb
from ecnb.config import StudyConfig
from ecnb.outcomes import Outcomes, load_outcomes, remove_outcomes, save_outcomes


def example() -> Outcomes:
    rng = np.random.default_rng(0)
    return Outcomes(rng.random((3, 5, 40)) < 0.5, (0, 5, 10, 20, 50), rng.random((5, 4, 40)) < 0.5,
                    ("layer1", "layer2", "layer3", "pool"), rng.random(20), rng.random(100) < 0.9)


def test_outcomes_round_trip_and_a_damaged_file_reads_as_missing(tmp_path):
    run = ecnb.Run.open(StudyConfig.from_options(run_dir=str(tmp_path)))
    o = example()
    path = save_outcomes(run, "ec[last]", 0, o)
    back = load_outcomes(run, "ec[last]", 0)
    assert np.array_equal(back.relearn, o.relearn) and back.steps == o.steps and back.taps == o.taps
    assert np.array_equal(back.forget_top, o.forget_top) and np.array_equal(back.retain_correct, o.retain_correct)
    path.write_bytes(path.read_bytes()[:100])
    assert load_outcomes(run, "ec[last]", 0) is None, "a truncated file is not half-read"
    save_outcomes(run, "ec", 0, o)
    remove_outcomes(run, 0, "ec[last]")
    assert run.outcomes_path("ec", 0).exists(), "names are compared exactly, never as glob patterns"
    remove_outcomes(run)
    assert not run.outcomes_path("ec", 0).exists()


def test_outcomes_that_do_not_fit_together_are_refused():
    o = example()
    with pytest.raises(ValueError, match="one relearning outcome per grid step"):
        Outcomes(o.relearn, (0, 5, 10), o.fewshot, o.taps, o.forget_top, o.retain_correct)
    with pytest.raises(ValueError, match="the same test_forget images"):
        Outcomes(o.relearn[:, :, :30], o.steps, o.fewshot, o.taps, o.forget_top, o.retain_correct)


def test_changed_attack_settings_drop_every_outcome(tmp_path):
    config = StudyConfig.from_options(epochs=1, run_dir=str(tmp_path))
    run = ecnb.Run.open(config)
    save_outcomes(run, "ga", 0, example())
    ecnb.Run.open(StudyConfig.from_options(epochs=1, run_dir=str(tmp_path), relearn_draws=2))
    assert not run.outcomes_path("ga", 0).exists()
