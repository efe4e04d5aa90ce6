"""The two scopes: what the walkthrough and the full study run."""
from __future__ import annotations

import pytest

from ecnb import ec, scopes
from ecnb.config import ConfigError, StudyConfig


def test_the_walkthrough_runs_every_baseline_ec_its_depth_ablation_the_variant_and_two_plugins():
    chosen = scopes.selection("walkthrough")
    assert list(chosen.baselines) == ec.baselines()
    assert chosen.plugins == ["ga+ec", "scrub+ec"] and list(chosen.ablations) == ["ec[last]"]
    assert list(chosen.variants) == ec.variant_names() and chosen.variant_plugins == []
    assert chosen.ec_methods == ["ec", "ga+ec", "scrub+ec", "ec[last]", *ec.variant_names()]


def test_the_full_study_adds_every_ablation_and_every_plugin_the_variants_too():
    chosen = scopes.selection("full")
    assert chosen.plugins == [f"{b}+ec" for b in ec.baselines()]
    assert list(chosen.ablations) == ec.ablation_names()
    assert chosen.variant_plugins == [ec.plugin_name(b, v) for v in ec.variant_names() for b in ec.baselines()]
    assert set(scopes.selection("walkthrough").methods) < set(chosen.methods)


def test_given_baselines_and_ablations_replace_the_scopes_and_unknown_names_are_refused():
    chosen = scopes.selection("full", ["ga"], [])
    assert chosen.methods == ["ga", "ec", "ga+ec", *ec.variant_names(), *(f"ga+{v}" for v in ec.variant_names())]
    assert scopes.selection("walkthrough", ["ft"]).plugins == []
    with pytest.raises(ConfigError, match="unknown baseline method 'nope'"):
        scopes.selection("full", ["nope"])
    with pytest.raises(ConfigError, match="unknown scope 'all'"):
        scopes.selection("all")


def test_random_sample_forgetting_leaves_out_what_moves_samples_to_another_class(tmp_path):
    config = StudyConfig.from_options(forget_fraction=0.1, run_dir=str(tmp_path / "run"))
    chosen = scopes.selection("full", config=config)
    assert not chosen.variants and not chosen.variant_plugins
    assert "ec[last]" in chosen.ablations and not any(a.startswith("ec+") for a in chosen.ablations)
