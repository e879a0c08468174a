# The two commands of the README: `make demo` (main job) and `make test` (test suite).
# Both create ./.venv with a Python 3.11/3.12 interpreter and install everything.
PY ?= $(shell for p in python3.11 python3.12 python3; do \
        if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(0 if (3,11) <= sys.version_info[:2] <= (3,12) else 1)' 2>/dev/null; then echo $$p; break; fi; done)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean venv

$(STAMP): pyproject.toml
	@test -n "$(PY)" || { echo "error: Python 3.11 or 3.12 is required (bytewax 0.21.1 has no wheels for 3.13+)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/polyalphascan demo $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
