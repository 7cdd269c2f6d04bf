# Two commands do everything, each setting up its own virtual environment first:
#   make reproduce   # the main job: the parity reproduction (quick preset)
#   make test        # the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/parity_quick

.PHONY: venv reproduce smoke test clean

$(BIN)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

venv: $(BIN)/.installed

reproduce: venv
	$(BIN)/python -m launch.reproduce parity --preset=quick --workdir=$(WORKDIR)

smoke: venv
	$(BIN)/python -m launch.train --config=configs/parity/transformer.py:smoke --workdir=runs/parity_smoke

# Unbuffered: a library's exit hook can end the process before pytest's summary line
# would be flushed from a pipe's buffer. Two pytest-xdist workers: the tests are mostly
# single-threaded XLA compilation and subprocess start-up, so two cores run two at once
# (each worker keeps the tests' two fake devices).
TEST_WORKERS ?= 2
test: venv
	PYTHONUNBUFFERED=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) tests

clean:
	rm -rf $(VENV) runs
