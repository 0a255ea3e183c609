# Both targets set up everything themselves (idempotent): a virtual environment in .venv,
# the CPU build of torch first (a bare `torch` requirement would pull a multi-GB CUDA build),
# then accelmri with its dev extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-order lint setup clean bench bench-gpu docs

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	# fastMRI's own code, for the tests that compare against it (tests/test_fastmri_*.py). --no-deps: its
	# requirements pull torchvision (a multi-GB CUDA build); the modules the tests import need none of them.
	$(PY) -m pip install --quiet --no-deps fastmri==0.3.0
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/accelmri demo --out out/demo-$$(date +%Y%m%d-%H%M%S)

# Benchmarks at the reference sizes (hours on 2 cores; see docs/performance.md for sections and flags).
bench: $(STAMP)
	$(PY) benchmarks/run.py

# The GPU benchmark (docs/performance.md, "GPU"): every model at paper size on CUDA in one run of <= 8 min on an
# H100 (needs a CUDA build of torch in .venv; it stops at once, with the reason, where CUDA is not available).
bench-gpu: $(STAMP)
	$(PY) benchmarks/run.py --device cuda

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# Order independence: the suite once in random order (pytest-randomly; it prints the seed, rerun a failure with
# -p randomly --randomly-seed=SEED), then every test file alone.
test-order: $(STAMP)
	$(PY) -m pytest -p randomly
	for f in tests/test_*.py; do $(PY) -m pytest -q -p no:cacheprovider "$$f" || exit 1; done

# The documentation site (mkdocs.yml): docs/*.md, the tutorials and the API reference from the docstrings,
# into site/; --strict makes every warning an error (CI builds it the same way in tests/test_docs.py).
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV)
