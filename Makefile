# Two commands do all the set-up: `make demo` and `make test`. Both create/refresh .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test lint browser demo bench screenshots clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(PY) -m ruff check .

# The browser tests need Debian's chromium; install it when missing and we are root (CI is).
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: lint browser
	$(PY) -m pytest

demo: venv
	$(PY) scripts/demo.py

# Regenerates the README pictures in docs/ from the browser tests (real JupyterLab + chromium).
screenshots: venv browser
	DOCS_SCREENSHOTS=docs $(PY) -m pytest tests/test_browser.py -q

bench: venv
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
