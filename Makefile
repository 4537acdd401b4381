# Two entry points for a fresh machine: `make demo` and `make test`. Each installs what it needs
# into .venv first (once; re-run when pyproject.toml changes).
#
# TORCH picks the PyTorch build. The default pins the version whose CPU wheel our machines hold on
# local disk (a loose spec would pull a multi-GB CUDA build). From PyPI alone that pin is the CUDA
# build on Linux: add PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu TORCH=torch==2.13.0+cpu.
# With a GPU: make demo TORCH=torch (or any torch>=2.6 spec).
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mtnlp-installed
# The demo and the tests never need a network: models and metrics are local.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: install demo test clean bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "error: mtnlp needs Python 3.11 or later; name one: make demo PYTHON=python3.12")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: install
	$(OFFLINE) $(BIN)/mtnlp train recipes/demo.yaml overwrite_output_dir=true

# One worker per core; a file's tests stay on one worker (some share a costly module-level set-up), and the
# files go out in the order tests/conftest.py collects them (longest first).
test: install
	$(OFFLINE) $(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) runs .pytest_cache

bench: install
	$(OFFLINE) $(BIN)/python bench/inference.py
	$(OFFLINE) $(BIN)/python bench/throughput.py
	$(OFFLINE) $(BIN)/python bench/utilisation.py
	$(OFFLINE) $(BIN)/python bench/utilisation.py --batch-tokens 4096
