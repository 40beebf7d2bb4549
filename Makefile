# Two set-up commands for a fresh clone: `make demo` and `make test`.
# Each creates .venv when it is missing, installs torch==2.13.0 (CPU build) first,
# so that no dependency can pull a CUDA build, then the package with its dev extras.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	$(BIN)/python -m pip install "torch==2.13.0"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/stverify demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

bench: $(STAMP)
	$(BIN)/python experiments/stbp_bench.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
