# facerealism: `make run` runs the pipeline on the embedded offline default; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3.11
# The venv is keyed by a hash of the dependency spec only, so it is reused across clones and
# sessions and rebuilt only when dependencies change (it is ~6.5 GB; a rebuild takes minutes).
VENV_ROOT ?= $(HOME)/.cache/facerealism
SPEC_HASH := $(shell $(PYTHON) .ci/deps.py --hash)
VENV := $(VENV_ROOT)/venv-$(SPEC_HASH)
BIN := $(CURDIR)/.venv/bin
export PATH := $(BIN):$(PATH)
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
PYTEST_ARGS ?=
MUTATE_ARGS ?=

.PHONY: install run test repro mutate clean

install:
	@if [ ! -f "$(VENV)/.complete" ]; then \
		echo "building $(VENV) (first install, or the dependency spec changed)"; \
		rm -rf "$(VENV)" && mkdir -p "$(VENV_ROOT)" && \
		$(PYTHON) -m venv "$(VENV)" && \
		$(PYTHON) .ci/deps.py --requirements > "$(VENV)/requirements.txt" && \
		"$(VENV)/bin/pip" install -q --upgrade pip && \
		"$(VENV)/bin/pip" install -q -r "$(VENV)/requirements.txt" && \
		touch "$(VENV)/.complete"; \
	fi
	@ln -sfn "$(VENV)" .venv
	@# The shared venv's editable install must point at this clone; repointing costs seconds.
	@if [ "$$(cat .venv/.editable 2>/dev/null)" != "$(CURDIR)" ]; then \
		.venv/bin/pip install -q --no-deps --no-build-isolation -e . && echo "$(CURDIR)" > .venv/.editable; \
	fi

run: install
	$(BIN)/facerealism run

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

repro: install
	$(BIN)/dvc repro

# Breaks src/ one line at a time in a scratch copy and reports which mutations the tests miss (not in CI: minutes).
mutate: install
	$(BIN)/python .ci/mutate.py $(MUTATE_ARGS)

clean:
	rm -rf data reports models mlflow.db mlartifacts .prefect
