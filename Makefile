# facerealism: `make run` runs the pipeline on the embedded offline default; `make test` runs the tests
# (`make test-fast`: the fast layer).
SHELL := /bin/bash
PYTHON ?= python3.11
# The venv is keyed by the locks' hash only, so it is reused across clones and sessions and rebuilt only when the
# locked versions change (it is ~6.3 GB). `make lock` re-resolves pyproject.toml into requirements.lock and
# requirements.nodeps.in into requirements.nodeps.lock (packages installed without their conflicting pins).
VENV_ROOT ?= $(HOME)/.cache/facerealism
LOCK := requirements.lock
NODEPS_LOCK := requirements.nodeps.lock
LOCK_HASH := $(shell cat $(LOCK) $(NODEPS_LOCK) | sha256sum | cut -c1-12)
VENV := $(VENV_ROOT)/venv-$(LOCK_HASH)
UV_VERSION := 0.13.9
UV := $(VENV_ROOT)/uv-$(UV_VERSION)/bin/uv
# uv ignores pip's config; where this machine keeps wheels on disk (torch among them), uv may take them from there
# (the lock's hashes decide what is acceptable, so the bytes are PyPI's either way).
FIND_LINKS := $(foreach d,/opt/wheels /opt/pypi/files /opt/pypi-more/files,$(if $(wildcard $(d)),--find-links $(d)))
BIN := $(CURDIR)/.venv/bin
export PATH := $(BIN):$(PATH)
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
# The project's own modules get cached bytecode too, whatever the caller's environment says.
unexport PYTHONDONTWRITEBYTECODE
# CPU=avx2 runs everything as on a CPU without native bf16 (AMD EPYC Zen 3: AVX2, no AVX-512 BF16/AMX): oneDNN and
# ATen are capped to AVX2, so bf16 is emulated and train.mixed_precision auto picks fp32 (facerealism/precision.py).
# `make test CPU=avx2` checks the suite and its budget for that kind on a machine of the other.
ifeq ($(CPU),avx2)
export ONEDNN_MAX_CPU_ISA := AVX2
export ATEN_CPU_CAPABILITY := avx2
# MKL (linear algebra, FFTs) picks its own code path; without this it runs AVX-512 kernels and a trained head differs
# from one trained with them capped (docs/results.md, 2026-12-06 night).
export MKL_ENABLE_INSTRUCTIONS := AVX2
# torch.compile's kernels built under the cap go to a cache of their own: its key does not hold the cap, and a
# kernel cached under it crashed (SIGSEGV) an uncapped run on the same machine.
export TORCHINDUCTOR_CACHE_DIR := $(or $(TMPDIR),/tmp)/torchinductor-avx2-$(shell id -u)
endif
PYTEST_ARGS ?=
MUTATE_ARGS ?=
LOCK_ARGS ?=

.PHONY: install lock run test test-fast repro mutate clean browser

$(UV):
	$(PYTHON) -m venv "$(VENV_ROOT)/uv-$(UV_VERSION)"
	"$(VENV_ROOT)/uv-$(UV_VERSION)/bin/pip" install -q "uv==$(UV_VERSION)"

install: $(UV)
	@# Bytecode is compiled at install (--compile-bytecode): where PYTHONDONTWRITEBYTECODE is set, every process
	@# would otherwise compile torch, prefect, mlflow and dvc from source on each import (~2x a CLI call's imports).
	@if [ ! -f "$(VENV)/.complete" ]; then \
		echo "building $(VENV) from $(LOCK) + $(NODEPS_LOCK) (first install, or a lock changed)"; \
		rm -rf "$(VENV)" && \
		$(UV) venv -q --python $(PYTHON) "$(VENV)" && \
		$(UV) pip sync -q --python "$(VENV)/bin/python" --require-hashes --compile-bytecode $(FIND_LINKS) $(LOCK) && \
		$(UV) pip install -q --python "$(VENV)/bin/python" --no-deps --require-hashes --compile-bytecode \
			$(FIND_LINKS) -r $(NODEPS_LOCK) && \
		touch "$(VENV)/.complete"; \
	fi
	@ln -sfn "$(VENV)" .venv
	@# The shared venv's editable install must point at this clone; repointing costs a second.
	@if [ "$$(cat .venv/.editable 2>/dev/null)" != "$(CURDIR)" ]; then \
		$(UV) pip install -q --python .venv/bin/python --no-deps --no-build-isolation -e . && \
		echo "$(CURDIR)" > .venv/.editable; \
	fi

# Re-resolve pyproject.toml (+ the build requirements) into the hashed lock; commit the result.
lock: $(UV)
	$(UV) pip compile pyproject.toml .ci/build.in --extra test --universal --python-version 3.11 $(LOCK_ARGS) \
		--generate-hashes --no-header -o $(LOCK)
	$(UV) pip compile requirements.nodeps.in --no-deps --universal --python-version 3.11 $(LOCK_ARGS) \
		--generate-hashes --no-header -o $(NODEPS_LOCK)

run: install
	$(BIN)/facerealism run

# Two pytest-xdist workers (one a core), whole files to a worker so module fixtures are built once; the slowest tests
# and the time per layer are printed before pytest's closing line (which gives the wall time).
TEST_WORKERS ?= 2
# A crashed worker is not replaced: with --dist loadfile, pytest-xdist hangs on the crashed worker's file (reproduced
# with a test that raises SIGSEGV: no end in 60 s; with the restart off, that test fails and the run ends in 5 s).
TEST_XDIST = -n $(TEST_WORKERS) --dist loadfile --max-worker-restart=0

# The browser tests (tests/test_browser.py) drive Debian's Chromium through Playwright: install it where it is missing
# and apt-get can (CI runs as root); without it those tests skip and say why.
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is missing and apt-get cannot install it here: the browser tests will skip"

test: install browser
	$(BIN)/python -m pytest $(TEST_XDIST) --durations=25 $(PYTEST_ARGS)

# The inner loop: everything not marked slow (units and single stages on tiny fixtures; no pipeline runs, no servers
# per test). Budget: 5 minutes on the slower machine of this kind.
test-fast: install browser
	$(BIN)/python -m pytest $(TEST_XDIST) -m "not slow" --durations=10 $(PYTEST_ARGS)

repro: install
	$(BIN)/dvc repro

# Breaks src/ one line at a time in a scratch copy and reports which mutations the tests miss (not in CI: minutes).
mutate: install
	$(BIN)/python .ci/mutate.py $(MUTATE_ARGS)

clean:
	rm -rf data reports models mlflow.db mlartifacts .prefect
