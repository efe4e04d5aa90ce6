"""Your own method, your own model (issue 36).

The worked example method file and a checkpoint saved by a few lines of user code go through the study together
(notebooks 01 to 03, in their kernels) and come out measured and judged like the built-in methods. Then: the
method's hyperparameters are checked and set like a built-in's, its models are keyed by the file's content, the job
workers load it from the configuration; the model is keyed by its file's sha256; every bad method file and every bad
checkpoint is refused in one line before any work, and a method that fails while it runs fails in one line."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import EXAMPLE_METHOD, EXAMPLE_NAME, NB01, NB02, NB03, TINY_SELECTION, TINY_STUDY, cli

import ecnb
from ecnb import evaluate, workers
from ecnb.artifacts import load_checkpoint
from ecnb.config import ConfigError, StudyConfig
from ecnb.evaluate import CLASS_METRICS, METHOD_METRICS
from ecnb.methods import study_hparams
from ecnb.unlearn import UnlearnData, UnlearningError, hparams, run_method
from ecnb.user_methods import register_method, source_digest, use_method_files

pytestmark = pytest.mark.usefixtures("registry_restored")
PLUGIN = f"{EXAMPLE_NAME}+ec"
MINE = "mine"  # the model unlearned elsewhere


def checkpoint_times(run_dir: Path) -> dict[str, int]:
    return {p.stem: p.stat().st_mtime_ns for p in (run_dir / "seed0" / "models").glob("*.pt")}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unlearned_elsewhere(run_dir: Path, path: Path, steps: int = 10) -> Path:
    """What a user's own code does: load the run's `original`, take a few steps of gradient ascent on the forget
    set, save the state dict."""
    run = ecnb.Run.load(run_dir)
    ds = ecnb.run_dataset(run)
    x, y = ecnb.split_tensors(ds, ecnb.forget_split(run, ds, 0))["forget_train"]
    model = ecnb.build_model("smallcnn", 1, 10)
    model.load_state_dict(torch.load(run_dir / "seed0" / "models" / "original.pt", weights_only=True)["state_dict"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        (-F.cross_entropy(model(x), y)).backward()
        optimizer.step()
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def brought(tiny_study, tmp_path_factory):
    """The shared tiny study (tests/conftest.py) run again, notebooks 01 to 03, with the example method file's method
    among the baselines and a model unlearned elsewhere: the run directory, the exit status and stderr, the checkpoint
    times before, the user's checkpoint file."""
    root = tmp_path_factory.mktemp("brought")
    run_dir = Path(shutil.copytree(tiny_study[0], root / "study"))
    before = checkpoint_times(run_dir)
    checkpoint = unlearned_elsewhere(run_dir, root / "mine.pt")
    code, stderr = cli(["study", *TINY_STUDY, "--methods", "ga", "scrub", EXAMPLE_NAME, *TINY_SELECTION,
                        "--method-file", str(EXAMPLE_METHOD), "--checkpoint", f"{MINE}={checkpoint}",
                        "--run-dir", str(run_dir)], notebooks=(NB01, NB02, NB03))
    return run_dir, code, stderr, before, checkpoint


def forget_accuracy(run_dir: Path) -> dict[str, float]:
    results = ecnb.read_results(run_dir)
    rows = results[(results["metric"] == "accuracy") & (results["split"] == "forget_train")]
    return dict(zip(rows["method"], rows["value"]))


def test_the_example_method_is_run_measured_and_judged_like_a_baseline(brought):
    run_dir, code, stderr, before, _ = brought
    assert code == 0, stderr[-2000:]
    after = checkpoint_times(run_dir)
    assert set(after) - set(before) == {EXAMPLE_NAME, PLUGIN, MINE}, "the method, EC plugged into it, the model"
    assert {m: after[m] for m in before} == before, "every other model comes from its checkpoint"
    recorded = json.loads((run_dir / "config.json").read_text())["method_files"]
    assert recorded == {str(EXAMPLE_METHOD): sha256(EXAMPLE_METHOD)}

    forget = forget_accuracy(run_dir)
    assert forget["original"] > 0.9 and forget[EXAMPLE_NAME] < 0.5, "its ascent really forgets"
    results = ecnb.read_results(run_dir)
    assert METHOD_METRICS | CLASS_METRICS <= set(results.loc[results["method"] == EXAMPLE_NAME, "metric"]), \
        "every metric and both attacks"

    table, _ = ecnb.study.study_summary(ecnb.Run.load(run_dir))
    for method in (EXAMPLE_NAME, PLUGIN):
        assert table.loc[method, "verdict"].startswith(ecnb.verdicts.DEPTHS), method
    report = (run_dir / "report.html").read_text()
    assert PLUGIN in report and "examples/ascent_with_retain.py" in report, "in the report, with what it does"
    notebook_02 = (run_dir / "notebooks" / "seed0" / NB02).read_text()
    assert "gradient ascent on D_f plus cross-entropy on D_r" in notebook_02, "the kernel registered it from the file"


