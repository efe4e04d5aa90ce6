"""The study's configuration: profiles, validation of everything a user can set, device choice.

Every value a user can give (study options, notebook parameters injected by papermill) passes through
`StudyConfig.validate`, so bad input stops before any work with one line that names the value and
what would be valid.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

DATASET_CLASSES = {
    "digits": 10,
    "cifar10": 10,
    "cifar100": 100,
    "mnist": 10,
    "fashion_mnist": 10,
    "svhn": 10,
}
MODEL_NAMES = ("smallcnn", "resnet18")
# Per data set, the forget classes the study reports, and the validation tasks': every hyperparameter (of the
# methods and of the attacks) is chosen on tasks that forget a validation class, never by looking at a reported
# one (scripts/tune_*.py). Fashion-MNIST's reported classes are T-shirt/top, coat and bag, two with look-alikes
# and one without; a data set with no entry of its own (CIFAR) is read on the digits' classes.
REPORTED_CLASSES: dict[str, tuple[int, ...]] = {"digits": (3, 5, 8), "fashion_mnist": (0, 4, 8)}
VALIDATION_CLASSES: dict[str, tuple[int, ...]] = {"digits": (1, 2, 4, 7, 9), "fashion_mnist": (1, 2, 5, 7, 9)}


# Each data set's own profile, where it has one: a study or sweep that names a data set and no profile runs with it
# (every other data set runs under the quick profile's settings unless told otherwise).
DATASET_PROFILES = {"digits": "quick", "fashion_mnist": "fashion"}


def profile_for(dataset: str | None) -> str:
    """The profile a study of `dataset` runs with when none is named."""
    return DATASET_PROFILES.get(dataset or "digits", "quick")


def profile_chain(profile: str) -> list[str]:
    """`profile`, the profile it starts from (`base`), that one's, and so on: where every table keyed by profile
    (the methods' defaults, EC's, how conv taps are pooled) finds a setting the profile does not state itself."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    chain = [profile]
    while (base := PROFILES[chain[-1]].get("base")) is not None:
        if base not in PROFILES or base in chain:
            why = "is not a profile" if base not in PROFILES else "makes a circle"
            raise ConfigError(f"profile {chain[-1]!r}: its base {base!r} {why}; valid: {', '.join(PROFILES)}")
        chain.append(base)
    return chain


def fill_from_bases(table: dict[str, Any], derive: Callable[[str, Any], Any] = lambda _profile, entry: entry) -> None:
    """Give each profile that names a base and has no entry of its own in `table` (keyed by profile: the methods'
    defaults, EC's) one made from its base's entry: `derive(profile, base's entry)`, the base's entry itself by
    default. Bases are filled before the profiles built on them, whatever the order of PROFILES."""
    done: set[str] = set()
    for name in PROFILES:
        for profile in reversed(profile_chain(name)[:-1]):
            if profile in done:
                continue
            done.add(profile)
            base = PROFILES[profile]["base"]
            if profile not in table and base in table:
                table[profile] = derive(profile, table[base])


def profile_setting(profile: str, key: str, default: Any = None) -> Any:
    """A profile's optional setting `key` (`sweep_scope`, `max_spatial`, ...), from the first profile of its chain
    that states it."""
    return next((PROFILES[p][key] for p in profile_chain(profile) if key in PROFILES[p]), default)


def sweep_scope(profile: str) -> str:
    """The scope a sweep's cells under `profile` run when none is given."""
    return profile_setting(profile, "sweep_scope", "full")


def reported_classes(dataset: str) -> tuple[int, ...]:
    """The forget classes a study of `dataset` reports by default (a sweep's cells)."""
    return REPORTED_CLASSES.get(dataset, REPORTED_CLASSES["digits"])


def validation_classes(dataset: str) -> tuple[int, ...]:
    """The classes `dataset`'s hyperparameters are chosen on."""
    return VALIDATION_CLASSES.get(dataset, VALIDATION_CLASSES["digits"])

