"""Methods a user brings without editing the package: `register_method`, which a *method file* calls, and the
loading of the method files a study is given (`--method-file`; notebook 01's `method_files`).

A method file is ordinary Python that calls `ecnb.register_method(...)` once per method it defines
(`examples/ascent_with_retain.py`). The method joins the one registry (`ecnb.unlearn.METHODS`, its defaults in
`HPARAMS` for every profile) and so gets what a built-in baseline gets: the shared driver, hyperparameters checked
by the same rules and settable with `--set`, its checkpoint cache, every metric and verdict, and EC plugged into
it (`<name>+ec`, `<name>+ec+soft`).

Why files and not a function registered in one process: a study runs in several (the command, one notebook kernel
per notebook, the job workers, a Ray worker per sweep cell), and each must run the same code. So the study records
each file's path and content digest in its configuration, and every process loads the files its configuration
names before it looks a method up (`ecnb.methods`). Loading is idempotent; a file whose content changed replaces
its methods. A model computed by a file's method is keyed by that content as well as by its hyperparameters
(`source_digest`), so an edit recomputes it and its plug-ins, and the same content at another path does not.

A file that cannot be loaded (it does not import, raises, registers a name that is taken, or nothing) stops the
study before any work with one `ConfigError` line. A method whose loss (or setup, or gradient hook) raises while
it runs fails like a method that diverges: one line, recorded in the seed's `failures.json`, the others go on.
"""
from __future__ import annotations

import functools
import importlib.util
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ec
from .config import ConfigError, file_digest
from .results import is_reference
from .unlearn import COMMON_DEFAULTS, HPARAMS, METHODS, Method, Phase, UnlearningError, every_epoch, validate
from .unlearn.core import Batches, GradHook, LossFn, Optimizer, PhaseFn, SetupFn, Split

# A brought name is a file name (its checkpoint), the left side of `--set NAME.PARAM=VALUE` and of a plug-in
# (`NAME+ec`): lower-case letters, digits and underscores.
NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
NAME_RULE = "lower-case letters, digits and underscores, starting with a letter"


@dataclass
class _File:
    """A method file as this process loaded it: its content's digest and the methods it registered."""

    digest: str
    names: list[str] = field(default_factory=list)


_LOADED: dict[str, _File] = {}  # path -> the file as loaded
_LOADING: list[tuple[str, _File]] = []  # the file being run now (register_method adds to it)
_SOURCE: dict[str, str] = {}  # a brought method or one of its plug-ins -> the digest of the file that defines it


