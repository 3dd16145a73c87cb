# Two commands do all the set-up from a fresh clone:
#   make test    -- install into .venv, then unit tests + every notebook under nbval (small profile, offline)
#   make course  -- install into .venv, then execute every notebook in the default profile into build/
# and `make lab` starts JupyterLab on notebooks/. `make test-browser` runs chapters 0-2 (and a Chinese one)
# in JupyterLab in headless Chromium and checks what the page shows (screenshots in build/screenshots/).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?=

.PHONY: install test test-browser browser-deps course lab lint clean wheelhouse test-wheelhouse caches slides

# The offline classroom kit: `make wheelhouse` downloads every wheel the course installs (requirements.txt,
# the build tools below, and with BROWSER=1 tests/browser/requirements.txt) for this machine's platform and
# Python into $(WHEELHOUSE)/. When $(WHEELHOUSE)/.complete exists, `make install` installs from that folder
# alone (--no-index): copy the clone with its wheelhouse/ to a machine with no network and run make install.
WHEELHOUSE ?= wheelhouse
# what make install upgrades pip to and builds course_utils with (pyproject.toml's build-system)
BUILD_TOOLS := pip==26.3 setuptools==84.2.1
BROWSER ?=
WHEELS := $(if $(wildcard $(WHEELHOUSE)/.complete),--no-index --find-links $(abspath $(WHEELHOUSE)),)

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(WHEELS),@echo "installing from $(WHEELHOUSE)/ alone (no package index)")
	$(PY) -m pip install --quiet $(WHEELS) --upgrade $(if $(WHEELS),$(filter pip==%,$(BUILD_TOOLS)),pip)
	$(PY) -m pip install --quiet $(WHEELS) -r requirements.txt
	$(PY) -m pip install --quiet $(WHEELS) --no-deps -e .
	touch $@

# pip download keeps the files already there, so a second run only fetches what changed. Wheels only
# (--only-binary): a machine with no network cannot build a package from source.
wheelhouse:
	$(PYTHON) -m pip download --quiet --only-binary=:all: --dest $(WHEELHOUSE) $(BUILD_TOOLS) -r requirements.txt \
	  $(if $(BROWSER),-r tests/browser/requirements.txt)
	touch $(WHEELHOUSE)/.complete
	@du -sh $(WHEELHOUSE)

# A fresh venv installed by `make install` from the wheelhouse alone, in a network namespace with no
# network and with pip's own configuration (indexes, find-links) switched off, then chapter 1 in `small`.
test-wheelhouse: install wheelhouse
	$(PY) -m pytest tests/test_wheelhouse.py --slow -v -p no:cacheprovider

# The test suite: offline, small profile, every notebook executed by nbval. One pytest worker per core
# (pytest-xdist; a notebook's cells stay together and in order: --dist loadfile), each with one thread, so
# workers never fight over cores (2 cores, 2026-11-23: 4 min 2 s, against 6 min 17 s in one process).
test: install
	COURSE_PROFILE=small HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 \
	  $(PY) -m pytest tests notebooks --ignore=notebooks/zh --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
	  -p no:cacheprovider -n auto --dist loadfile

# The browser test: JupyterLab in the small profile, driven by Playwright in Debian's Chromium (Playwright's
# own browser download is never used). Its one package lives in tests/browser/requirements.txt, so learners
# and `make test` don't install it. CHROMIUM=/path/to/chromium uses another Chromium and skips apt-get.
BROWSER_STAMP := $(VENV)/.installed-browser
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

test-browser: install $(BROWSER_STAMP) browser-deps
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest tests/browser -v -s -p no:cacheprovider

$(BROWSER_STAMP): tests/browser/requirements.txt $(STAMP)
	$(PY) -m pip install --quiet $(WHEELS) -r tests/browser/requirements.txt
	touch $@

# Debian's chromium, and a Chinese font so the Chinese chapter's screenshot is readable (once; ~1 min).
browser-deps:
	@test -n "$(CHROMIUM)" || { test -x /usr/bin/chromium && fc-list :lang=zh 2>/dev/null | grep -q .; } || { \
	  echo "apt-get install chromium fonts-wqy-microhei (log: build/apt-browser.log)"; mkdir -p build; \
	  { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
	    fonts-wqy-microhei; } > build/apt-browser.log 2>&1 || { tail -20 build/apt-browser.log; exit 1; }; }

# The caches the chapters fill on first run (MNIST when it can be downloaded, the drawn butterflies, the digit and
# butterfly scorers, chapter 3's pipeline for chapter 4, Hub models in `full` online) are made by running the
# course once with COURSE_DATA_DIR and HF_HOME in $(CACHE_DIR); copy that folder to each machine and point
# COURSE_DATA_DIR (and HF_HOME) at it. Default profile cpu: the executed notebooks land in build/ for make slides.
CACHE_DIR ?= course-data

caches: install
	COURSE_DATA_DIR=$(abspath $(CACHE_DIR)) HF_HOME=$(abspath $(CACHE_DIR))/huggingface \
	  $(PY) -m course_utils.run_course --out build --profile $(or $(PROFILE),cpu)
	@du -sh $(CACHE_DIR)

# Slides: a reveal.js deck per chapter and twin in build/slides/ (open build/slides/index.html; copy the folder
# to a USB stick, it needs no network). Outputs come from the executed notebooks in $(SLIDES_FROM) (make course
# PROFILE=cpu writes them there); a chapter not executed there gets a deck of its code without outputs.
# reveal.js, MathJax, jQuery and RequireJS: pinned in slides/package-lock.json, installed by npm (once).
SLIDES_FROM ?= build
NODE_STAMP := slides/node_modules/.installed

slides: install $(NODE_STAMP)
	$(PY) -m course_utils.slides --out build/slides --lib slides/node_modules \
	  $(if $(wildcard $(SLIDES_FROM)/*.ipynb),--executed $(SLIDES_FROM),)

$(NODE_STAMP): slides/package.json slides/package-lock.json
	npm ci --prefix slides --no-audit --no-fund --silent
	touch $@

lint: install
	$(PY) -m ruff check .

course: install
	$(PY) -m course_utils.run_course --out build $(if $(PROFILE),--profile $(PROFILE),)

lab: install
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf build .pytest_cache .ruff_cache
