"""What a study runs, in two scopes: the *walkthrough* (the default) and the *full* study.

The walkthrough is what a 90-minute lab needs, in about two minutes on a 2-core laptop CPU: `original` and
`retrain`, every baseline, `ec`, one depth ablation (`ec[last]`: does depth matter?), the EC variant beyond
the paper, and the plug-ins `B+ec` of two baselines (and of every method a user brings), enough for notebook 03
to show what a plug-in does. The full study adds every ablation (the variant's included) and every plug-in, the
variant's `B+variant` too; a sweep's plug-in claims are read over the plug-ins its cells' scope runs (each profile
names the scope its sweeps run: digits' the full one). A scope only chooses which models exist: a model is
computed the same way in both, so the two share a run directory and every checkpoint they have in common.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .config import SCOPES, ConfigError, StudyConfig
from .ec import ablation_names, plugin_name, variant_names
from .methods import brought_methods, builtin_baselines, for_scenario

# The walkthrough's plug-ins: two baselines that forget by different means (gradient ascent, a teacher's
# distillation) and are quick to unlearn; the full study plugs EC into every baseline.
WALKTHROUGH_PLUGINS = ("ga", "scrub")
# The walkthrough's one ablation: does depth matter?
DEPTH_ABLATION = "ec[last]"


@dataclass(frozen=True)
class Selection:
    """The methods of one study: the baselines (notebook 02: the package's, a user's methods, models unlearned
    elsewhere), and for notebook 03 `ec`, the plug-ins of `plugin_bases`, the ablations, and the variants with the
    plug-ins of `variant_bases`."""

    scope: str
    baselines: tuple[str, ...]
    plugin_bases: tuple[str, ...]
    ablations: tuple[str, ...]
    variants: tuple[str, ...]
    variant_bases: tuple[str, ...] = ()
    # What the user brought, among `baselines`: methods from method files and models unlearned elsewhere (those
    # have no plug-in). Read like every baseline, but never counted in the study's claims.
    brought: tuple[str, ...] = ()

    def claimed(self, names: Sequence[str]) -> list[str]:
        """Those of `names` (baselines, plug-in bases) the study's claims are read over: the package's own, so what a
        user brings never changes a claim."""
        return [n for n in names if n not in self.brought]

    @property
    def plugins(self) -> list[str]:
        """`B+ec` for every baseline B of `plugin_bases`."""
        return [plugin_name(b) for b in self.plugin_bases]

    @property
    def variant_plugins(self) -> list[str]:
        """`B+variant` for every variant and every baseline of `variant_bases`."""
        return [plugin_name(b, v) for v in self.variants for b in self.variant_bases]

    @property
    def ec_methods(self) -> list[str]:
        """What notebook 03 unlearns: `ec`, its plug-ins, the ablations, the variants and their plug-ins."""
        return ["ec", *self.plugins, *self.ablations, *self.variants, *self.variant_plugins]

    @property
    def methods(self) -> list[str]:
        """Every method of the study, in the order the notebooks meet them (references not included)."""
        return [*self.baselines, *self.ec_methods]


def selection(scope: str = "walkthrough", methods: Sequence[str] | None = None, ablations: Sequence[str] | None = None,
              config: StudyConfig | None = None) -> Selection:
    """The methods of `scope`, with the baselines (`methods`) or ablations given explicitly where not None.
    With a `config`, the methods of its method files count as baselines (EC plugs into each of them, in the
    walkthrough too), its checkpoints are measured beside the baselines, and the methods its forgetting scenario
    cannot run are left out (`ecnb.methods.for_scenario`)."""
    if scope not in SCOPES:
        raise ConfigError(f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
    own = brought_methods(config) if config is not None else []
    valid_baselines = [*builtin_baselines(), *own]
    for given, valid, what in ((methods, valid_baselines, "baseline method"), (ablations, ablation_names(), "ablation")):
        for name in given or []:
            if name not in valid:
                raise ConfigError(f"unknown {what} {name!r}; valid: {', '.join(valid)}")
    variants = variant_names()
    chosen = list(valid_baselines if methods is None else methods)
    if scope == "full":
        bases, default_ablations = chosen, ablation_names()
    else:
        bases = [*(b for b in WALKTHROUGH_PLUGINS if b in chosen), *(b for b in chosen if b in own)]
        default_ablations = [DEPTH_ABLATION]
    picked = list(default_ablations if ablations is None else ablations)
    if config is not None:
        variants, picked = for_scenario(variants, config), for_scenario(picked, config)
    # The variant's plug-ins, 10 s of the walkthrough's two minutes, are read over cells: the full scope runs them.
    variant_bases = bases if scope == "full" else []
    checkpoints = tuple(config.checkpoints) if config is not None else ()
    return Selection(scope, (*chosen, *checkpoints), tuple(bases), tuple(picked), tuple(variants), tuple(variant_bases),
                     (*(b for b in chosen if b in own), *checkpoints))
