# Two commands do everything from a fresh clone:
#   make demo   explain the bundled model and write an HTML report
#   make test   run the whole test suite
# Each creates or refreshes .venv. torch is pinned through constraints.txt.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: demo test test-fast bench venv clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e .
	touch $@

$(TSTAMP): $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/seethrough demo --out reports/demo

test: $(TSTAMP)
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: $(TSTAMP)
	$(PY) -m pytest -n 2 -m "not slow"

bench: $(TSTAMP)
	$(PIP) install -q -c constraints.txt -e '.[bench]'
	$(PY) bench/bench_gradient.py --repeat 2 --out docs/bench-gradient.md
	$(PY) bench/bench_perturbation.py --out docs/bench-perturbation.md
	$(PY) bench/bench_shapley.py --out docs/bench-shapley.md
	$(PY) bench/bench_incremental.py --out docs/bench-incremental.md

clean:
	rm -rf $(VENV) reports build src/*.egg-info
