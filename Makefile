# Two commands: `make demo` and `make test`. Both create .venv and install the project first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build by default; override for CUDA, e.g. TORCH_SPEC="torch==2.13.0 --index-url <your cuda index>".
TORCH_SPEC ?= torch==2.13.0
# USE_SYSTEM_TORCH=1 makes the venv see the interpreter's own packages (an existing CUDA torch, say).
USE_SYSTEM_TORCH ?= 0
# pyproject extras: dev (tests), milvus (the Milvus server and client); .ci/run adds bench (the peer databases)
EXTRAS ?= dev,milvus
DATA_DIR ?= data
ARTIFACTS_DIR ?= artifacts
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test lint prepare train index serve bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(if $(filter 1,$(USE_SYSTEM_TORCH)),--system-site-packages) $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/arcsearch demo --data-dir $(DATA_DIR) --artifacts-dir $(ARTIFACTS_DIR) --host $(HOST) --port $(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

prepare: install
	$(BIN)/arcsearch prepare --data-dir $(DATA_DIR)

bench: install
	$(BIN)/python -m bench.http_latency --collections-dir $(ARTIFACTS_DIR)/collections --data-dir $(DATA_DIR)

clean:
	rm -rf $(VENV) $(ARTIFACTS_DIR) .pytest_cache .ruff_cache