def test_a_model_unlearned_elsewhere_is_measured_and_judged_like_a_method(brought):
    run_dir, code, stderr, _, checkpoint = brought
    assert code == 0, stderr[-2000:]
    recorded = json.loads((run_dir / "config.json").read_text())["checkpoints"]
    assert recorded == {MINE: {"path": str(checkpoint), "sha256": sha256(checkpoint)}}
    assert json.loads(load_checkpoint(run_dir / "seed0" / "models" / f"{MINE}.pt")["meta"]["key"])["checkpoint"] == \
        sha256(checkpoint), "its model in the run is keyed by the file's sha256"
    results = ecnb.read_results(run_dir)
    metrics = set(results.loc[results["method"] == MINE, "metric"])
    assert (METHOD_METRICS - {"wall_time"}) | CLASS_METRICS <= metrics and "wall_time" not in metrics, \
        "every metric and both attacks, and no made-up wall time"
    assert forget_accuracy(run_dir)[MINE] < 0.5, "the user's ascent forgot, and the study saw it"
    table, _ = ecnb.study.study_summary(ecnb.Run.load(run_dir))
    assert table.loc[MINE, "verdict"].startswith(ecnb.verdicts.DEPTHS)
    notebook_02 = (run_dir / "notebooks" / "seed0" / NB02).read_text()
    assert "unlearned elsewhere" in notebook_02 and "its wall time is unknown" in notebook_02
    assert not (run_dir / "seed0" / "models" / f"{MINE}+ec.pt").exists(), "a model has no loss to plug EC into"


def test_a_new_file_under_the_name_is_measured_again_and_a_changed_one_refused(brought, tmp_path):
    run_dir = Path(shutil.copytree(brought[0], tmp_path / "run", ignore=shutil.ignore_patterns("notebooks")))
    new = unlearned_elsewhere(run_dir, tmp_path / "new.pt", steps=3)
    run = ecnb.Run.load(run_dir)
    run = ecnb.Run(dataclasses.replace(run.config, checkpoints={MINE: {"path": str(new), "sha256": sha256(new)}}))
    ds = ecnb.run_dataset(run)
    split = ecnb.forget_split(run, ds, 0)
    stored = run.checkpoint_path(MINE, 0)
    before = stored.stat().st_mtime_ns
    model, wall_time = evaluate.unlearn_or_load(run, ds, split, MINE, 0, None, "cpu")
    assert stored.stat().st_mtime_ns != before and wall_time is None
    expected = torch.load(new, weights_only=True)
    assert all(torch.equal(v.cpu(), expected[k]) for k, v in model.state_dict().items()), "the new file's weights"

    stored.unlink()
    torch.save({k: v + 1 for k, v in expected.items()}, new)  # changed after the study recorded it
    with pytest.raises(ConfigError, match=f"checkpoint {MINE} .* changed since the study began"):
        evaluate.unlearn_or_load(run, ds, split, MINE, 0, None, "cpu")


def test_the_claims_are_read_over_the_packages_own_baselines(brought):
    chosen = ecnb.scopes.selection("walkthrough", config=ecnb.Run.load(brought[0]).config)
    assert EXAMPLE_NAME in chosen.baselines and EXAMPLE_NAME in chosen.plugin_bases, "EC plugs into it in the walkthrough"
    assert MINE in chosen.baselines and MINE not in chosen.plugin_bases
    assert chosen.claimed(chosen.baselines) == ecnb.methods.builtin_baselines()
    assert EXAMPLE_NAME not in chosen.claimed(chosen.plugin_bases)


