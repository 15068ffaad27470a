# The two commands a newcomer needs: `make demo` and `make test` (each sets up .venv first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PKGS := spec_schema/pyproject.toml regulator/pyproject.toml producer/pyproject.toml consumer/pyproject.toml experiments/pyproject.toml

.PHONY: setup test test-fast lint demo bench results gpu-wheelhouse clean

setup: $(STAMP)

# torch first, pinned: the CPU build, so that pip does not fetch a CUDA build.
$(STAMP): $(PKGS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check \
		-e "./spec_schema[test]" -e "./regulator[cpu,test]" -e "./producer[cpu,test]" -e "./consumer[cpu,test]" \
		-e ./experiments
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The fast lane: every test not marked slow (none builds the whole chain, starts Ray or trains
# for long), on one torch thread: the tests' models are tiny, and a second thread that waits for
# a busy core makes them several times slower.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not slow"

demo: $(STAMP)
	$(BIN)/python -u scripts/demo.py

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b --quick || exit 1; done

# docs/results.md and docs/results-details.md from the committed results files docs/results/*.json
results: $(STAMP)
	$(BIN)/lassi-experiments report

# benchmarks/wheelhouse: the wheels the GPU device check installs offline on a device machine
# (Python 3.12, the device image's, and 3.13; benchmarks/gpu_check.sh has the `run` invocation)
gpu-wheelhouse: $(STAMP)
	bash benchmarks/gpu_check.sh --wheels 3.12,3.13

clean:
	rm -rf $(VENV) runs/demo
