"""Every unlearning method in one registry: the baselines of `ecnb.unlearn` and the Erase at the Core family
(EC, its ablations, variants and plug-ins), which `ecnb.ec` adds to the same table when it is imported. The
baselines know nothing of EC; code that needs the whole registry looks it up here."""
from __future__ import annotations

from . import ec as _ec  # noqa: F401  (registers the EC family in METHODS and HPARAMS)
from .unlearn import HPARAMS, METHODS, get_method, hparams, planned_steps, run_method, table_digest, unlearn, validate

__all__ = ["HPARAMS", "METHODS", "get_method", "hparams", "planned_steps", "run_method", "table_digest", "unlearn",
           "validate"]