def test_its_hyperparameters_are_set_like_a_builtins(tmp_path):
    config = StudyConfig.from_options(method_files=[str(EXAMPLE_METHOD)], run_dir=str(tmp_path),
                                      overrides={EXAMPLE_NAME: {"retain_weight": 2.5, "epochs": 1}})
    ecnb.methods.check_config(config)
    hp = study_hparams(config, EXAMPLE_NAME, 0)
    assert (hp["retain_weight"], hp["epochs"], hp["lr"]) == (2.5, 1, 3e-3)
    assert hp["batch_size"] == hparams("ga")["batch_size"], "the profile's common settings"
    assert study_hparams(config, PLUGIN, 0)["ec_epochs"] == study_hparams(config, "ga+ec", 0)["ec_epochs"]


def test_an_edit_recomputes_its_models_and_the_same_content_elsewhere_does_not(brought, tmp_path):
    run_dir = Path(shutil.copytree(brought[0], tmp_path / "run", ignore=shutil.ignore_patterns("notebooks")))
    moved = tmp_path / "mine.py"
    shutil.copy(EXAMPLE_METHOD, moved)
    run = ecnb.Run.load(run_dir)
    run = ecnb.Run(dataclasses.replace(run.config, method_files={str(moved): "recorded when the study began"}))
    ds = ecnb.run_dataset(run)
    split = ecnb.forget_split(run, ds, 0)
    original = ecnb.train_reference(run, ds, split, "original", 0, "cpu")
    checkpoint = run.checkpoint_path(EXAMPLE_NAME, 0)
    before = checkpoint.stat().st_mtime_ns

    evaluate.unlearn_or_load(run, ds, split, EXAMPLE_NAME, 0, original, "cpu")
    assert checkpoint.stat().st_mtime_ns == before, "the same content at another path is the same method"
    moved.write_text(moved.read_text() + "\n# an edit: the same loss, new content\n")
    evaluate.unlearn_or_load(run, ds, split, EXAMPLE_NAME, 0, original, "cpu")
    assert checkpoint.stat().st_mtime_ns != before, "an edit recomputes it"
    edited = hashlib.sha256(moved.read_bytes()).hexdigest()
    assert json.loads(load_checkpoint(checkpoint)["meta"]["key"])["code"] == edited
    assert source_digest(PLUGIN) == edited, "and its plug-in, which is keyed by the same content"


def test_job_workers_load_the_method_file_from_the_configuration(tmp_path):
    """Two spawned job workers (`ecnb.workers`, as `evaluate.run_methods` starts them) have loaded nothing: given the
    study's configuration, as every job of a study is, they read the method's settings from the file."""
    config = StudyConfig.from_options(method_files=[str(EXAMPLE_METHOD)], run_dir=str(tmp_path),
                                      overrides={EXAMPLE_NAME: {"retain_weight": 0.5}})
    args = [(config, EXAMPLE_NAME, 0), (config, PLUGIN, 0)]
    in_workers = [hp for _, hp in workers.run_jobs(study_hparams, args, 2)]
    assert in_workers == [study_hparams(*a) for a in args]
    assert in_workers[0]["retain_weight"] == 0.5 and "ec_weights" in in_workers[1]


LOSS = "def loss(model, state, step):\n    return F.cross_entropy(model(step.retain.x), step.retain.y)\n"


def method_file(body: str, name: str = "mine") -> str:
    """A method file that registers `name` with the loss above unless `body` says otherwise."""
    return ("import torch\nimport torch.nn.functional as F\nimport ecnb\n" + LOSS + body.replace("NAME", repr(name))
            + "\n")


