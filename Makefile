# concbench: `make test` and `make bench` are all a fresh clone needs (python3 >= 3.11 and make).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test lint bench bench-quick report clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,models]'
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check bench servers clients tests
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check bench servers clients tests

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache servers/native/build
