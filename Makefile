# Two commands on a fresh machine: `make train` (the main job) and `make test` (the test suite).
# Both bootstrap first: headless GL libraries, .venv, the package with its extras (scripts/bootstrap.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup train test test-slow lint bench-envs bench-suite clean

setup:
	@VENV=$(VENV) scripts/bootstrap.sh

# Main job: train AIME (small preset) on cartpole-swingup for 10k env steps (12 min on a 2-core AVX-512 Xeon);
# TensorBoard logs,
# checkpoint.zip and a final evaluation line in runs/make-train (rerun to resume).
TRAIN_ENV_STEPS ?= 10000
train: setup
	$(VENV)/bin/aime train --env cartpole-swingup --env-steps $(TRAIN_ENV_STEPS) --preset small --logdir runs/make-train

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --durations=20 $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m slow --durations=20 $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench-envs: setup
	$(PY) benchmarks/env_throughput.py

# The benchmark suite (hours on 2 cores; resumable: rerun to continue): SUITE_ARGS="--tier 2", "--agents sac --seeds 1" etc.
SUITE_ARGS ?= --tier 1
bench-suite: setup
	$(VENV)/bin/aime benchmark $(SUITE_ARGS) && $(VENV)/bin/aime benchmark --report

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
