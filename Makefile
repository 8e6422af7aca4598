# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Keep the AiiDA configuration (profiles, SQLite database, daemon files) inside the checkout.
export AIIDA_PATH := $(CURDIR)/.aiida
DEMO_PROFILE := lifdiff-demo
TORCH_VERSION ?= 2.13.0

.PHONY: demo test test-unit test-lab lab lab-stop lab-status docs lint venv clean-demo

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# pip 23.2 ignores extras such as aiida-core[atomic_tools]: upgrade it first.
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: anything that pulls an unpinned torch would otherwise get a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[tests,ml,docs]'
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

test-unit: venv
	$(BIN)/python -m pytest -v -rs --ignore=tests/lab

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
