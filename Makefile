# The README's two commands: `make reproduce` and `make test`.
# Both bootstrap .venv from requirements.lock when it is absent or older than the lock.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pcrl-installed
KERNEL ?= pcrl-companion
PROFILE ?= demo
DATA_ROOT ?=
PYTEST_ARGS ?=

.PHONY: help venv test lint reproduce mutation lock clean-results

help:
	@echo "make reproduce [PROFILE=demo|smoke|paper] [DATA_ROOT=DIR]  regenerate tables and figures"
	@echo "make test                                                 ruff + pytest (incl. notebooks at smoke)"
	@echo "make mutation                                             mutation testing of the core (slow; not in make test)"

# (Re)install when the venv is missing or the lock / project metadata changed.
$(STAMP): requirements.lock pyproject.toml
	@if [ ! -x "$(PY)" ]; then echo ">> creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); fi
	@echo ">> installing the locked environment (a few minutes the first time)"
	@# pip names each local index folder that lacks a package; those lines are noise.
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock 2>&1 \
	  | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (pcrl-companion)" >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	@# pytest exits 5 when it collects nothing; that is not a failure of the code.
	$(PY) -m pytest $(PYTEST_ARGS) || { rc=$$?; if [ $$rc -eq 5 ]; then echo 'no tests collected'; else exit $$rc; fi; }

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml), then the score per
# module against dev/mutation_equivalents.csv; fails when more than 10 % survive in a module.
# One thread per mutant process: two processes of two threads each on two cores crawl.
mutation: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children $$(nproc)
	$(PY) dev/mutation_score.py

reproduce: $(STAMP)
	$(PY) -m pcrl_lib reproduce --profile $(PROFILE) $(if $(DATA_ROOT),--data-root $(DATA_ROOT),) --kernel $(KERNEL)

# Refresh requirements.lock from the current venv (after changing a direct pin).
lock: $(STAMP)
	@{ echo "# Exact versions tested (Python 3.11, x86_64). Regenerate: make lock. Direct pins mirror environment.yml."; \
	   $(PY) -m pip freeze --exclude-editable | grep -vi '^pcrl'; } > requirements.lock.tmp
	@mv requirements.lock.tmp requirements.lock

clean-results:
	rm -rf results/smoke results/demo
