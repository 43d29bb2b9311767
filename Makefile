# Tower: `make run` starts the studio on the embedded default; `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# On a machine where nvidia-smi lists a GPU, ONNX Runtime's GPU build replaces the CPU one (ArcFace
# and CCIP then run on CUDA; the GPU build also runs on the CPU). GPU=0 or GPU=1 overrides this.
GPU    ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1 || echo 0)
GPU_STEP = $(if $(filter 1,$(GPU)),$(MAKE) --no-print-directory onnxruntime-gpu)

.PHONY: run test lint venv onnxruntime-gpu

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(GPU_STEP)
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(GPU_STEP)
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/python manage.py serve

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# onnxruntime and onnxruntime-gpu install into the same folder: remove the CPU build (insightface
# pulls it in), then lay the GPU build's files down again. Also run by hand to switch a .venv.
onnxruntime-gpu: | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[gpu]'
	$(BIN)/python -m pip uninstall --quiet --yes onnxruntime
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps \
		"$$($(BIN)/python -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["gpu"][0])')"