REGISTER = 'ecnb.register_method(NAME, loss, defaults={"epochs": 1, "lr": 0.01})'
BAD_FILES = [
    ("missing", None, "method file '{path}' does not exist"),
    ("syntax", "def loss(:\n", "failed to load: SyntaxError: invalid syntax (line 1 of bad.py)"),
    ("import", "import not_a_module_of_anyone\n",
     "failed to load: ModuleNotFoundError: No module named 'not_a_module_of_anyone' (line 1 of bad.py)"),
    ("raises", method_file("1 / 0"), "failed to load: ZeroDivisionError: division by zero (line 6 of bad.py)"),
    ("builtin name", method_file(REGISTER, "ga"), "method name 'ga' is taken (a built-in method); choose another"),
    ("reference name", method_file(REGISTER, "retrain"), "method name 'retrain' is taken (a reference model)"),
    ("bad name", method_file(REGISTER, "My-Method"), "method name 'My-Method' is invalid; valid: lower-case letters"),
    ("twice", method_file(REGISTER + "\n" + REGISTER), "method name 'mine' is taken (a method of {path})"),
    ("nothing", "x = 1\n", "registers no method: call ecnb.register_method(...) in it"),
    ("no lr", method_file('ecnb.register_method(NAME, loss, defaults={"epochs": 1})'), "method 'mine': defaults must give lr"),
    ("unknown setting", method_file('ecnb.register_method(NAME, loss, defaults={"epochs": 1, "lr": 0.1, "tau": 2})'),
     "mine: unknown hyperparameter 'tau'; valid: epochs, lr"),
    ("bad value", method_file('ecnb.register_method(NAME, loss, defaults={"epochs": 0, "lr": 0.1})'),
     "mine: hyperparameter epochs=0 is invalid; valid: an integer >= 1"),
    ("bad rule", method_file('ecnb.register_method(NAME, loss, defaults={"epochs": 1, "lr": 0.1, "w": 1}, params={"w": 1})'),
     "method 'mine': params['w'] must be a rule such as ecnb.unlearn.POSITIVE"),
]


@pytest.mark.parametrize("content,message", [(c, m) for _, c, m in BAD_FILES], ids=[i for i, _, _ in BAD_FILES])
def test_a_bad_method_file_is_refused_in_one_line_before_any_work(content, message, tmp_path, capsys):
    path = tmp_path / "bad.py"
    if content is not None:
        path.write_text(content)
    run_dir = tmp_path / "run"
    code, stderr = cli(["study", "--method-file", str(path), "--run-dir", str(run_dir)])
    assert code == 2
    assert stderr.startswith("ecnb: error: ") and message.format(path=path) in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not run_dir.exists(), "nothing may be written for bad input"
    assert "mine" not in ecnb.methods.METHODS and "mine+ec" not in ecnb.methods.METHODS, "nothing half registered"


BAD_OPTIONS = [
    (["--method-file", str(EXAMPLE_METHOD), "--set", f"{EXAMPLE_NAME}.retain_weight=-1"],
     f"{EXAMPLE_NAME}: hyperparameter retain_weight=-1 is invalid; valid: a number >= 0"),
    (["--method-file", str(EXAMPLE_METHOD), "--set", f"{EXAMPLE_NAME}.retain_wieght=1"],
     f"{EXAMPLE_NAME}: unknown hyperparameter 'retain_wieght'; valid: epochs, lr"),
    (["--set", f"{EXAMPLE_NAME}.lr=0.1"], f"unknown unlearning method '{EXAMPLE_NAME}'"),
    (["--methods", EXAMPLE_NAME], f"unknown baseline method '{EXAMPLE_NAME}'; valid: ft, ga"),
    (["--method-file", str(EXAMPLE_METHOD.parent.parent / "README.md")], "README.md' must be a Python file (.py)"),
]


@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[" ".join(a[-2:]) for a, _ in BAD_OPTIONS])
def test_its_options_are_checked_like_a_builtins(args, message, tmp_path):
    code, stderr = cli(["study", *args, "--run-dir", str(tmp_path / "run")])
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "run").exists()


def _write(kind: str, path: Path) -> None:
    """A checkpoint file that is not one of the study's model (digits: one input channel, ten classes)."""
    if kind == "text":
        path.write_text("weights, honestly")
    elif kind == "pickled model":
        torch.save(ecnb.build_model("smallcnn", 1, 10), path)
    elif kind == "list":
        torch.save([torch.zeros(3)], path)
    else:
        model = {"resnet18": ("resnet18", 1, 10), "five classes": ("smallcnn", 1, 5), "rgb": ("smallcnn", 3, 10)}[kind]
        torch.save(ecnb.build_model(*model).state_dict(), path)


