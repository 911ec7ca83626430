# workbench: `make demo` runs it, `make test` checks it. Both work on a fresh clone (they create .venv).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
WB := $(VENV)/bin/workbench
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# keep numeric libraries from oversubscribing the 2 cores
export OMP_NUM_THREADS ?= 2

.PHONY: help venv install install-test install-notebook install-dashboards demo lab test lint format check-notebooks test-py test-notebooks bench eval clean check-chromium

help:
	@echo "make demo    create .venv, install (with JupyterLab), load the bundled sample, run the pipeline, write reports, paper-trade,"
	@echo "             then serve live dashboards over a paper session (workbench up; workbench down stops it)"
	@echo "make lab     open the notebooks in JupyterLab on http://127.0.0.1:$(LAB_PORT) with the workbench kernel"
	@echo "make test    install test dependencies, lint, check layers and notebooks, run every test"
	@echo "make bench   run the benchmarks (not part of make test); results in benchmarks/results/"
	@echo "make eval    the sentiment table of docs/models.md, MiniLM fine-tuning included (not part of make test)"
	@echo "make format  ruff format + fix"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# stamp files: reinstall only when the dependency list changes
# the Jupyter kernel "workbench" (notebooks, papermill, nbval) runs inside .venv
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	$(PY) -m ipykernel install --sys-prefix --name workbench --display-name "Python (workbench)" >/dev/null
	@touch $@

# JupyterLab (the [notebook] extra): `make demo` and `make lab` (and `make test`, which checks `make lab`)
$(VENV)/.installed-notebook: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q -e '.[notebook]'
	@touch $@

# Voilà and widgets (the [dashboards] extra): `make demo` ends with `workbench up`
$(VENV)/.installed-dashboards: pyproject.toml $(VENV)/.installed-notebook
	$(PY) -m pip install -q -e '.[dashboards]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-notebook
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(PY)
install: $(VENV)/.installed
install-dashboards: $(VENV)/.installed-dashboards
install-test: $(VENV)/.installed-test
install-notebook: $(VENV)/.installed-notebook

demo: install-notebook install-dashboards
	$(WB) init --sample
	$(WB) data ls
	$(WB) data audit
	$(WB) pipeline run
	$(WB) backtest --strategy sma_cross -e binance -s BTC/USDT -t 1h -p fast=10 -p slow=50 \
		--fees 0.001 --slippage 0.0005 --report data/reports/sma_cross.html --json data/reports/sma_cross.json
	$(WB) sweep --strategy sma_cross -e binance -s BTC/USDT -t 1h --grid fast=5:50:5 --grid slow=20:200:10 \
		--top 10 --html data/reports/sma_cross_sweep.html
	$(WB) paper-demo --session demo --fresh --bars 120
	$(WB) trade status --session demo
	@echo "run folders (executed notebooks, HTML exports, manifest.json): data/runs/"
	@echo "reports: data/reports/ and data/reports/../runs/*/  (open the .html files in a browser)"
	@echo "paper session: data/trading/sessions/demo/ (workbench journal export --session demo); docs/trading.md"
	@echo "notebooks: make lab  (JupyterLab on 127.0.0.1, kernel 'Python (workbench)')"
	$(WB) down
	$(WB) up

# JupyterLab on the loopback interface only, in notebooks/, the workbench kernel by default; Ctrl-C stops it.
# LAB_FLAGS: more options (as root, --allow-root is added: Jupyter refuses root otherwise)
LAB_PORT ?= 8888
LAB_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: install-notebook
	cd notebooks && $(abspath $(VENV))/bin/jupyter lab --ip=127.0.0.1 --no-browser --port=$(LAB_PORT) \
		--MappingKernelManager.default_kernel_name=workbench $(LAB_FLAGS)

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check-notebooks: install-test
	$(PY) tools/check_notebooks.py notebooks dashboards

test-py: install-test
	$(PY) -m pytest tests -q

test-notebooks: install-test
	WORKBENCH_HOME=$$(mktemp -d) $(PY) -m pytest --nbval-lax --nbval-kernel-name workbench -p no:cacheprovider notebooks -q

# the browser tests (tests/browser/) drive Debian's chromium through Playwright; never `playwright install`
CHROMIUM ?= /usr/bin/chromium
check-chromium:
	@test -x $(CHROMIUM) || { echo "make test: $(CHROMIUM) is missing; the browser tests need Debian's chromium package:" \
		"sudo apt-get install -y chromium (.ci/run installs it)" >&2; exit 1; }

test: check-chromium lint check-notebooks test-py test-notebooks

bench: install-test
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/bench_store.py
	$(PY) benchmarks/bench_backtest.py
	$(PY) benchmarks/bench_speed.py
	$(PY) benchmarks/bench_ml.py
	$(PY) benchmarks/bench_trading.py

# fits every sentiment model on the train split, chooses on valid, reports on test; fails below the floors
eval: install-test
	$(PY) tools/eval_sentiment.py --out benchmarks/results/sentiment_eval.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info $${XDG_CACHE_HOME:-$$HOME/.cache}/workbench/numba
