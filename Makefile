# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv (Python 3.10) if missing and install the pinned set.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONWARNINGS ?= ignore::FutureWarning

.PHONY: install demo keras-demo test test-all lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@set -e; \
	uv=$$(command -v uv || true); \
	if [ -n "$$uv" ] && ! "$$uv" --version >/dev/null 2>&1; then \
	  uv=; \
	fi; \
	if [ ! -x "$(PY)" ]; then \
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
	    $$uv venv -q --seed -p "$$py310" $(VENV); \
	  else \
	    "$$py310" -m venv $(VENV); \
	  fi; \
	fi; \
	if [ -n "$$uv" ] || $(PY) -m pip install -q uv 2>/dev/null; then \
	  [ -n "$$uv" ] || uv="$(PY) -m uv"; \
	  $$uv pip install -q -p $(PY) -c constraints.txt -e '.[pipeline,dev]'; \
	else \
	  $(PY) -m pip install -q -c constraints.txt -e '.[pipeline,dev]'; \
	fi; \
	touch $(STAMP)

demo: install
	$(VENV)/bin/mmoe run --data data/womens_clothing_reviews.csv.gz \
	  --text-column Title "Review Text" \
	  --label-columns "Recommended IND" Rating "Department Name" \
	  --trainer-arg 'reads_from={"Recommended IND": ["Rating"]}' \
	  --output output/demo --baseline

keras-demo: install
	$(PY) -m benchmarks.reviews_keras

test: lint
	$(PY) -m pytest -q -n 2

test-all: lint
	$(PY) -m pytest -q -n 2 -m ''

lint: install
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: install
	$(PY) -m benchmarks.layer_speed

clean:
	rm -rf $(VENV)
