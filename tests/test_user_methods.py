"""A method a user brings (issue 36): the worked example through the study (notebooks 01 to 03, in their kernels),
its hyperparameters checked and set like a built-in's, its models keyed by the file's content, the job workers
loading it from the configuration, and every bad method file refused in one line before any work, or failed in one
line while it runs."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import EXAMPLE_METHOD, EXAMPLE_NAME, NB01, NB02, NB03, TINY_SELECTION, TINY_STUDY, cli

import ecnb
from ecnb import evaluate, workers
from ecnb.artifacts import load_checkpoint
from ecnb.config import ConfigError, StudyConfig
from ecnb.methods import study_hparams
from ecnb.unlearn import UnlearnData, UnlearningError, hparams, run_method
from ecnb.user_methods import register_method, source_digest, use_method_files

pytestmark = pytest.mark.usefixtures("registry_restored")
PLUGIN = f"{EXAMPLE_NAME}+ec"


def checkpoint_times(run_dir: Path) -> dict[str, int]:
    return {p.stem: p.stat().st_mtime_ns for p in (run_dir / "seed0" / "models").glob("*.pt")}


@pytest.fixture(scope="module")
def brought(tiny_study, tmp_path_factory):
    """The shared tiny study (tests/conftest.py) run again, notebooks 01 to 03, with the example method file and its
    method among the baselines: the run directory, the exit status and stderr, the checkpoint times before."""
    run_dir = Path(shutil.copytree(tiny_study[0], tmp_path_factory.mktemp("brought") / "study"))
    before = checkpoint_times(run_dir)
    code, stderr = cli(["study", *TINY_STUDY, "--methods", "ga", "scrub", EXAMPLE_NAME, *TINY_SELECTION,
                        "--method-file", str(EXAMPLE_METHOD), "--run-dir", str(run_dir)], notebooks=(NB01, NB02, NB03))
    return run_dir, code, stderr, before


def test_the_example_method_is_run_measured_and_judged_like_a_baseline(brought):
    run_dir, code, stderr, before = brought
    assert code == 0, stderr[-2000:]
    after = checkpoint_times(run_dir)
    assert set(after) - set(before) == {EXAMPLE_NAME, PLUGIN}, "the method and EC plugged into it, nothing else"
    assert {m: after[m] for m in before} == before, "every other model comes from its checkpoint"
    recorded = json.loads((run_dir / "config.json").read_text())["method_files"]
    assert recorded == {str(EXAMPLE_METHOD): hashlib.sha256(EXAMPLE_METHOD.read_bytes()).hexdigest()}

    results = ecnb.read_results(run_dir)
    forget = results[(results["metric"] == "accuracy") & (results["split"] == "forget_train")].set_index("method")["value"]
    assert forget["original"] > 0.9 and forget[EXAMPLE_NAME] < 0.5, "its ascent really forgets"
    assert {"fewshot_probe_accuracy", "relearn_accuracy", "cka_to_original", "wall_time"} <= set(
        results.loc[results["method"] == EXAMPLE_NAME, "metric"]), "every metric and both attacks"

    table, _ = ecnb.study.study_summary(ecnb.Run.load(run_dir))
    for method in (EXAMPLE_NAME, PLUGIN):
        assert table.loc[method, "verdict"].startswith(ecnb.verdicts.DEPTHS), method
    report = (run_dir / "report.html").read_text()
    assert PLUGIN in report and "examples/ascent_with_retain.py" in report, "in the report, with what it does"
    notebook_02 = (run_dir / "notebooks" / "seed0" / NB02).read_text()
    assert "gradient ascent on D_f plus cross-entropy on D_r" in notebook_02, "the kernel registered it from the file"


def test_the_claims_are_read_over_the_packages_own_baselines(brought):
    chosen = ecnb.scopes.selection("walkthrough", config=ecnb.Run.load(brought[0]).config)
    assert EXAMPLE_NAME in chosen.baselines and EXAMPLE_NAME in chosen.plugin_bases, "EC plugs into it in the walkthrough"
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
    (["--method-file", str(EXAMPLE_METHOD.with_suffix(".txt"))], "does not exist"),
]


@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[" ".join(a[-2:]) for a, _ in BAD_OPTIONS])
def test_its_options_are_checked_like_a_builtins(args, message, tmp_path):
    code, stderr = cli(["study", *args, "--run-dir", str(tmp_path / "run")])
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
