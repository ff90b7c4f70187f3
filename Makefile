# mediagrid: the two set-up commands are `make lab` (the cluster on this machine) and
# `make test` (everything CI runs). See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all deps venv wheels dev test test-unit test-control test-e2e lint-py typecheck bench clean
all: test

deps:
	bash scripts/host-deps.sh

# The control plane, and the dev cluster (control/dev: make dev, the loopback tests), which
# is never shipped: it reads the nginx role from this checkout.
$(VENV)/.installed: requirements-dev.txt control/pyproject.toml control/dev/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -e 'control[server]' -e control/dev
	touch $@

venv: $(VENV)/.installed

## wheels: the control plane and its dependencies as wheels (and one archive of them,
## build/wheels.tar, which the mediagrid role ships), for nodes without registry access. Reproducible (fixed timestamps, pinned dependencies): same sources, same bytes,
## so a second `make lab` changes nothing on the nodes.
WHEELS := build/wheels
$(WHEELS)/.built: $(VENV)/.installed $(shell find control/mediagrid -type f -not -name '*.pyc') requirements-dev.txt
	rm -rf $(WHEELS) build/wheels.tar
	SOURCE_DATE_EPOCH=315532800 $(PY) -m pip wheel -q -c requirements-dev.txt -w $(WHEELS) './control[server]'
	tar --sort=name --mtime=@315532800 --owner=0 --group=0 --numeric-owner \
	    -C $(WHEELS) -cf build/wheels.tar $$(cd $(WHEELS) && ls *.whl)
	touch $@

wheels: $(WHEELS)/.built

# Every Python file of the repository (ruff.toml; venvs and build output excluded).
lint-py: venv
	$(VENV)/bin/ruff check --extend-exclude '.venv*,build' .
	$(VENV)/bin/ruff format --check --extend-exclude '.venv*,build' .

## test-unit: validation, authentication, errors and the API contract through Flask's test
## client, no MariaDB or nginx (seconds)
test-unit: venv
	$(VENV)/bin/pytest control/tests/unit -q -rs -p no:cacheprovider

## typecheck: mypy over control/: the package, the dev cluster and the tests (settings in
## control/pyproject.toml)
typecheck: venv
	cd control && ../$(VENV)/bin/mypy

# The loopback phase serves the player page too (hls.js from make player).
test-control: deps venv player
	$(VENV)/bin/pytest control/tests -q -rs

## dev: the whole control plane on loopback (MariaDB, trackers, ids, shims, agents, nginx)
dev: deps venv player
	$(VENV)/bin/mediagrid-dev --root .dev

## bench: control-plane benchmarks on loopback, then on the lab (bench-lab); both write
## their sections of docs/benchmarks.md
bench: deps venv
	$(PY) bench/run.py --out docs/benchmarks.md
	$(MAKE) bench-lab

## bench-lab: benchmarks on the lab cluster (make lab first, idempotent); run it under the
## lab's lock when others share the lab: flock /tmp/mediagrid-lab.lock make bench-lab
.PHONY: bench-lab
bench-lab: deps venv
	$(MAKE) lab
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) bench/lab.py --out docs/benchmarks.md
	$(PY) bench/vod.py --out docs/benchmarks.md

## drills: the failure drills and the bad-input sweep against the lab (brought up if needed);
## every drill leaves the lab as it found it. Figures: build/lab/drills.json, docs/reliability.md
.PHONY: drills
drills: deps venv
	$(MAKE) lab
	$(VENV)/bin/pytest tests/e2e/test_drills.py tests/e2e/test_sweep.py -q -rs -s -p no:cacheprovider

## test-e2e: a fresh lab (make lab), the end-to-end suite (flows, drills, sweep) against it,
## then the lab removed
test-e2e: deps venv
	$(MAKE) lab-down
	$(MAKE) lab
	$(VENV)/bin/pytest tests/e2e -q -rs -s -p no:cacheprovider; rc=$$?; $(MAKE) lab-down; exit $$rc

## test: what CI runs (.ci/run)
test: lint-py typecheck test-unit test-control lint test-playbooks test-lab test-e2e

clean:
	rm -rf $(VENV) .dev

-include mk/lab.mk
-include mk/player.mk