SWEEP_SEEDS = (0, 1)  # the default sweep: the reported classes x these seeds
SWEEP_DATASETS = ("digits", "fashion_mnist")  # the default sweep's data sets, each under its own profile
DEVICES = ("auto", "cpu", "cuda")
# What a study runs (`ecnb.scopes`): the walkthrough a lab needs (the default), or every method, ablation and
# plug-in. The scope chooses which models exist, never how any of them is computed, so it is not part of the
# models' key: the two scopes share one run directory and every model they have in common.
SCOPES = ("walkthrough", "full")
# How many retrained models every verdict is read against (`retrain` and `retrain#1` ...), per scope: the full
# study and sweeps read against five, the walkthrough against what its two-minute budget allows. Like the scope, it
# chooses which models exist, never how one is computed.
POPULATION = {"walkthrough": 3, "full": 5}


class ConfigError(ValueError):
    """Bad user input; the message is one line naming the value and what is valid."""


@dataclass(frozen=True)
class TrainRecipe:
    """How `original` and `retrain` are trained (the same recipe for both)."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = False


ATTACK_METRICS = ("fewshot_probe_accuracy", "relearn_accuracy")


@dataclass(frozen=True)
class AttackSettings:
    """The recovery attacks of docs/study.md, "Metrics", the same for every model of a run.

    The attacker holds `shots` (k) training images of each forgotten class, drawn from D_f, and
    `retain_shots` (m) of each retained class, from D_r; `probe_draws` (R) seeded draws of them. The few-shot
    probe fits a logistic regression (inverse regularisation `probe_c`) on a layer's frozen, pooled features
    of those images and scores the forgotten classes' test images, averaged over the R draws. The relearning
    attack fine-tunes every weight of a copy of the model on each of the first `relearn_draws` draws' images,
    full-batch SGD at `relearn_lr` with `relearn_momentum`, and records the forgotten classes' test accuracy
    after each step of `relearn_steps`, averaged over those draws; the verdicts read the whole curve against
    the retrained models'.
    """

    shots: int
    retain_shots: int
    probe_draws: int
    probe_c: float
    relearn_lr: float
    relearn_momentum: float
    relearn_steps: tuple[int, ...]
    relearn_draws: int = 1

    def validate(self) -> None:
        """One line naming the first value that makes no sense and what is valid."""
        _check_int(self.shots, "attack shots (k)", minimum=1)
        _check_int(self.retain_shots, "attack retain shots (m)", minimum=1)
        _check_int(self.probe_draws, "probe draws (R)", minimum=1)
        _check_int(self.relearn_draws, "relearn draws", minimum=1)
        if self.relearn_draws > self.probe_draws:
            raise ConfigError(f"relearn draws {self.relearn_draws} must be at most the {self.probe_draws} draws of the "
                              "attacker's images (probe draws)")
        for name, value in (("probe C", self.probe_c), ("relearn lr", self.relearn_lr)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ConfigError(f"{name} {value!r} must be a positive number")
        m = self.relearn_momentum
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m < 1:
            raise ConfigError(f"relearn momentum {m!r} must be a number in [0, 1)")
        steps = list(self.relearn_steps)
        if not steps:
            raise ConfigError("the relearn step grid is empty; give increasing step counts such as 0 5 10 20 50")
        for step in steps:
            _check_int(step, "relearn step", minimum=0)
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ConfigError(f"relearn steps {steps} must be strictly increasing, e.g. 0 5 10 20 50")


# Hyperparameters per profile, in one place. `quick` is tuned for the embedded digits on a laptop CPU;
# `paper` follows the SalUn / SCRUB reference recipe for CIFAR with ResNet-18 on a GPU. Every profile states its data
# set, model, training recipe and attacks; one that names a `base` starts from that profile for everything else: the
# methods' and EC's defaults (with what was chosen again for it, `ecnb.unlearn.defaults`, `ecnb.ec`) and the
# optional settings below (`profile_setting`), but not the image caps, which belong to a data set.
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "dataset": "digits",
        "model": "smallcnn",
        # Conv taps are average-pooled to at most `max_spatial` positions per side before CKA and UMAP, unless the
        # input is at most `whole_maps_up_to` pixels wide: the digits (16x16; the largest tap is 16x16x16) keep the
        # whole maps, larger inputs (Fashion-MNIST's 28x28) are pooled to 8x8.
        "max_spatial": 8,
        "whole_maps_up_to": 16,
        # 30 epochs. The training loss of `original` is flat from epoch 12 (0.0017 to 0.0013) and 20 epochs reach the
        # same test accuracy within one image, but retrained models of 20 epochs differ more among themselves: on
        # the validation tasks 43 of 50 passed the verdicts' null test against 47 of 50 at 30 (scripts/null_test.py).
        "train": TrainRecipe(epochs=30, batch_size=64, lr=0.05),
        # Chosen by scripts/tune_attacks.py on the validation tasks (forgetting classes 4 and 1): the best
        # intermediate few-shot probe reads 1.000 in `original` against 0.762 in `retrain`; relearning at
        # step 10 gives 0.812 for a model that hides the class (the original's features under a head trained
        # on D_r alone) against 0.000 for `retrain` (0.862 at step 50). Means over the two tasks.
        "attacks": AttackSettings(shots=3, retain_shots=5, probe_draws=5, probe_c=0.01, relearn_lr=0.03,
                                  relearn_momentum=0.9, relearn_steps=(0, 5, 10, 20, 50), relearn_draws=3),
        # A sweep's scope unless one is given: six full-scope cells take about 70 minutes on two cores.
        "sweep_scope": "full",
    },
    # Fashion-MNIST from Debian's package on a laptop CPU (docs/study.md, "How every setting was chosen"): the small
    # CNN of width 16 on 300 training images per class (a subset fixed by the split seed, whatever the study's seeds;
    # the whole test split, 1,000 images per class, is read); the recipe, the attacks and the baselines' learning rates
    # and epochs chosen on its own validation classes (1, 2, 5, 7, 9), the rest the quick profile's.
    "fashion": {
        "base": "quick",
        "dataset": "fashion_mnist",
        "model": "smallcnn",
        "train_per_class": 300,
        "train": TrainRecipe(epochs=15, batch_size=64, lr=0.05),
        # scripts/tune_attacks.py on all five validation classes (seed 0), ranked by the worst class: with the digits'
        # 3 shots the relearning attack brings back 0.00 and 0.01 of classes 9 and 7 at step 10 in a model that only
        # hides them; 10 shots of the class at C 0.1 bring back at least 0.72 of every class (`retrain`: 0.00). With
        # ten shots a model that never saw the class learns it too from step 20 on, each at its own pace, so the grid
        # stops at step 10 (scripts/null_test.py --up-to 10 20 50, five retrained models per class): read up to step
        # 10, 25 of 25 retrained models pass their null read and a gap of 0.03 to 0.09 can be told from their spread;
        # up to 20 or 50, 19 of 25 pass and the resolution is 0.13 to 0.46.
        "attacks": AttackSettings(shots=10, retain_shots=5, probe_draws=5, probe_c=0.1, relearn_lr=0.03,
                                  relearn_momentum=0.9, relearn_steps=(0, 5, 10), relearn_draws=3),
        # A cell of the walkthrough's methods already takes about 870 s of one core (every model reads 10,000 test
        # images), more than a digits cell of the full scope (700-750 s), so the default sweep runs the walkthrough's
        # methods here to stay near its 90-minute budget; `--scope full` runs every plug-in.
        "sweep_scope": "walkthrough",
    },
    "paper": {
        "dataset": "cifar10",
        "model": "resnet18",
        # ResNet-18's layer1 on CIFAR would otherwise be 64k numbers per image.
        "max_spatial": 4,
        "whole_maps_up_to": 0,
        "train": TrainRecipe(epochs=182, batch_size=256, lr=0.1, augment=True),
        # The quick profile's choice, unchecked at this scale (no validation tasks were run on CIFAR).
        "attacks": AttackSettings(shots=3, retain_shots=5, probe_draws=5, probe_c=0.01, relearn_lr=0.03,
                                  relearn_momentum=0.9, relearn_steps=(0, 5, 10, 20, 50), relearn_draws=3),
    },
}


@dataclass(frozen=True)
class StudyConfig:
    """The resolved configuration of one study; `config.json` in the run directory holds it."""

    profile: str = "quick"
    dataset: str = "digits"
    model: str = "smallcnn"
    forget_classes: tuple[int, ...] = (3,)
    forget_fraction: float | None = None
    seeds: tuple[int, ...] = (0,)
    train: TrainRecipe = field(default_factory=lambda: PROFILES["quick"]["train"])
    device: str = "auto"
    run_dir: str = "runs/quick-digits-forget3"
    attacks: AttackSettings = field(default_factory=lambda: PROFILES["quick"]["attacks"])
    train_per_class: int | None = None  # at most this many training images per class (seeded), or all
    test_per_class: int | None = None  # the same for the test images
    scope: str = "walkthrough"  # which methods the study runs (`SCOPES`)
    # Method hyperparameters changed from the registry's defaults: {method: {name: value}} (`--set`). A
    # model's checkpoint is keyed by its hyperparameters, so a change recomputes only the methods it names.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    population: int = POPULATION["walkthrough"]  # retrained models every verdict is read against (`POPULATION`)
    # What a user brought (`ecnb.user_methods`, `ecnb.user_models`), each file with the sha256 of its content when the
    # study began, so a run directory says which code and which weights it measured: method files {path: sha256}
    # and models unlearned elsewhere {name: {"path": path, "sha256": sha256}}.
    method_files: dict[str, str] = field(default_factory=dict)
    checkpoints: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_options(
        cls,
        profile: str | None = None,
        dataset: str | None = None,
        model: str | None = None,
        forget_classes: list[int] | tuple[int, ...] | int | None = None,
        forget_fraction: float | None = None,
        seeds: list[int] | tuple[int, ...] | int | None = None,
        epochs: int | None = None,
        device: str = "auto",
        run_dir: str | None = None,
        train_per_class: int | None = None,
        test_per_class: int | None = None,
        scope: str = "walkthrough",
        overrides: dict[str, dict[str, Any]] | None = None,
        population: int | None = None,
        method_files: Sequence[str] | None = None,
        checkpoints: Mapping[str, str] | None = None,
        **attacks: Any,
    ) -> "StudyConfig":
        """Fill unset options from the profile (None: the data set's own, `profile_for`), validate everything, and
        name the run directory.

        `population` defaults to the scope's (`POPULATION`); `attacks` overrides fields of the profile's
        `AttackSettings` (None leaves a field as it is). `method_files` (paths) and `checkpoints` ({name: path})
        are recorded with their content's sha256; a file that is not there stops here."""
        if profile is None:
            profile = profile_for(dataset)
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
        defaults = PROFILES[profile]
        dataset = dataset or defaults["dataset"]
        model = model or defaults["model"]
        if forget_fraction is not None and forget_classes is not None:
            raise ConfigError("give either forget classes or a forget fraction, not both")
        if forget_fraction is None and forget_classes is None:
            forget_classes = reported_classes(dataset)[:1]
        classes = _as_int_tuple(forget_classes, "forget class") if forget_fraction is None else ()
        seed_tuple = _as_int_tuple(0 if seeds is None else seeds, "seed")
        train = defaults["train"]
        if epochs is not None:
            _check_int(epochs, "epochs", minimum=1)
            train = dataclasses.replace(train, epochs=int(epochs))
        unknown = sorted(set(attacks) - {f.name for f in dataclasses.fields(AttackSettings)})
        if unknown:
            raise ConfigError(f"unknown attack setting {unknown[0]!r}")
        given = {k: tuple(v) if k == "relearn_steps" and isinstance(v, (list, tuple)) else v
                 for k, v in attacks.items() if v is not None}
        attack_settings = dataclasses.replace(defaults["attacks"], **given)
        # The profile's own cap (Fashion-MNIST's 300 training images per class) unless one is given; 0 reads them all.
        profile_caps = (defaults.get("train_per_class"), defaults.get("test_per_class"))
        given_caps = (train_per_class, test_per_class)
        train_per_class, test_per_class = (p if g is None else (g or None) for g, p in zip(given_caps, profile_caps))
        if run_dir is None:
            what = f"forget{'-'.join(map(str, classes))}" if classes else f"random{forget_fraction}"
            caps = "".join(f"-{name}{n or 'all'}" for name, n, p in (("train", train_per_class, profile_caps[0]),
                                                                     ("test", test_per_class, profile_caps[1])) if n != p)
            run_dir = f"runs/{profile}-{dataset}{caps}-{what}"
        if population is None:
            population = POPULATION.get(scope, POPULATION["walkthrough"])
        files = {path: file_digest(path) for path in _existing(method_files or [], "method file", ".py")}
        checkpoints = checkpoints or {}
        if not isinstance(checkpoints, Mapping):
            raise ConfigError(f"checkpoints {checkpoints!r} must map each name to a file, e.g. {{'mine': 'unlearned.pt'}}")
        paths = _existing(checkpoints.values(), "checkpoint file")
        brought = {name: {"path": path, "sha256": file_digest(path)} for name, path in zip(checkpoints, paths)}
        config = cls(profile, dataset, model, classes, forget_fraction, seed_tuple, train, device, str(run_dir),
                     attack_settings, train_per_class, test_per_class, scope, dict(overrides or {}), population, files,
                     brought)
        config.validate()
        resolve_device(device)  # asking for CUDA on a machine without it stops here, before any work
        return config

    def validate(self) -> None:
        """Raise ConfigError on the first bad value."""
        if self.dataset not in DATASET_CLASSES:
            raise ConfigError(f"unknown dataset {self.dataset!r}; valid: {', '.join(DATASET_CLASSES)}")
        if self.model not in MODEL_NAMES:
            raise ConfigError(f"unknown model {self.model!r}; valid: {', '.join(MODEL_NAMES)}")
        n_classes = DATASET_CLASSES[self.dataset]
        if self.forget_fraction is None:
            if not self.forget_classes:
                raise ConfigError("the forget set is empty: give at least one forget class or a fraction")
            for c in self.forget_classes:
                if not 0 <= c < n_classes:
                    raise ConfigError(
                        f"forget class {c} is out of range for {self.dataset}; valid: 0-{n_classes - 1}"
                    )
            if len(set(self.forget_classes)) != len(self.forget_classes):
                raise ConfigError(f"forget classes {list(self.forget_classes)} repeat a class")
            if len(self.forget_classes) >= n_classes:
                raise ConfigError(f"forgetting all {n_classes} classes leaves nothing to retain")
        else:
            f = self.forget_fraction
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
                raise ConfigError(f"forget fraction {f!r} must be a number strictly between 0 and 1")
        if not self.seeds:
            raise ConfigError("give at least one seed")
        for s in self.seeds:
            check_seed(s)
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds {list(self.seeds)} repeat a seed")
        _check_int(self.train.epochs, "epochs", minimum=1)
        for name in ("train_per_class", "test_per_class"):
            if getattr(self, name) is not None:
                _check_int(getattr(self, name), name.replace("_", " "), minimum=1)
        self.attacks.validate()
        if self.device not in DEVICES:  # only the name: a run made on a GPU still loads on a CPU
            raise ConfigError(f"unknown device {self.device!r}; valid: {', '.join(DEVICES)}")
        if self.scope not in SCOPES:
            raise ConfigError(f"unknown scope {self.scope!r}; valid: {', '.join(SCOPES)}")
        _check_int(self.population, "population (retrained models)", minimum=1)
        if not isinstance(self.overrides, dict):
            raise ConfigError(f"overrides {self.overrides!r} must map method names to their hyperparameters")
        for method, given in self.overrides.items():
            if not isinstance(given, dict):
                raise ConfigError(f"overrides of {method!r} must map hyperparameter names to values, not {given!r}")
        # Whether each method and value exists is the registry's to say, not the configuration's:
        # `ecnb.methods.check_config`, called wherever a study starts.
        if not isinstance(self.method_files, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.method_files.items()):
            raise ConfigError(f"method files {self.method_files!r} must map each file's path to its sha256")
        if not isinstance(self.checkpoints, dict) or not all(
                isinstance(v, dict) and set(v) == {"path", "sha256"} for v in self.checkpoints.values()):
            raise ConfigError(f"checkpoints {self.checkpoints!r} must map each name to its file's path and sha256")

    def cap_option(self, name: str) -> int | None:
        """`train_per_class` or `test_per_class` as `from_options` takes it back: 0 for every image where the
        profile's own default is a cap."""
        value = getattr(self, name)
        return 0 if value is None and PROFILES[self.profile].get(name) is not None else value

    @property
    def scenario(self) -> str:
        return "class" if self.forget_fraction is None else "random"

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudyConfig":
        d = dict(d)
        d["train"] = TrainRecipe(**d["train"])
        d["attacks"] = AttackSettings(**{**d["attacks"], "relearn_steps": tuple(d["attacks"]["relearn_steps"])})
        d["forget_classes"] = tuple(d["forget_classes"])
        d["seeds"] = tuple(d["seeds"])
        config = cls(**d)
        config.validate()
        return config

    def cache_key(self) -> str:
        """What the models depend on: not the device, the run directory, the seeds, the attack settings (a
        run whose attacks change keeps its models, see `Run.open`), the scope, the population's size (each
        retrained model is trained the same way whatever their number) or the overrides (each unlearned
        model's checkpoint is keyed by its own hyperparameters, `ecnb.evaluate`)."""
        d = self.to_dict()
        for k in NOT_IN_CACHE_KEY:
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def check_writable(self) -> None:
        """Fail before any work if the run directory cannot be created or written."""
        path = Path(self.run_dir).absolute()
        probe = path
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise ConfigError(f"run directory {self.run_dir!r} cannot be created: {probe} is not a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise ConfigError(f"run directory {self.run_dir!r} is not writable (no write permission on {probe})")


# What a user brings is keyed model by model too: a method file's digest in its methods' checkpoints, a checkpoint's
# in its model's (`ecnb.evaluate`).
NOT_IN_CACHE_KEY = ("device", "run_dir", "seeds", "attacks", "scope", "overrides", "population", "method_files",
                    "checkpoints")


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """`["ga.lr=0.01", "ec.ec_points=layer2,pool"]` -> {"ga": {"lr": 0.01}, "ec": {"ec_points": "layer2,pool"}}.
    A value is read as a Python literal (a number, a list, a quoted string), else taken as the text given."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not method or not name:
            raise ConfigError(f"--set {item!r} must be method.hyperparameter=value, e.g. ga.lr=0.01")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        out.setdefault(method, {})[name] = value
    return out


def parse_checkpoints(items: list[str]) -> dict[str, str]:
    """`["mine=runs/mine.pt"]` -> {"mine": "runs/mine.pt"}: models unlearned elsewhere, by the name they get here."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--checkpoint {item!r} must be NAME=PATH, e.g. mine=unlearned.pt")
        if name in out:
            raise ConfigError(f"--checkpoint names {name!r} twice")
        out[name] = path
    return out


def file_digest(path: str | Path) -> str:
    """The sha256 of a file's content: what a brought method or model is known by, wherever the file lies."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _existing(paths: Any, what: str, suffix: str | None = None) -> list[str]:
    """Each of `paths` as an absolute path (every process of a study, a Ray cell's too, finds it from its own
    working directory), refusing one that is not a file, or not a `suffix` file."""
    if isinstance(paths, (str, Path)):
        raise ConfigError(f"{what}s must be a list of paths, not the single path {str(paths)!r}")
    out = []
    for given in paths:
        path = Path(given).expanduser().absolute()
        if not path.is_file():
            raise ConfigError(f"{what} {str(given)!r} does not exist" + ("" if not path.exists() else " as a file"))
        if suffix and path.suffix != suffix:
            raise ConfigError(f"{what} {str(given)!r} must be a Python file ({suffix})")
        out.append(str(path))
    return out


def check_seed(seed: Any) -> None:
    """Seeds name directories (`seed<k>`) and seed every generator: a non-negative integer only."""
    _check_int(seed, "seed", minimum=0)


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} {value!r} must be an integer >= {minimum}")


def _as_int_tuple(values: Any, name: str) -> tuple[int, ...]:
    items = values if isinstance(values, (list, tuple)) else [values]
    out = []
    for v in items:
        if isinstance(v, str) and v.lstrip("-").isdigit():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{name} {v!r} must be an integer")
        out.append(v)
    return tuple(out)


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA on a machine without one is an error."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but this machine has no CUDA GPU; valid here: auto, cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)
