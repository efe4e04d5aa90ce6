"""Unlearning baselines (docs/study.md, "Methods"): one registry, one signature, one shared driver loop.

`unlearn(name, model, data, config) -> model` runs the method called `name` on a deep copy of the
original `model`; `run_method` does the same and also returns `UnlearnStats` (wall time, losses).
`config` is a plain mapping of hyperparameters, built by `hparams(name, profile, seed, **overrides)`
from the single table `HPARAMS[profile][method]`.

The subpackage, in the order a method is built and run: `core` (the data, a step, a phase, the `Method`
spec, hyperparameter rules, `compose`), `baselines` (each method's loss and the `METHODS` registry),
`defaults` (`HPARAMS` and the checks against it), `driver` (the one loop every method runs in). EC and
its plug-ins live in `ecnb.ec`, which adds them to the same registry when imported; nothing here imports it
(`ecnb.methods` is the whole registry).

How a method is written. Each method is a `Method` spec that the shared driver runs:
- `setup(model, data, hp) -> state` builds what the loss needs once (teacher copies, a random-label
  table, the SalUn mask); `state` is whatever object the method likes.
- `phases(epoch, hp) -> (Phase, ...)` says which phases run in an epoch, in order. A `Phase` makes one
  shuffled pass over its `over` set (forget or retain), and each of its steps receives a forget
  and/or a retain minibatch (`batches`); a set that is not the one being passed over cycles through
  reshuffled passes of its own. Most methods have one phase every epoch; RL and SalUn make a pass
  over D_f then one over D_r (SalUn's CIFAR-10 code); SCRUB runs a `max` phase over D_f then a
  `min` phase over D_r for its first `msteps` epochs and only `min` afterwards (the SCRUB paper's
  schedule), so its alternation is plain data the driver understands. A phase runs at the learning
  rate `hp["lr"]`, or at the hyperparameter its `lr` names, on the method's optimizer or, when it names
  one, on a fresh optimizer of its own (a plug-in's EC epochs); a method runs `epochs(hp)` epochs
  (`hp["epochs"]` unless it says otherwise: a plug-in adds the EC term's own epochs, `ecnb.ec`).
- `loss(model, state, step) -> Tensor` is the objective of one step; `step` carries the epoch, the
  phase, the step counters and the minibatches. Methods with several phases look at `step.phase`.
- `grad_hook(model, state, step)` optionally edits the loss's gradients between backward and the
  update (SalUn's mask). Weight decay is added to the gradients *after* the hook, as the optimiser's own
  weight decay is in SalUn's code: a masked-out weight gets no loss gradient but still decays.
Adding a method to the package is one function and one line: write `def _my_loss(model, state, step)` and add
`"my": Method("my", _my_loss, every_epoch(Phase("train", "retain", "retain")))` to `METHODS`
(with its default hyperparameters in `HPARAMS` and its extra hyperparameters' `Rule`s in `params`). A user of
the package brings one without editing it: `ecnb.register_method(...)` in a method file (`ecnb.user_methods`).

How composition works (the Erase-at-the-Core plug-in, `B+ec`): `compose(base, name, term, setup)`
returns a new `Method` whose loss is `base.loss(model, state.base, step) + term(model, state.extra,
step)`, over exactly the base's phases and number of optimisation steps; every phase is widened to
receive both a forget and a retain minibatch so the added term always has both. The base's setup,
grad hook and hyperparameters are kept, so nothing of the base is copied.

Choices common to all methods, as in the published code: the student trains in train mode (BatchNorm
uses batch statistics and updates its running statistics from the batches it sees). For `ga`, which
sees only D_f, this matters: the running statistics drift towards the forget set's, as in SalUn's GA
code, and it is the single-class batch statistics that give GA a gradient at all; with BatchNorm in
eval mode the original's forget loss is ~1e-3 and ascent barely moves it (measured on digits). Frozen
teachers run in eval mode; SGD with momentum (Adam for Bad Teacher, as its code) and a constant learning
rate (the reference schedules never decay within the reference epoch counts). Losses are computed under `ecnb.train.autocast`
(bf16 on CUDA). The loss is accumulated on the device and read once per epoch, when a non-finite
loss or weight raises `UnlearningError` naming the method, epoch and step.
"""
from .baselines import (
    METHODS,
    TAMPER_RESISTANT,
    RandomLabels,
    Saliency,
    Teachers,
    contrastive_unlearning_loss,
    random_labels,
    random_teacher,
    saliency_mask,
    weight_distance_term,
)
from .core import (
    COMMON,
    FRACTION,
    NONNEGATIVE,
    POSITIVE,
    Batch,
    ChoiceRule,
    ComposedState,
    Method,
    Phase,
    Rule,
    Step,
    UnlearnData,
    UnlearningError,
    compose,
    every_epoch,
)
from .defaults import COMMON_DEFAULTS, HPARAMS, get_method, hparams, table_digest, validate
from .driver import UnlearnStats, make_optimizer, planned_steps, run_method, unlearn

__all__ = [
    "METHODS",
    "TAMPER_RESISTANT",
    "RandomLabels",
    "Saliency",
    "Teachers",
    "contrastive_unlearning_loss",
    "random_labels",
    "random_teacher",
    "saliency_mask",
    "weight_distance_term",
    "COMMON",
    "FRACTION",
    "NONNEGATIVE",
    "POSITIVE",
    "Batch",
    "ChoiceRule",
    "ComposedState",
    "Method",
    "Phase",
    "Rule",
    "Step",
    "UnlearnData",
    "UnlearningError",
    "compose",
    "every_epoch",
    "COMMON_DEFAULTS",
    "HPARAMS",
    "get_method",
    "hparams",
    "table_digest",
    "validate",
    "UnlearnStats",
    "make_optimizer",
    "planned_steps",
    "run_method",
    "unlearn",
]