BAD_CHECKPOINTS = [
    ("resnet18", "is not a smallcnn, the study's model: 48 of smallcnn's tensors are missing (e.g. 'stages.layer1.0.weight')"),
    ("five classes", "has 5 classes; the study's digits has 10"),
    ("rgb", "does not fit the study's smallcnn for digits: 'stages.layer1.0.weight' has shape (16, 3, 3, 3), not "
            "(16, 1, 3, 3)"),
    ("pickled model", "cannot be read with weights_only=True (UnpicklingError): save the model's state dict"),
    ("text", "cannot be read with weights_only=True (UnpicklingError)"),
    ("list", "holds a list, not a state dict of tensors"),
]


@pytest.mark.parametrize("kind,message", BAD_CHECKPOINTS, ids=[k for k, _ in BAD_CHECKPOINTS])
def test_a_checkpoint_that_is_not_the_studys_model_is_refused_in_one_line_before_any_work(kind, message, tmp_path):
    path = tmp_path / "theirs.pt"
    _write(kind, path)
    code, stderr = cli(["study", "--checkpoint", f"theirs={path}", "--run-dir", str(tmp_path / "run")])
    assert code == 2 and stderr.startswith(f"ecnb: error: checkpoint theirs ({path}) "), stderr
    assert message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("given,message", [
    ("mine", "--checkpoint 'mine' must be NAME=PATH, e.g. mine=unlearned.pt"),
    ("mine=nowhere.pt", "checkpoint file 'nowhere.pt' does not exist"),
    ("ga={file}", "checkpoint name 'ga' is taken (a built-in method); choose another"),
    ("retrain#1={file}", "checkpoint name 'retrain#1' is invalid; valid: lower-case letters"),
    (f"{EXAMPLE_NAME}={{file}}", f"checkpoint name '{EXAMPLE_NAME}' is taken (a method of {EXAMPLE_METHOD})"),
], ids=["no path", "no file", "built-in name", "reference name", "a brought method's name"])
def test_a_checkpoints_name_and_file_are_checked_before_any_work(given, message, brought, tmp_path):
    code, stderr = cli(["study", "--method-file", str(EXAMPLE_METHOD), "--checkpoint",
                        given.format(file=brought[4]), "--run-dir", str(tmp_path / "run")])
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "run").exists()


def test_register_method_belongs_in_a_method_file():
    with pytest.raises(ConfigError, match="is called from a method file"):
        register_method("mine", lambda model, state, step: None, defaults={"epochs": 1, "lr": 0.1})


RUNTIME = [
    ("not scalar", "return F.cross_entropy(model(step.retain.x), step.retain.y, reduction='none')",
     "its loss must be a scalar tensor (one number per step), not a tensor of shape (8,)"),
    ("no gradient", "return torch.tensor(1.0)", "its loss does not depend on the model's weights (no gradient)"),
    ("raises", "return step.hp['missing']", "failed in its loss: KeyError: 'missing' (line 5 of"),
    ("non-finite", "return model(step.retain.x).sum() * float('inf')", "diverged: the loss became non-finite at epoch 1/1"),
]


@pytest.mark.parametrize("body,message", [(b, m) for _, b, m in RUNTIME], ids=[i for i, _, _ in RUNTIME])
def test_a_method_that_fails_while_it_runs_is_an_unlearning_error_naming_it(body, message, tmp_path):
    """An UnlearningError is what the study records as a failed method, in one line, the others going on (as for a
    method that diverges: tests/test_reliability.py)."""
    path = tmp_path / "failing.py"
    path.write_text(f"import torch\nimport torch.nn.functional as F\nimport ecnb\ndef loss(model, state, step):\n"
                    f"    {body}\necnb.register_method('failing', loss, defaults={{'epochs': 1, 'lr': 0.1, "
                    f"'batch_size': 8, 'forget_batch_size': 8}})\n")
    use_method_files([path])
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 1, 16, 16, generator=generator), torch.arange(24) % 10
    data = UnlearnData(x[:8], y[:8], x[8:], y[8:], 10, (0,), torch.device("cpu"))
    with pytest.raises(UnlearningError, match="^unlearning method 'failing'") as info:
        run_method("failing", ecnb.build_model("smallcnn", 1, 10), data, hparams("failing"))
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1
