# Two commands do all the set-up: `make demo` and `make test`. Both create/refresh .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCAL_STAMP := $(VENV)/.local-installed
# llama-cpp-python builds from source (about 4 minutes here); the default native build crashed in
# decode on this machine, GGML_NATIVE=OFF works. The wheel is cached so the next venv reuses it.
WHEELS ?= $(HOME)/.cache/acytoo-magic/wheels
LLAMA_VERSION := 0.3.36
# The peers `make bench` compares with (chatlab, jupyter-ai) each get a venv of their own here.
BENCH_VENVS ?= .bench

.PHONY: venv local test lint browser demo bench bench-peers screenshots clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

venv: $(STAMP)

$(LOCAL_STAMP): $(STAMP)
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip wheel --quiet --no-deps \
			"llama-cpp-python==$(LLAMA_VERSION)" -w $(WHEELS)
	$(PY) -m pip install --quiet --find-links $(WHEELS) -e '.[test,dev,local]'
	touch $(LOCAL_STAMP)

local: $(LOCAL_STAMP)

lint: venv
	$(PY) -m ruff check .

# The browser tests need Debian's chromium; install it when missing and we are root (CI is).
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: lint browser local
	$(PY) -m pytest

# The quick-start notebook with provider "local" (SmolLM2 in the kernel, no server);
# DEMO_BACKEND=llama serves the model through acytoo_magic.server, DEMO_MODEL=gemma3 picks Gemma.
demo: local
	$(PY) scripts/demo.py

# Regenerates the README pictures in docs/ from the browser tests (real JupyterLab + chromium);
# docs/chat_widget.png comes last, from test_browser_widget.py (a long transcript).
screenshots: venv browser
	DOCS_SCREENSHOTS=docs $(PY) -m pytest tests/test_browser.py tests/test_browser_widget.py -q

# A peer that pip cannot install is recorded (BENCH_VENVS/NAME/.failed) and shown so in the table.
bench-peers: venv
	$(PY) benchmarks/peers.py build $(BENCH_VENVS)

bench: venv browser bench-peers
	$(PY) benchmarks/run.py --peers $(BENCH_VENVS)

clean:
	rm -rf $(VENV) $(BENCH_VENVS) build *.egg-info .pytest_cache
