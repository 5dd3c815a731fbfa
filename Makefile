# Front door: `make train` and `make test` create the environment when needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The torch / torchvision pair that installs and imports on these machines (REFERENCE.md).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup train test lint bench preview clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install $(TORCH_PINS)
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

train: setup
	$(BIN)/python -m fer_lightning $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check fer_lightning tests benchmarks

bench: setup
	$(BIN)/python -m benchmarks.run $(ARGS)

preview: setup
	$(BIN)/python -m fer_lightning.data preview $(ARGS)

clean:
	rm -rf $(VENV) logs outputs .pytest_cache
