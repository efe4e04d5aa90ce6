"""ecnb: a notebook-driven study of machine unlearning (superficial forgetting and Erase at the Core).

Notebooks need one line, `import ecnb`; the names below are the ones they use. They are imported on
first use (PEP 562), so `import ecnb` stays cheap and a script that needs only the training and
measuring modules (the GPU check) never imports plotly, ipywidgets or the Jupyter stack.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

# umap-learn compiles its numba kernels on first use; numba caches those it may in this folder. It is read when numba
# is imported, so it is set with the package, before anything imports umap and before any job worker starts, whose
# environment is then the same whatever the notebook imported (the Makefile sets it too).
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".numba_cache"))

# name -> (module, attribute or None for the module itself)
_EXPORTS: dict[str, tuple[str, str | None]] = {
    **{m: (m, None) for m in ("attacks", "compare", "data", "ec", "embeddings", "evaluate", "explorer", "features", "methods",
                              "metrics", "prose", "scopes", "serve", "shipped", "study", "sweep", "unlearn", "user_methods",
                              "user_models", "verdicts", "viz", "weights")},
    "ArtifactError": ("artifacts", "ArtifactError"),
    "Run": ("artifacts", "Run"),
    "ConfigError": ("config", "ConfigError"),
    "StudyConfig": ("config", "StudyConfig"),
    "resolve_device": ("config", "resolve_device"),
    "Dataset": ("data", "Dataset"),
    "ForgetSplit": ("data", "ForgetSplit"),
    "forget_split": ("data", "forget_split"),
    "load_dataset": ("data", "load_dataset"),
    "split_tensors": ("data", "split_tensors"),
    "run_dataset": ("data", "run_dataset"),
    "reference_rows": ("evaluate", "reference_rows"),
    "build_model": ("models", "build_model"),
    "read_results": ("results", "read_results"),
    "register_method": ("user_methods", "register_method"),
    "summarize": ("results", "summarize"),
    "write_results": ("results", "write_results"),
    "predict": ("train", "predict"),
    "train_reference": ("train", "train_reference"),
    "train_references": ("train", "train_references"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ecnb' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
