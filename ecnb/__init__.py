"""ecnb: a notebook-driven study of machine unlearning (superficial forgetting and Erase at the Core).

Notebooks need one line, `import ecnb`; the names below are the ones they use.
"""
from . import ec, embeddings, evaluate, explorer, features, metrics, unlearn, viz
from .artifacts import ArtifactError, Run
from .config import ConfigError, StudyConfig, resolve_device
from .data import Dataset, ForgetSplit, forget_split, load_dataset, split_tensors
from .evaluate import reference_rows
from .models import build_model
from .results import read_results, summarize, write_results
from .train import predict, train_reference

__all__ = [
    "ArtifactError", "ConfigError", "Dataset", "ForgetSplit", "Run", "StudyConfig", "build_model", "ec", "evaluate", "features", "unlearn",
    "forget_split", "load_dataset", "metrics", "predict", "read_results", "reference_rows", "resolve_device",
    "split_tensors", "summarize", "train_reference", "viz", "write_results", "embeddings", "explorer",
]
