# The study's two commands: `make study` and `make test`. Both set up .venv from nothing first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export NUMBA_CACHE_DIR := $(CURDIR)/.numba_cache
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Where the environment sets PYTHONDONTWRITEBYTECODE, every process compiles each module it imports from source
# again: about 4 s at the start of every notebook kernel, job worker and test worker. Python caches it instead.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup wheelhouse study sweep ship-sweep test bench gpu-check lab explore lock clean

# A folder of wheels to install from instead of the network (`make wheelhouse`): make setup WHEELHOUSE=wheelhouse
WHEELHOUSE ?=
FROM_WHEELHOUSE := $(if $(WHEELHOUSE),--no-index --find-links $(abspath $(WHEELHOUSE)))

setup: $(STAMP)

# uv (from PyPI, pinned in constraints.txt) installs the pinned set in a third of pip's time; pip installs the
# same set where uv cannot. Then numba compiles umap-learn's kernels once.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(FROM_WHEELHOUSE) -c constraints.txt uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) $(FROM_WHEELHOUSE) -c constraints.txt -e '.[dev]' \
		|| $(PY) -m pip install --quiet $(FROM_WHEELHOUSE) -c constraints.txt -e '.[dev]'
	$(PY) -c "from ecnb.embeddings import compile_umap; compile_umap()"
	touch $(STAMP)

# Every wheel of the pinned set (and setuptools, which builds ecnb itself) downloaded once into WHEELHOUSE (default
# wheelhouse/), for a room of machines of the same platform and Python (README, "Installing for a room").
wheelhouse:
	$(PYTHON) -m pip download --quiet --dest $(or $(WHEELHOUSE),wheelhouse) -r constraints.txt 'setuptools>=68'

study: setup
	$(PY) -m ecnb study $(ARGS)

# The default sweep, one study per cell on a local Ray: digits' classes 3, 5 and 8 in the full scope and Fashion-MNIST's
# 0, 4 and 8 with the walkthrough's methods, each x seeds 0 and 1, five retrained models per cell.
sweep: setup
	$(PY) -m ecnb sweep $(ARGS)

# The default sweep, then its tables copied into shipped/sweep (what notebook 05 reads before a sweep of one's own
# exists; a test fails when they were made with other settings than the code's).
ship-sweep: sweep
	$(PY) -m ecnb ship runs/sweep-quick_fashion-digits-forget3_5_8-fashion_mnist-forget0_4_8-seed0_1

# Test files run in parallel, one worker per core, each file whole on one worker (its tests share fixtures) and the
# longest first; the tiny studies that several files share are built once (tests/conftest.py).
test: setup
	$(PY) -m pytest -n auto $(ARGS)

# Wall times, throughput and the issue's performance targets into docs/benchmarks.md (ARGS="--skip-study" to be quick).
bench: setup
	$(PY) scripts/bench.py $(ARGS)

# The GPU path measured once (scripts/gpu_check.py); on a machine with an NVIDIA GPU and Fashion-MNIST offline.
gpu-check: setup
	$(PY) scripts/gpu_check.py --device cuda --out runs/gpu-check-results $(ARGS)

# JupyterLab on 127.0.0.1 over the project (notebooks/ and runs/), as root too (containers).
lab: setup
	$(PY) -m ecnb lab $(ARGS)

# A finished run's explorer as a standalone Voila app on 127.0.0.1 (no code shown): make explore RUN=runs/<name>
RUN ?= runs/quick-digits-forget3
explore: setup
	$(PY) -m ecnb explore $(RUN) $(ARGS)

# Rewrite constraints.txt from the current environment (after changing dependencies in pyproject.toml).
lock: setup
	( sed -n '1,2p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^ecnb' ) > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .numba_cache runs
