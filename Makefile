# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv with the pinned dependencies if missing, then runs `attrret demo`
#   make test   creates .venv with the pinned dependencies if missing, then runs the fast tests (not `slow`)
# make test-all runs every test, each CLI case of tests/bad_input in a process of its own (what CI runs)
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.attrret-installed

export HF_HUB_OFFLINE ?= 1

.PHONY: demo test test-all bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# plain pip: it finds the CPU torch wheel kept on disk (uv and poetry do not)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/attrret demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	ATTRRET_TEST_SUBPROCESS=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) attrret-work .pytest_cache
