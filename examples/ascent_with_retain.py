"""Gradient ascent with a retain term: an unlearning method written outside the package, as a user writes one.

Give the file to the study and the method is run, measured and judged like the built-in baselines: every metric,
both recovery attacks, a verdict against the retrained models, its place in the summary and the report, and
Erase at the Core plugged into it (`ascent_with_retain+ec`):

    make study ARGS="--method-file examples/ascent_with_retain.py"
    make study ARGS="--method-file examples/ascent_with_retain.py --set ascent_with_retain.retain_weight=2"
    make study ARGS="--method-file examples/ascent_with_retain.py --methods ga ascent_with_retain"

What you write is the loss of one optimisation step. The study's driver does the rest: it copies the original
model, draws the minibatches, runs the optimiser (SGD with momentum and weight decay unless you say otherwise),
stops a run whose loss or weights become non-finite, and caches the unlearned model, keyed by this file's content
and the method's hyperparameters (edit the file and the next study computes it again). `ecnb.unlearn`'s docstring
describes every part a method can have: a setup run once (teachers, masks), several phases per epoch, a hook on the
gradients.
"""
import torch
import torch.nn.functional as F

import ecnb
from ecnb.unlearn import NONNEGATIVE


def loss(model: torch.nn.Module, state: None, step: "ecnb.unlearn.Step") -> torch.Tensor:
    """One step: push the cross-entropy of a forget minibatch up (gradient ascent, what `ga` does) while keeping
    that of a retain minibatch down. Plain ascent has nothing holding the other classes in place; the retain term,
    weighted by the hyperparameter `retain_weight`, is what keeps their accuracy."""
    forget = F.cross_entropy(model(step.forget.x), step.forget.y)
    retain = F.cross_entropy(model(step.retain.x), step.retain.y)
    return step.hp["retain_weight"] * retain - forget


ecnb.register_method(
    "ascent_with_retain",
    loss,
    # One pass over the forget set per epoch; each step also gets a retain minibatch.
    over="forget",
    batches="both",
    # Its defaults (the batch sizes, momentum and weight decay are the profile's), and the rule its own
    # hyperparameter is checked by: `--set ascent_with_retain.retain_weight=-1` is refused before any work.
    defaults={"epochs": 5, "lr": 3e-3, "retain_weight": 1.0},
    params={"retain_weight": NONNEGATIVE},
    summary="gradient ascent on D_f plus cross-entropy on D_r, weighted (examples/ascent_with_retain.py)",
)
