# Two commands do all the set-up from a fresh clone:
#   make test    -- install into .venv, then unit tests + every notebook under nbval (small profile, offline)
#                   (`make test-online`: the online path against a Hub on 127.0.0.1; `make test-colab`: the
#                   notebooks in a fresh venv with the newest versions the package's own requirements allow)
#   make course  -- install into .venv, then execute every notebook in the default profile into build/
# and `make lab` starts JupyterLab on notebooks/. `make test-browser` runs chapters 0-2 (and a Chinese one)
# in JupyterLab in headless Chromium and checks what the page shows (screenshots in build/screenshots/).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?=

.PHONY: install test test-online test-colab test-browser browser-deps course lab lint clean wheelhouse test-wheelhouse \
  caches slides site test-site

# The offline classroom kit: `make wheelhouse` downloads every wheel the course installs (requirements.txt,
# the build tools below, and with BROWSER=1 tests/browser/requirements.txt and course_tools/site/requirements.txt)
# for this machine's platform and Python into $(WHEELHOUSE)/. When $(WHEELHOUSE)/.complete exists, `make install`
# installs from that folder alone (--no-index): copy the clone with its wheelhouse/ to a machine with no network
# and run make install.
WHEELHOUSE ?= wheelhouse
# what make install upgrades pip to and builds course_utils with (pyproject.toml's build-system)
BUILD_TOOLS := pip==26.3 setuptools==84.2.1
BROWSER ?=
WHEELS := $(if $(wildcard $(WHEELHOUSE)/.complete),--no-index --find-links $(abspath $(WHEELHOUSE)),)

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "error: $(PYTHON) is $$($(PYTHON) -V 2>&1); the pinned requirements need 3.11+: make PYTHON=python3.11 $(MAKECMDGOALS)"; \
	  exit 1; }
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
	  $(if $(BROWSER),-r tests/browser/requirements.txt -r course_tools/site/requirements.txt)
	touch $(WHEELHOUSE)/.complete
	@du -sh $(WHEELHOUSE)

# A fresh venv installed by `make install` from the wheelhouse alone, in a network namespace with no
# network and with pip's own configuration (indexes, find-links) switched off, then chapter 1 in `small`.
test-wheelhouse: install wheelhouse
	$(PY) -m pytest tests/test_wheelhouse.py --slow -v -p no:cacheprovider

# The test suite: offline, small profile, every notebook executed by nbval. One pytest worker per core
# (pytest-xdist; a notebook's cells stay together and in order: --dist loadfile), each with one thread, so
# workers never fight over cores (measured times: docs/measurements.md); the slowest fifteen are listed
# at the end (--durations), to see where the time goes.
test: install
	COURSE_PROFILE=small HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 \
	  $(PY) -m pytest tests notebooks --ignore=notebooks/zh --ignore=tests/test_online.py --nbval-lax \
	  --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider -n auto --dist loadfile --durations=15

# The online path, with no internet: a Hub on 127.0.0.1 (tests/hub_server.py) stands in for huggingface.co
# (HF_ENDPOINT) and for MNIST's mirror (COURSE_MNIST_MIRROR), with small stand-ins under the real repo ids.
# Every chapter with an online branch runs online in the small profile (0, 1, 3, 4, 5, 7): MNIST downloaded, the
# Hub dataset and the Hub model loaded by id, chapter 5's script on --dataset_name, chapter 4's upload made and
# loaded back; tests/test_online.py runs the script's --push_to_hub (its up-front checks, the upload, reloaded).
# Caches live in a temporary HF_HOME; the proxies point at a closed port, so any other host fails at once.
ONLINE_NOTEBOOKS := $(addprefix notebooks/,00_setup_and_data.ipynb 01_diffusion_from_scratch.ipynb \
  03_training_butterflies.ipynb 04_pipelines_save_load_share.ipynb 05_scaling_up_accelerate.ipynb \
  07_guidance_and_conditioning.ipynb)

test-online: install
	COURSE_PROFILE=small MPLBACKEND=Agg OMP_NUM_THREADS=1 $(PY) tests/hub_server.py --expect "download mnist" \
	  --expect "download datasets/huggan/smithsonian_butterflies_subset" \
	  --expect "download models/johnowhitaker/ddpm-butterflies-32px" \
	  --expect "upload models/learner/ddpm-butterflies-32px" -- \
	  $(PY) -m pytest tests/test_online.py $(ONLINE_NOTEBOOKS) --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=600 -p no:cacheprovider -n auto --dist loadfile

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

