"""The conda environment, the lock file and the package list stay in step with pyproject.toml."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("- pip:", 1)[1]
    pip_lines = {m.group(1).strip() for m in re.finditer(r"^\s{6,}- (.+)$", pip_section, re.M)}
    listed = {line for line in pip_lines if not line.startswith(("-c ", "-e "))}
    assert listed == wanted
    assert "python=3.11" in text and "-e .[dev]" in text


def test_lock_file_pins_every_dependency_and_torch():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert _name(requirement) in pins, f"{requirement} is not pinned in constraints.txt"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_every_subpackage_is_in_the_package_list():
    """An installed (not editable) ecnb has only the packages pyproject lists: a new subpackage left out
    would import here and be missing from a wheel."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ecnb").rglob("__init__.py")}
    assert listed == found


def test_notebooks_are_committed_clean():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path.name
        assert not any(c.get("outputs") for c in nb["cells"]), f"{path.name} has outputs"
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name} needs exactly one parameters cell"
        for line in "".join(tagged[0]["source"]).splitlines():
            assert re.fullmatch(r"\w+ = .+", line), f"{path.name}: parameters must be plain assignments: {line}"
