# `make run` and `make test` work on a fresh machine: they build .venv from the pinned requirements
# and, unless DATABASE_URL is set, start an embedded PostgreSQL (data under .data/).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
INCIDENTS ?= 1000000
# pytest-xdist workers for `make test` (auto: one per core); TEST_WORKERS=0 runs the suite in one process.
# loadgroup: the tests of one `xdist_group` (the replica tests) run in one worker.
TEST_WORKERS ?= auto

# Every recipe that touches the database starts with this: use DATABASE_URL if given, otherwise
# start (or reuse) the embedded server and point at it.
WITH_DB = export DATABASE_URL="$${DATABASE_URL:-$$($(PY) -m tracker.embedded_db)}" && export DJANGO_DEBUG="$${DJANGO_DEBUG:-1}"

.PHONY: help install run setup test smoke lint browser gettext bench demo-data stop-db clean messages

help:
	@echo "make install    build .venv from the pinned requirements"
	@echo "make run        set up, migrate, load sample data, serve at http://$(HOST):$(PORT) (PORT=… for another)"
	@echo "make smoke      set up as make run does, then one request to the admin's login and one to /"
	@echo "make test       set up and run the whole test suite (TEST_WORKERS=0: in one process)"
	@echo "make browser    install Debian's chromium and fonts-nanum for the browser tests"
	@echo "make lint       ruff check + ruff format --check"
	@echo "make messages   refresh and compile the translation catalogs (needs Debian's gettext)"
	@echo "make demo-data  generate INCIDENTS=$(INCIDENTS) synthetic incidents"
	@echo "make bench      run the benchmarks under bench/ (needs demo data)"
	@echo "make stop-db    stop the embedded PostgreSQL"
	@echo "make clean      stop the embedded PostgreSQL, delete .venv, .data and staticfiles"

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@python=$$(scripts/find-python) && echo "Using $$python" && "$$python" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

install: $(VENV)/.installed

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads its own).
browser:
	@command -v chromium >/dev/null || { \
	  echo "Installing Debian's chromium for the browser tests…"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@# A Korean font, so that the public pages' Korean screenshots can be read (tests/test_browser_public.py).
	@fc-list 2>/dev/null | grep -qi nanum || { \
	  echo "Installing Debian's fonts-nanum for the Korean pages' screenshots…"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-nanum >/dev/null; }

# Migrate and load the sample data into a database that has none of its records yet; `run` then
# makes sure an admin account exists.
SETUP = $(PY) manage.py migrate --no-input && $(PY) manage.py load_sample

# `python manage.py …` typed later in this checkout uses the same settings (tracker/checkout_env.py).
REMEMBER_DB = $(PY) -m tracker.checkout_env save

# The background worker (duplicates rescored after each write) runs beside the server, and stops with it.
run: install
	@$(REMEMBER_DB) && $(WITH_DB) && $(SETUP) && \
	  $(PY) manage.py ensure_admin --url http://$(HOST):$(PORT)/admin/ && \
	  echo "Serving at http://$(HOST):$(PORT)/ (admin at /admin/, API at /api/v1/), with the background worker. Ctrl-C stops both." && \
	  { $(PY) manage.py db_worker --no-startup-delay & worker=$$!; \
	    trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT; \
	    $(PY) manage.py runserver $(HOST):$(PORT); }

# What CI runs without DATABASE_URL: the embedded server, the setup of `make run`, real requests
# (the admin's login page and the public browse page).
smoke: install
	@$(REMEMBER_DB) && $(WITH_DB) && $(SETUP) && $(PY) manage.py smoke_request && $(PY) manage.py smoke_request /

# GNU gettext's xgettext, with which a test checks that every catalog holds every marked message
# (tests/test_public_pages.py); `make messages` needs it too.
gettext:
	@command -v xgettext >/dev/null || { \
	  echo "Installing Debian's gettext for the translation catalogs' test…"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext >/dev/null; }

# The project's modules compiled first: with PYTHONDONTWRITEBYTECODE set (as on CI's machine) every
# process the suite starts (each worker, the commands and gunicorn servers tests start) compiled them
# again (tests/test_settings.py: 57 s of CPU, 50 s compiled first). They still read what is compiled,
# and Python compiles again what has changed since.
test: install browser gettext
	@$(PY) -m compileall -q manage.py accounts incidents tracker tests bench
	@$(WITH_DB) && $(PY) -m pytest --numprocesses $(TEST_WORKERS) --dist loadgroup --durations=25

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo-data: install
	@$(WITH_DB) && $(PY) manage.py migrate --no-input && $(PY) manage.py generate_demo_data --incidents $(INCIDENTS)

# The benchmarks that need what `make bench` cannot guess: bench_growth.py compares databases of
# different sizes, each named on its command line (`python bench/bench_growth.py --help`).
BENCH_NEEDS_ARGUMENTS := bench/bench_growth.py

# Every other script with its defaults, one after another; one that fails does not stop the others.
bench: install
	@$(WITH_DB) && $(PY) manage.py migrate --no-input || exit 1; \
	  failed=""; for script in bench/bench_*.py; do \
	    if [[ " $(BENCH_NEEDS_ARGUMENTS) " == *" $$script "* ]]; then \
	      echo "Skipping $$script: it needs arguments ($(PY) $$script --help)."; continue; fi; \
	    $(PY) "$$script" || failed="$$failed $$script"; done; \
	  [ -z "$$failed" ] || { echo "Failed:$$failed"; exit 1; }

# Refresh the public pages' translation catalogs (locale/*/LC_MESSAGES/django.po) from the code and
# templates, and compile them. The compiled .mo files are committed, so that `make run` needs no
# GNU gettext; this target does (Debian's `gettext`).
messages: install gettext
	@$(WITH_DB) && $(PY) manage.py makemessages --all --no-location -i ".venv/*" -i "staticfiles/*" -i "static/*" -i "templates/admin/*" \
	  && $(PY) manage.py compilemessages --ignore ".venv/*"

stop-db:
	@[ ! -x $(PY) ] || $(PY) -m tracker.embedded_db stop

clean: stop-db
	rm -rf $(VENV) .data staticfiles