def check_name(name: Any, what: str) -> None:
    """A name a user gives (a method's, a checkpoint's) must be well formed and not taken."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{what} name {name!r} is invalid; valid: {NAME_RULE}")
    if is_reference(name) or name in METHODS:
        owner = next((path for path, f in [*_LOADED.items(), *_LOADING] if name in f.names), None)
        whose = ("a reference model" if is_reference(name) else f"a method of {owner}" if owner
                 else "a built-in method")
        raise ConfigError(f"{what} name {name!r} is taken ({whose}); choose another")


def register_method(
    name: str,
    loss: LossFn,
    *,
    defaults: Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
    over: Split = "retain",
    batches: Batches = "both",
    phases: PhaseFn | None = None,
    setup: SetupFn | None = None,
    grad_hook: GradHook | None = None,
    optimizer: Optimizer = "sgd",
    summary: str = "",
) -> Method:
    """Register the unlearning method `name`, from a method file (see the module's docstring).

    `loss(model, state, step)` returns the scalar to minimise in one step: `step.forget` and `step.retain` are
    minibatches (`.x`, `.y`), `step.hp` the hyperparameters, `state` what `setup(model, data, hp)` built (None
    without one). Each epoch makes one pass over `over` (`"forget"` or `"retain"`), each step given the
    minibatches `batches` names (`"forget"`, `"retain"` or `"both"`); `phases(epoch, hp)` replaces that with a
    schedule of `ecnb.unlearn.Phase`s. `defaults` gives `epochs`, `lr` and every hyperparameter of `params`
    (name -> rule, e.g. `ecnb.unlearn.POSITIVE`); batch sizes, momentum and weight decay default to the
    profile's. `grad_hook(model, state, step)` may edit the gradients before each update; `optimizer` is
    `"sgd"` or `"adam"`. `ecnb.unlearn` describes every part in full.
    """
    if not _LOADING:
        raise ConfigError("ecnb.register_method is called from a method file, which every process of a study loads: "
                          "put the call in a .py file and give it with --method-file (in notebook 01: method_files)")
    check_name(name, "method")
    rules = dict(params or {})
    for key, rule in rules.items():
        if not callable(getattr(rule, "check", None)):
            raise ConfigError(f"method {name!r}: params[{key!r}] must be a rule such as ecnb.unlearn.POSITIVE or "
                              f"ecnb.unlearn.Rule(float, 0, 1), not {rule!r}")
    for value, valid, what in ((over, ("forget", "retain"), "over"), (batches, ("forget", "retain", "both"), "batches"),
                               (optimizer, ("sgd", "adam"), "optimizer")):
        if value not in valid:
            raise ConfigError(f"method {name!r}: {what}={value!r} is invalid; valid: {', '.join(valid)}")
    missing = [key for key in ("epochs", "lr", *rules) if key not in defaults]
    if missing:
        raise ConfigError(f"method {name!r}: defaults must give {', '.join(missing)}")
    own_setup = {"setup": _guarded(name, "setup", setup)} if setup else {}
    schedule = _guarded(name, "phases", phases) if phases else every_epoch(Phase("train", over, batches))
    method = Method(name, _guarded(name, "loss", loss), schedule,
                    grad_hook=_guarded(name, "gradient hook", grad_hook) if grad_hook else None, params=rules,
                    optimizer=optimizer, summary=summary or f"brought by {Path(_LOADING[-1][0]).name}", **own_setup)
    METHODS[name] = method
    _LOADING[-1][1].names.append(name)  # removed with the file's other methods if anything below refuses it
    for profile, common in COMMON_DEFAULTS.items():
        HPARAMS[profile][name] = {**common, **defaults}
        validate(name, {**HPARAMS[profile][name], "seed": 0})
    ec.register()  # its plug-ins, `<name>+ec` and `<name>+<variant>`
    return method


def _guarded(name: str, what: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` of a user's method, its exceptions turned into an UnlearningError that names the method and the line
    of the method file: the study then records the method as failed, in one line, and goes on with the others."""
    source = _LOADING[-1][0]

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except UnlearningError:
            raise
        except Exception as e:
            raise UnlearningError(f"unlearning method {name!r} failed in its {what}: {_one_line(e, source)}") from e

    return call


def _one_line(e: BaseException, path: str) -> str:
    """`ZeroDivisionError: division by zero (line 12 of mine.py)`: an exception raised by a method file's code."""
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
    if isinstance(e, SyntaxError) and e.filename == path:
        lines.append(e.lineno)
    text = (str(e).strip().splitlines() or [""])[0] if not isinstance(e, SyntaxError) else e.msg
    where = f" (line {lines[-1]} of {Path(path).name})" if lines else ""
    return f"{type(e).__name__}{': ' + text if text else ''}{where}"


def load_method_file(path: str | Path) -> list[str]:
    """Run the method file at `path` in this process, unless it already ran with the same content, and return the
    names of the methods it registers. A file whose content changed replaces the methods it registered before;
    one that cannot be loaded leaves the registry as it was and raises a one-line ConfigError."""
    path = str(Path(path).absolute())
    if not Path(path).is_file():
        raise ConfigError(f"method file {path} does not exist")
    digest = file_digest(path)
    if path in _LOADED and _LOADED[path].digest == digest:
        return list(_LOADED[path].names)
    if path in _LOADED:
        _unregister(_LOADED.pop(path).names)
    loading = _File(digest)
    module_name = f"ecnb_method_file_{digest[:16]}"  # a module of its own: dataclasses in the file need one
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    _LOADING.append((path, loading))
    try:
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        if not loading.names:
            raise ConfigError(f"method file {path} registers no method: call ecnb.register_method(...) in it")
    except ConfigError as e:
        _unregister(loading.names)
        raise ConfigError(str(e) if str(e).startswith(f"method file {path}") else f"method file {path}: {e}") from None
    except (Exception, SystemExit) as e:
        _unregister(loading.names)
        raise ConfigError(f"method file {path} failed to load: {_one_line(e, path)}") from None
    finally:
        _LOADING.pop()
    _LOADED[path] = loading
    for name in loading.names:
        _SOURCE.update(dict.fromkeys(_family(name), digest))
    return list(loading.names)


def use_method_files(paths: Iterable[str | Path]) -> None:
    """Make the method files at `paths` the ones this process's registry holds: each is loaded (`load_method_file`),
    and a file loaded before that is not among them is let go with its methods, so that one process that meets
    two studies (a notebook kernel, a test) holds the methods of the one it works on, and a moved file does not
    clash with itself."""
    keep = [str(Path(p).absolute()) for p in paths]
    for path in [p for p in _LOADED if p not in keep]:
        _unregister(_LOADED.pop(path).names)
    for path in keep:
        load_method_file(path)


def _family(name: str) -> list[str]:
    """A method and the plug-ins EC makes of it."""
    return [name, *(ec.plugin_name(name, variant) for variant in ["ec", *ec.VARIANTS])]


def _unregister(names: list[str]) -> None:
    for name in names:
        for member in _family(name):
            METHODS.pop(member, None)
            _SOURCE.pop(member, None)
            for table in HPARAMS.values():
                table.pop(member, None)


def source_digest(name: str) -> str | None:
    """The digest of the method file that defines method `name` (or the method it plugs into), None for a built-in:
    what its model's checkpoint is keyed by, beside its hyperparameters."""
    return _SOURCE.get(name)


def methods_of(path: str | Path) -> list[str]:
    """The methods the method file at `path` registered when this process loaded it."""
    loaded = _LOADED.get(str(Path(path).absolute()))
    return list(loaded.names) if loaded else []
