# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv (Python 3.10) if missing and install the pinned set;
# `make test` also creates .venv-jax for the library's tests under JAX.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Keras, one backend and the test tools, without TensorFlow: keras_mmoe's
# tests run there under that backend.
JAX_VENV ?= .venv-jax
TORCH_VENV ?= .venv-torch
TEST_PACKAGES := pytest pytest-xdist matplotlib scikit-learn tensorboard
# In a variable: a literal comma would split $(call venv,...)'s arguments.
MAIN_PACKAGES := -e '.[pipeline,dev]'
LIBRARY_TESTS := keras_mmoe tests/test_layering.py tests/test_readme.py
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONWARNINGS ?= ignore::FutureWarning

.PHONY: install demo keras-demo test test-jax test-torch test-backends \
	test-all lint format bench backend-speed clean

install: $(STAMP)

# $(call venv,DIR,CONSTRAINTS,PACKAGES): creates venv DIR (Python 3.10) if
# missing and installs PACKAGES pinned by CONSTRAINTS, with uv if it runs.
define venv
	@set -e; \
	uv=$$(command -v uv || true); \
	if [ -n "$$uv" ] && ! "$$uv" --version >/dev/null 2>&1; then \
	  uv=; \
	fi; \
	if [ ! -x "$(1)/bin/python" ]; then \
	  py310=; \
	  for c in $$(command -v python3.10) \
	      $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/3.10.*/bin/python 2>/dev/null); do \
	    if "$$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then \
	      py310=$$c; break; \
	    fi; \
	  done; \
	  if [ -z "$$py310" ]; then \
	    echo "Python 3.10 not found: install python3.10 (or pyenv install 3.10) and rerun."; \
	    exit 1; \
	  fi; \
	  if [ -z "$$uv" ] && "$$py310" -m pip install -q uv 2>/dev/null; then \
	    uv="$$py310 -m uv"; \
	  fi; \
	  if [ -n "$$uv" ]; then \
	    $$uv venv -q --seed -p "$$py310" $(1); \
	  else \
	    "$$py310" -m venv $(1); \
	  fi; \
	fi; \
	if [ -n "$$uv" ] || $(1)/bin/python -m pip install -q uv 2>/dev/null; then \
	  [ -n "$$uv" ] || uv="$(1)/bin/python -m uv"; \
	  $$uv pip install -q -p $(1)/bin/python -c $(2) $(3); \
	else \
	  $(1)/bin/python -m pip install -q -c $(2) $(3); \
	fi; \
	touch $(1)/.installed
endef

$(STAMP): pyproject.toml constraints.txt
	$(call venv,$(VENV),constraints.txt,$(MAIN_PACKAGES))

$(JAX_VENV)/.installed: pyproject.toml constraints-jax.txt
	$(call venv,$(JAX_VENV),constraints-jax.txt,-e . 'jax[cpu]' $(TEST_PACKAGES))

# PyTorch from PyPI brings its CUDA libraries (about 5 GB installed), so it
# is not part of `make test`.
$(TORCH_VENV)/.installed: pyproject.toml constraints-torch.txt
	$(call venv,$(TORCH_VENV),constraints-torch.txt,-e . torch $(TEST_PACKAGES))

demo: install
	$(VENV)/bin/mmoe run --data data/womens_clothing_reviews.csv.gz \
	  --text-column Title "Review Text" \
	  --label-columns "Recommended IND" Rating "Department Name" \
	  --trainer-arg 'reads_from={"Recommended IND": ["Rating"]}' \
	  --output output/demo --baseline

keras-demo: install
	$(PY) -m benchmarks.reviews_keras

test: lint $(JAX_VENV)/.installed
	$(PY) -m pytest -q -n 2
	$(MAKE) --no-print-directory test-jax

# keras_mmoe's tests under JAX and PyTorch, without TensorFlow.
test-jax: $(JAX_VENV)/.installed
	KERAS_BACKEND=jax $(JAX_VENV)/bin/python -m pytest -q -n 2 $(LIBRARY_TESTS)

test-torch: $(TORCH_VENV)/.installed
	KERAS_BACKEND=torch $(TORCH_VENV)/bin/python -m pytest -q -n 2 \
	  $(LIBRARY_TESTS)

test-backends: test-jax test-torch

test-all: lint
	$(PY) -m pytest -q -n 2 -m ''

lint: install
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: install
	$(PY) -m benchmarks.layer_speed

backend-speed: install $(JAX_VENV)/.installed $(TORCH_VENV)/.installed
	$(PY) -m benchmarks.backend_speed

clean:
	rm -rf $(VENV) $(JAX_VENV) $(TORCH_VENV)
