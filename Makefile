# Two commands on a fresh machine: `make train` (the main job) and `make test` (the test suite).
# Both bootstrap first: headless GL libraries, .venv, the package with its extras (scripts/bootstrap.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup train test test-slow lint bench-envs bench-learning clean

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

# Learning curves (hours on 2 cores; resumable: rerun to continue): LEARN_ARGS="--algo sac --seed 1" etc.
LEARN_ARGS ?= --algo aime --env cartpole-swingup --seed 0
bench-learning: setup
	$(PY) benchmarks/learning.py $(LEARN_ARGS) && $(PY) benchmarks/learning.py --report

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
