# Two commands do all the set-up from a fresh clone:
#   make test    -- install into .venv, then unit tests + every notebook under nbval (small profile, offline)
#   make course  -- install into .venv, then execute every notebook in the default profile into build/
# and `make lab` starts JupyterLab on notebooks/.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?=

.PHONY: install test course lab lint clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# The test suite: offline, small profile, every notebook executed by nbval.
test: install
	COURSE_PROFILE=small HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg \
	  $(PY) -m pytest tests notebooks --ignore=notebooks/zh --nbval-lax --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider

lint: install
	$(PY) -m ruff check .

course: install
	$(PY) -m course_utils.run_course --out build $(if $(PROFILE),--profile $(PROFILE),)

lab: install
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf build .pytest_cache .ruff_cache
