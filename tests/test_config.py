"""Bad input stops before any work: one line naming the value and what is valid, nothing written."""
from __future__ import annotations

import pytest
import torch

from ecnb.cli import main
from ecnb.config import PROFILES, ConfigError, StudyConfig, profile_chain


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.err.strip()


BAD = [
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'; valid: digits, cifar10"),
    (["--model", "vgg"], "unknown model 'vgg'; valid: smallcnn, resnet18"),
    (["--forget-classes", "10"], "forget class 10 is out of range for digits; valid: 0-9"),
    (["--forget-classes", "-1"], "forget class -1 is out of range"),
    (["--forget-fraction", "0"], "forget fraction 0.0 must be a number strictly between 0 and 1"),
    (["--forget-fraction", "1.5"], "forget fraction 1.5 must be a number strictly between 0 and 1"),
    (["--seeds", "-3"], "seed -3 must be an integer >= 0"),
    (["--seeds", "1", "1"], "repeat a seed"),
    (["--epochs", "0"], "epochs 0 must be an integer >= 1"),
    (["--forget-classes", "abc"], "invalid int value: 'abc'"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--profile", "huge"], "invalid choice: 'huge'"),
    (["--dataset", "cifar10"], "dataset 'cifar10' is not in"),
    (["--scope", "everything"], "invalid choice: 'everything'"),
    (["--set", "ga.lrr=0.1"], "ga: unknown hyperparameter 'lrr'; valid: epochs, lr"),
    (["--set", "ga.lr=-1"], "ga: hyperparameter lr=-1 is invalid; valid: a number > 0"),
    (["--set", "ga=0.1"], "--set 'ga=0.1' must be method.hyperparameter=value, e.g. ga.lr=0.01"),
    (["--set", "gd.lr=0.1"], "unknown unlearning method 'gd'; valid: ft, ga"),
    (["--methods", "gd"], "unknown baseline method 'gd'; valid: ft, ga"),
    (["--ablations", "ec[none]"], "unknown ablation 'ec[none]'; valid: ec[last]"),
    (["--population", "0"], "population (retrained models) 0 must be an integer >= 1"),
    (["--relearn-draws", "6"], "relearn draws 6 must be at most the 5 draws of the attacker's images"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_study_options_stop_with_one_line(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECNB_OFFLINE", "1")
    run_dir = tmp_path / "run"
    code, err = run_cli(["study", "--run-dir", str(run_dir), *args], capsys)
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not run_dir.exists(), "nothing may be written for bad input"


def test_offline_dataset_error_says_where_to_put_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECNB_OFFLINE", "1")
    _, err = run_cli(["study", "--dataset", "cifar100", "--run-dir", str(tmp_path / "r")], capsys)
    assert "cifar-100-python" in err and "offline" in err and "data" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_refused(tmp_path, capsys):
    code, err = run_cli(["study", "--device", "cuda", "--run-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and "no CUDA GPU" in err and "valid here: auto, cpu" in err


def test_unwritable_run_dir_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, err = run_cli(["study", "--run-dir", str(blocker / "run")], capsys)
    assert code == 2 and "cannot be created" in err and str(blocker) in err


def test_empty_forget_set_and_both_scenarios_are_refused():
    with pytest.raises(ConfigError, match="forget set is empty"):
        StudyConfig.from_options(forget_classes=[])
    with pytest.raises(ConfigError, match="either forget classes or a forget fraction"):
        StudyConfig.from_options(forget_classes=[1], forget_fraction=0.1)
    with pytest.raises(ConfigError, match="leaves nothing to retain"):
        StudyConfig.from_options(forget_classes=list(range(10)))


def test_notebook_style_parameters_are_validated():
    """papermill injects plain literals; wrong types are caught with the same one-line errors."""
    with pytest.raises(ConfigError, match="seed 'x' must be an integer"):
        StudyConfig.from_options(seeds=["x"])
    with pytest.raises(ConfigError, match="forget fraction True"):
        StudyConfig.from_options(forget_fraction=True)


def test_profile_defaults_and_run_dir_name():
    config = StudyConfig.from_options()
    assert (config.dataset, config.model, config.forget_classes, config.seeds) == ("digits", "smallcnn", (3,), (0,))
    assert config.run_dir == "runs/quick-digits-forget3"
    paper = StudyConfig.from_options(profile="paper", forget_fraction=0.1, device="cpu")
    assert (paper.dataset, paper.model, paper.forget_classes) == ("cifar10", "resnet18", ())
    assert paper.run_dir == "runs/paper-cifar10-random0.1"


def test_cache_key_ignores_device_and_run_dir_but_not_recipe():
    a = StudyConfig.from_options(run_dir="a", device="cpu")
    assert a.cache_key() == StudyConfig.from_options(run_dir="b", device="auto").cache_key()
    same_models = StudyConfig.from_options(run_dir="a", scope="full", overrides={"ga": {"lr": 0.1}})
    assert a.cache_key() == same_models.cache_key(), "a scope or a method's settings never change the references"
    assert StudyConfig.from_dict(same_models.to_dict()) == same_models
    assert a.cache_key() != StudyConfig.from_options(run_dir="a", epochs=5).cache_key()
    assert StudyConfig.from_dict(a.to_dict()) == a


def test_the_population_follows_the_scope_unless_given_and_never_changes_the_models():
    assert StudyConfig.from_options().population == 3 and StudyConfig.from_options(scope="full").population == 5
    given = StudyConfig.from_options(scope="full", population=2)
    assert given.population == 2 and StudyConfig.from_dict(given.to_dict()) == given
    assert given.cache_key() == StudyConfig.from_options().cache_key(), "retrained models are trained the same way"


def test_overrides_are_read_as_literals_and_reach_the_methods_settings():
    from ecnb.config import parse_overrides
    from ecnb.methods import study_hparams

    given = parse_overrides(["ga.lr=0.01", "ec.ec_points=layer2,pool", "ec.ec_weights=[1, 2]", "ga.epochs=3"])
    assert given == {"ga": {"lr": 0.01, "epochs": 3}, "ec": {"ec_points": "layer2,pool", "ec_weights": [1, 2]}}
    config = StudyConfig.from_options(overrides={"ga": {"lr": 0.01}})
    assert study_hparams(config, "ga", 0)["lr"] == 0.01 and study_hparams(config, "rl", 0)["lr"] != 0.01


def test_a_studys_default_forget_class_is_its_data_sets_first_reported_class():
    """Fashion-MNIST's reported classes are 0, 4 and 8: its walkthrough forgets T-shirt/top, never the digits' 3
    (dress, neither reported nor a validation class there)."""
    assert StudyConfig.from_options().forget_classes == (3,)
    assert StudyConfig.from_options(dataset="fashion_mnist").forget_classes == (0,)
    assert StudyConfig.from_options(dataset="fashion_mnist").run_dir == "runs/fashion-fashion_mnist-forget0"
    assert StudyConfig.from_options(profile="quick", dataset="fashion_mnist").run_dir == "runs/quick-fashion_mnist-forget0"
    assert StudyConfig.from_options(dataset="cifar10").forget_classes == (3,), "no classes of its own: the digits'"


def test_a_data_set_named_without_a_profile_runs_with_its_own_profile():
    """Fashion-MNIST has a profile of its own (its recipe, attacks and methods' settings, chosen on its validation
    classes): naming the data set is enough, naming another profile overrides it, and the digits keep `quick`."""
    fashion = StudyConfig.from_options(dataset="fashion_mnist")
    assert fashion.profile == "fashion" and fashion.attacks == PROFILES["fashion"]["attacks"]
    assert fashion.attacks != PROFILES["quick"]["attacks"], "the digits' attacks miss hidden Fashion-MNIST classes"
    assert (fashion.train_per_class, fashion.test_per_class) == (300, None), "300 training images per class, every test image"
    assert StudyConfig.from_options(profile="fashion").dataset == "fashion_mnist"
    assert StudyConfig.from_options().profile == "quick" and StudyConfig.from_options().train_per_class is None
    assert StudyConfig.from_options(profile="quick", dataset="fashion_mnist").train_per_class is None


def test_a_profiles_image_cap_is_replaced_by_a_given_one_and_0_reads_every_image():
    """The run directory names a cap only where it departs from the profile's, so the profile's own runs keep their
    plain names."""
    given = StudyConfig.from_options(dataset="fashion_mnist", train_per_class=100, test_per_class=50)
    assert (given.train_per_class, given.test_per_class) == (100, 50)
    assert given.run_dir == "runs/fashion-fashion_mnist-train100-test50-forget0"
    every = StudyConfig.from_options(dataset="fashion_mnist", train_per_class=0)
    assert every.train_per_class is None and every.run_dir == "runs/fashion-fashion_mnist-trainall-forget0"
    for config in (given, every, StudyConfig.from_options(dataset="fashion_mnist"), StudyConfig.from_options()):
        again = StudyConfig.from_options(profile=config.profile, train_per_class=config.cap_option("train_per_class"),
                                         test_per_class=config.cap_option("test_per_class"))
        assert (again.train_per_class, again.test_per_class) == (config.train_per_class, config.test_per_class), \
            "a notebook given the study's caps as options reads the same images"
    assert StudyConfig.from_options(train_per_class=40).run_dir == "runs/quick-digits-train40-forget3"
    with pytest.raises(ConfigError, match="train per class -3 must be"):
        StudyConfig.from_options(dataset="fashion_mnist", train_per_class=-3)


def test_every_method_has_settings_under_the_fashion_profile():
    """Each built-in method, EC, its ablations, variants and plug-ins run under the fashion profile: a baseline at
    the quick profile's values with Fashion-MNIST's own where they were searched (`FASHION_TUNED`), and each plug-in
    B+ec with B exactly as the profile runs it."""
    from ecnb.ec import baselines, is_ec, plugin_name
    from ecnb.methods import hparams
    from ecnb.unlearn.defaults import FASHION_TUNED, HPARAMS

    assert set(HPARAMS["fashion"]) == set(HPARAMS["quick"])
    for name in HPARAMS["fashion"]:
        hp = hparams(name, "fashion")  # complete and valid
        if not is_ec(name):
            assert hp == hparams(name, "quick", **FASHION_TUNED.get(name, {}))
    for b in baselines():
        base, plugin = hparams(b, "fashion"), hparams(plugin_name(b), "fashion")
        assert {k: plugin[k] for k in base} == base, b


def test_a_profile_that_names_a_base_needs_no_other_table(monkeypatch):
    """Profiles added to `PROFILES` with a `base` and their own data set, model, recipe and attacks (as a researcher
    would add one, in ecnb/config.py) get their base's methods' defaults, EC's, the pooling of conv taps and the
    sweep scope, without an entry in any table keyed by profile; a chain may run through a profile listed after the
    one that names it, and may end at any profile. In a fresh process: `ecnb.unlearn` and `ecnb.ec` fill their tables
    in when they are imported."""
    import subprocess
    import sys

    code = (
        "import ecnb.config as c\n"
        "f, p = c.PROFILES['fashion'], c.PROFILES['paper']\n"
        "c.PROFILES['mine'] = {'base': 'fashion', 'dataset': 'fashion_mnist', 'model': 'smallcnn', "
        "'train': f['train'], 'attacks': f['attacks']}\n"
        "c.PROFILES['kid'] = {'base': 'mid', 'dataset': 'cifar10', 'model': 'resnet18', 'train': p['train'], "
        "'attacks': p['attacks']}\n"
        "c.PROFILES['mid'] = {**c.PROFILES['kid'], 'base': 'paper'}\n"
        "import ecnb.methods as m, ecnb.evaluate as e\n"
        "from ecnb.unlearn.defaults import COMMON_DEFAULTS\n"
        "same = lambda a, b: all(m.hparams(n, a) == m.hparams(n, b) for n in m.HPARAMS[b]) and len(m.HPARAMS[b]) > 40\n"
        "print(c.profile_chain('mine'), same('mine', 'fashion'), c.sweep_scope('mine'), "
        "e.max_spatial('mine', (1, 28, 28)), e.max_spatial('mine', (1, 16, 16)), "
        "COMMON_DEFAULTS['mine'] == COMMON_DEFAULTS['quick'], same('kid', 'paper'), e.max_spatial('kid', (3, 32, 32)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['mine', 'fashion', 'quick'] True walkthrough 8 None True True 4"
    with pytest.raises(ConfigError, match="unknown profile 'nope'; valid: quick, fashion, paper"):
        profile_chain("nope")
    monkeypatch.setitem(PROFILES, "loop", {"base": "loop"})
    with pytest.raises(ConfigError, match="profile 'loop': its base 'loop' makes a circle"):
        profile_chain("loop")
    monkeypatch.setitem(PROFILES, "lost", {"base": "nowhere"})
    with pytest.raises(ConfigError, match="profile 'lost': its base 'nowhere' is not a profile"):
        profile_chain("lost")
