# The two commands of the README: `make demo` (main job) and `make test` (test suite).
# Both create ./.venv with a Python 3.11/3.12 interpreter and install everything.
PY ?= $(shell for p in python3.11 python3.12 python3; do \
        if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(0 if (3,11) <= sys.version_info[:2] <= (3,12) else 1)' 2>/dev/null; then echo $$p; break; fi; done)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test clean venv mutate

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PY)" || { echo "error: Python 3.11 or 3.12 is required (bytewax 0.21.1 has no wheels for 3.13+)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/polyalphascan demo $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(ARGS)

# Mutation testing (slow, not part of `make test` or CI): mutmut over the modules listed in
# pyproject.toml [tool.mutmut], each mutant against the fast unit tests that reach it.
# `make mutate ARGS="operators.pricing*"` limits the run to some mutants; the results stay in
# ./mutants (`.venv/bin/mutmut browse` / `results` / `show NAME`).
MUTATE_JOBS ?= 2
mutate: $(STAMP)
	$(VENV)/bin/mutmut run --max-children $(MUTATE_JOBS) $(ARGS)
	$(VENV)/bin/mutmut results --all true > mutants/results.txt
	$(VENV)/bin/python tests/mutation_score.py < mutants/results.txt

clean:
	rm -rf $(VENV) .pytest_cache mutants