# The Colab install, tested: a fresh venv (build/colab-venv) gets what a notebook's install cell gets -- the
# package with only its own loose requirements (pyproject.toml), the newest versions the registry has, no
# requirements.txt -- then every notebook runs in the small profile (offline, like `make test`). Not in .ci/run:
# its result depends on what the registry offers that day, and it downloads several GB (torch with CUDA).
# The versions it got go to build/colab-versions.txt.
COLAB_VENV := build/colab-venv
COLAB_PY   := $(COLAB_VENV)/bin/python

test-colab:
	rm -rf $(COLAB_VENV)
	$(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_PY) -m pip install --quiet --upgrade pip
	$(COLAB_PY) -m pip install --quiet . pytest nbval ipykernel pytest-xdist
	cd build && env -u PYTHONPATH ../$(COLAB_PY) ../tests/versions.py | tee colab-versions.txt
	env -u PYTHONPATH COURSE_PROFILE=small HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 \
	  $(COLAB_PY) -m pytest notebooks --ignore=notebooks/zh --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
	  -p no:cacheprovider -n auto --dist loadfile

# The caches the chapters fill on first run (MNIST when it can be downloaded, the drawn butterflies, the digit and
# butterfly scorers, chapter 3's pipeline for chapter 4, Hub models in `full` online) are made by running the
# course once with COURSE_DATA_DIR and HF_HOME in $(CACHE_DIR); copy that folder to each machine and point
# COURSE_DATA_DIR (and HF_HOME) at it. Default profile cpu: the executed notebooks land in build/ for make slides.
CACHE_DIR ?= course-data

caches: install
	COURSE_DATA_DIR=$(abspath $(CACHE_DIR)) HF_HOME=$(abspath $(CACHE_DIR))/huggingface \
	  $(PY) -m course_tools.run_course --out build --profile $(or $(PROFILE),cpu)
	@du -sh $(CACHE_DIR)

# Slides: a reveal.js deck per chapter and twin in build/slides/ (open build/slides/index.html; copy the folder
# to a USB stick, it needs no network). Outputs come from the executed notebooks in $(SLIDES_FROM) (make course
# PROFILE=cpu writes them there); a chapter not executed there gets a deck of its code without outputs.
# reveal.js, MathJax, jQuery and RequireJS: pinned in slides/package-lock.json, installed by npm (once).
SLIDES_FROM ?= build
NODE_STAMP := slides/node_modules/.installed

slides: install $(NODE_STAMP)
	$(PY) -m course_tools.slides --out build/slides --lib slides/node_modules \
	  $(if $(wildcard $(SLIDES_FROM)/*.ipynb),--executed $(SLIDES_FROM),)

$(NODE_STAMP): slides/package.json slides/package-lock.json
	npm ci --prefix slides --no-audit --no-fund --silent
	touch $@

# The website: every chapter and twin with its run's outputs, the docs pages and search, in build/site/ (Sphinx +
# myst-nb, why: README). Outputs come from the executed notebooks in $(SITE_FROM) (make course PROFILE=cpu writes
# build/); a chapter not executed there is said in one line and its page shows the code without outputs. Its
# packages: course_tools/site/requirements.txt (installed here, not by make install); MathJax: slides/node_modules.
SITE_FROM ?= build
SITE_OUT ?= build/site
SITE_STAMP := $(VENV)/.installed-site
SITE_TEST := build/site-test

site: install $(SITE_STAMP) $(NODE_STAMP)
	$(PY) -m course_tools.site --out $(SITE_OUT) --lib slides/node_modules \
	  $(if $(wildcard $(SITE_FROM)),--executed $(SITE_FROM),)

$(SITE_STAMP): course_tools/site/requirements.txt $(STAMP)
	$(PY) -m pip install --quiet $(WHEELS) -r course_tools/site/requirements.txt
	touch $@

# The website as a learner's browser shows it: built from a `small` run of every chapter (in build/site-test/),
# then every page opened in headless Chromium (tests/site); screenshots in build/screenshots/.
test-site: install $(SITE_STAMP) $(NODE_STAMP) $(BROWSER_STAMP) browser-deps
	COURSE_PROFILE=small HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 \
	  $(PY) -m course_tools.run_course --profile small --out $(SITE_TEST)/run
	$(PY) -m course_tools.site --out $(SITE_TEST)/site --lib slides/node_modules --executed $(SITE_TEST)/run
	CHROMIUM=$(CHROMIUM) COURSE_SITE=$(SITE_TEST)/site $(PY) -m pytest tests/site -v -p no:cacheprovider

lint: install
	$(PY) -m ruff check .

course: install
	$(PY) -m course_tools.run_course --out build $(if $(PROFILE),--profile $(PROFILE),)

lab: install
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf build .pytest_cache .ruff_cache
