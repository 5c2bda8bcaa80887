# Two commands do all set-up: `make run` starts the dashboard, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test lint format bench clean

# The venv is (re)installed whenever a requirements file is newer than its stamp.
$(VENV)/.stamp-run: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-run requirements-test.txt requirements-scale.txt
	$(BIN)/python -m pip install -q -r requirements-test.txt
	$(BIN)/python -m pip install -q -r requirements-scale.txt
	touch $@

# The paper's released heads beside the checkout (../shared/clip-cues), when present and no
# other folder is set: the Concepts page's released comparison then shows without a download.
RELEASED_DIR ?= $(if $(wildcard ../shared/clip-cues/SHA256SUMS),$(abspath ../shared/clip-cues),)

run: $(VENV)/.stamp-run
	$(if $(RELEASED_DIR),CUE_LENS_RELEASED_DIR="$${CUE_LENS_RELEASED_DIR:-$(RELEASED_DIR)}") \
	  $(BIN)/streamlit run app.py --server.port $(PORT)

test: $(VENV)/.stamp-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.stamp-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
