# Two commands do all set-up: `make run` (the main job) and `make test` (the whole suite).
# Both are idempotent: the venv, the llama-server build and the model packs are cached.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL  ?= qwen2.5-coder-0.5b-instruct

.PHONY: run test install engine lint bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "thinktank needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	@touch $(STAMP)

install: $(STAMP)

# Build llama-server (first time ~10 min on 2 cores) and pull the model packs the job and tests use.
engine: install
	$(BIN)/thinktank backend build
	$(BIN)/thinktank models pull $(MODEL)

# The main job: greedy baseline vs the best preset for the default model on a fixed HumanEval slice, then a
# comparison table. adaptive-vote ties sample-8-exec for the best accuracy on 80 seeded problems (75.0% vs
# single's 58.8%) at 55% of its tokens (docs/benchmarks.md), so it is the one shown here.
RUN_SLICE := --task humaneval --limit 10 --model $(MODEL)
BEST      := adaptive-vote
run: engine
	$(BIN)/thinktank eval $(RUN_SLICE) --arch single --run-dir runs/main-single
	$(BIN)/thinktank eval $(RUN_SLICE) --arch $(BEST) --run-dir runs/main-$(BEST)
	$(BIN)/thinktank report runs/main-single runs/main-$(BEST) --baseline runs/main-single --html runs/main-report.html

test: install
	bash scripts/ensure_browser.sh
	bash scripts/ensure_postgres.sh
	$(BIN)/thinktank backend build
	$(BIN)/thinktank models pull smollm2-135m-instruct
	$(BIN)/thinktank models pull qwen2.5-coder-0.5b-instruct
	$(BIN)/python -m pytest -q

# The unit tests again in a separate venv with every direct dependency at its pyproject.toml floor (reused while
# the floors are unchanged): scripts/test_floors.sh.
.PHONY: test-floors
test-floors:
	PYTHON=$(PYTHON) bash scripts/test_floors.sh

lint: install
	$(BIN)/ruff check thinktank tests benchmarks
	$(BIN)/ruff format --check thinktank tests benchmarks
	$(BIN)/mypy thinktank
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
