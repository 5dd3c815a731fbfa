# Front door: `make train` and `make test` create the environment when needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The torch / torchvision pair that installs and imports on these machines (REFERENCE.md).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# Landmark backends (REFERENCE.md "Dependencies on these machines"): facenet-pytorch and
# mediapipe 0.10.21 pin old torch / numpy / protobuf yet run fine here when installed
# --no-deps; mediapipe 0.10.21 is the last release bundling its face-mesh models and it needs
# protobuf 6.33.5. The dlib model files are found without importing face_recognition_models,
# so setuptools >= 81 (no pkg_resources) is fine.
LANDMARK_PKGS   ?= dlib-bin face-recognition-models
LANDMARK_NODEPS ?= facenet-pytorch==2.6.0 mediapipe==0.10.21
MEDIAPIPE_DEPS  ?= absl-py attrs flatbuffers matplotlib opencv-contrib-python sounddevice \
                   protobuf==6.33.5

.PHONY: setup train test lint bench preview clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install $(TORCH_PINS)
	$(BIN)/pip install -e ".[dev]"
	$(BIN)/pip install $(LANDMARK_PKGS)
	$(BIN)/pip install --no-deps $(LANDMARK_NODEPS)
	$(BIN)/pip install $(MEDIAPIPE_DEPS)
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
