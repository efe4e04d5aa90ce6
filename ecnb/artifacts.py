"""The run directory and its artifacts, each written atomically so a crash leaves it complete or absent.

Layout (docs/study.md, "The results contract"):

    runs/<name>/config.json            the resolved configuration
    runs/<name>/results.csv            tidy results, all seeds
    runs/<name>/seed<k>/split.json     the forget split of seed k
    runs/<name>/seed<k>/attack_set.json  the recovery attacks' images of seed k (`ecnb.attacks`)
    runs/<name>/seed<k>/models/*.pt    checkpoints (state dicts only, loaded with weights_only=True)
    runs/<name>/seed<k>/failures.json  methods that diverged, with why (absent when none did)
    runs/<name>/notebooks/seed<k>/     the executed notebooks
    runs/<name>/report.html            every executed notebook as one offline page
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from .config import ATTACK_METRICS, NOT_IN_CACHE_KEY, ConfigError, StudyConfig, check_seed
from .files import ArtifactError, atomic_write, remove_temporaries  # noqa: F401  (the run directory's writers import them here)
from .results import drop_metrics

OUTCOMES_DIR = "outcomes"


def save_json(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def load_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path} is unreadable ({e}); rerun with --force to recompute it") from e


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """State dict plus plain metadata (strings and numbers), so loading needs no pickled objects."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: torch.save({"state_dict": state, "meta": meta}, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with `weights_only=True`; a corrupted or truncated file raises ArtifactError naming it."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated zip archives
        raise ArtifactError(
            f"checkpoint {path} is corrupted or truncated ({type(e).__name__}); rerun with --force to recompute it"
        ) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ArtifactError(f"checkpoint {path} is not an ecnb checkpoint; rerun with --force to recompute it")
    return ckpt


class Run:
    """A study's run directory: where every artifact of the results contract (docs/study.md) lives."""

    def __init__(self, config: StudyConfig):
        self.config = config
        self.root = Path(config.run_dir)

    @classmethod
    def open(cls, config: StudyConfig, force: bool = False) -> "Run":
        """Create the run directory or reuse it, refusing one made by a different configuration.

        A run whose configuration differs only in its attack settings keeps its models: the previous
        attack images and the attacks' rows are dropped, to be measured again with the new settings.
        `force` deletes the previous artifacts first so everything is recomputed.
        """
        config.validate()
        config.check_writable()
        run = cls(config)
        path = run.root / "config.json"
        if force:
            run.clear()
        elif path.exists():
            old = _load_config(path)
            if old.cache_key() != config.cache_key():
                changed = _diff(old.to_dict(), config.to_dict())
                raise ConfigError(
                    f"run directory {run.root} holds a study with a different configuration ({changed}); "
                    "use another --run-dir, or --force to start it afresh"
                )
            if old.attacks != config.attacks:
                run.drop_attacks()
            seeds = tuple(sorted(set(old.seeds) | set(config.seeds)))
            config = StudyConfig.from_dict({**config.to_dict(), "seeds": seeds})
        run.root.mkdir(parents=True, exist_ok=True)
        save_json(path, config.to_dict())
        return run

    @classmethod
    def load(cls, run_dir: str | Path) -> "Run":
        """The run that notebook 01 (or the study command) created in `run_dir`."""
        path = Path(run_dir) / "config.json"
        if not path.exists():
            raise ConfigError(
                f"{run_dir} has no config.json: run notebook 01 (or `python -m ecnb study`) with this run_dir first"
            )
        config = _load_config(path)
        return cls(StudyConfig.from_dict({**config.to_dict(), "run_dir": str(run_dir)}))

    def drop_attacks(self) -> None:
        """Remove what earlier attack settings measured: every seed's attack images, the attacks' rows and the
        per-image outcomes the verdicts resample."""
        for seed_dir in self.root.glob("seed*"):
            (seed_dir / "attack_set.json").unlink(missing_ok=True)
            shutil.rmtree(seed_dir / OUTCOMES_DIR, ignore_errors=True)
        drop_metrics(self.root, ATTACK_METRICS)

    def seed_dir(self, seed: int) -> Path:
        """Where seed `seed`'s artifacts live; a bad seed (say, a notebook parameter of -1) is refused here."""
        check_seed(seed)
        return self.root / f"seed{seed}"

    def checkpoint_path(self, method: str, seed: int) -> Path:
        return self.seed_dir(seed) / "models" / f"{method}.pt"

    def outcomes_path(self, method: str, seed: int) -> Path:
        """Where `method`'s per-image outcomes (`ecnb.outcomes`) live."""
        return self.seed_dir(seed) / OUTCOMES_DIR / f"{method}.npz"

    def failures(self, seed: int) -> dict[str, str]:
        """The methods of `seed` whose unlearning diverged, each with its error message."""
        path = self.seed_dir(seed) / "failures.json"
        return load_json(path) if path.exists() else {}

    def record_failure(self, seed: int, method: str, message: str | None) -> None:
        """Note that `method` failed with `message`, or (None) that its last attempt succeeded."""
        failures = self.failures(seed)
        if failures.get(method) == message:
            return
        if message is None:
            del failures[method]
        else:
            failures[method] = message
        save_json(self.seed_dir(seed) / "failures.json", failures)

    def failure_lines(self) -> list[str]:
        """One line per failed method and seed, for the study's summary and report."""
        return [f"{method} (seed {seed}) failed: {message}"
                for seed in self.config.seeds for method, message in self.failures(seed).items()]

    def clear(self) -> None:
        """Remove every artifact this package writes, leaving unrelated files alone."""
        if not self.root.exists():
            return
        for child in self.root.iterdir():
            if child.name.startswith("seed") or child.name == "notebooks":
                shutil.rmtree(child)
            elif child.name in ("config.json", "results.csv", "report.html"):
                child.unlink()


def _load_config(path: Path) -> StudyConfig:
    """`config.json` as a StudyConfig; a file of another shape is an ArtifactError naming it (a bad value
    in the right shape stays the ConfigError that says which)."""
    stored = load_json(path)
    try:
        return StudyConfig.from_dict(stored)
    except ConfigError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{path} is not an ecnb configuration ({e!r}); rerun with --force to recompute it") from e


def _diff(old: dict, new: dict, prefix: str = "") -> str:
    parts = []
    for key in sorted(set(old) | set(new)):
        if key in NOT_IN_CACHE_KEY:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _diff(a, b, f"{prefix}{key}.")
            if inner:
                parts.append(inner)
        elif a != b:
            parts.append(f"{prefix}{key}: {a} -> {b}")
    return ", ".join(parts)
