# The two commands: `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# CPU torch for tests and laptops; the GPU image installs its own CUDA build (Dockerfile.gpu).
TORCH_SPEC ?= torch==2.13.0
export PORT ?= 8000
export HOST ?= 127.0.0.1

.PHONY: run test check lint fmt clean system-deps

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

# The base install (web tier + CPU animator) needs no torch; `worker` adds the clip check's identity model.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q -e ".[worker]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[gpu,worker,test]" "$(TORCH_SPEC)"
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/vivify up

system-deps:
	bash .ci/system-deps

# Static checks first (seconds to a few minutes), then the tests.
test: system-deps $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest --durations=15 $(PYTEST_ARGS)

# The inner loop, about 2 minutes: every static check, the API tests and the fast unit tests (no
# browser, no end-to-end stack, no chaos run, no face or video models). `make test` runs everything.
CHECK_TESTS = tests/app tests/test_import_contracts.py tests/test_compose.py \
	tests/models/test_video.py tests/models/test_motion.py tests/models/test_motion_curves.py \
	tests/models/test_quality.py tests/deploy tests/bench
check: $(VENV)/.installed-test lint
	$(BIN)/python -m pytest -q $(CHECK_TESTS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

fmt: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .grimp_cache
