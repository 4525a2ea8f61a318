# Two commands do all the set-up on a fresh machine with Python 3.11+:
#   make demo    create .venv, install the package, run the guide's example
#   make test    install the test extras into the same .venv, run the suite
#   make soak    the 10-minute soak run, left out of make test (docs/RELIABILITY.md)
# Another interpreter gets its own venv: make test PYTHON=python3.13

PYTHON ?= python3
VENV ?= $(if $(filter python3,$(PYTHON)),.venv,.venv-$(notdir $(PYTHON)))
BIN := $(VENV)/bin

.PHONY: demo test soak clean

demo: $(VENV)/.installed
	$(BIN)/lb-ioloop demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

soak: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m soak -s

$(VENV)/.created:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	    { echo "lb_ioloop needs Python 3.11 or newer; $(PYTHON) is older (try PYTHON=python3.12)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf .venv .venv-* *.egg-info .pytest_cache
