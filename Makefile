# The two set-up commands of README.md.
PYTHON ?= python3

.PHONY: run test install install-dev chromium bench

install:
	$(PYTHON) -m pip install -q -r requirements.txt

install-dev:
	$(PYTHON) -m pip install -q -r requirements-dev.txt

## Install and start the app (starts the built-in ComfyUI simulator when no --comfy URL is given).
run: install
	$(PYTHON) app.py $(ARGS)

## Debian's Chromium, which the browser tests drive through Playwright; installed when missing
## (as root, from Debian's packages).
CHROMIUM := /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "make test needs Debian's chromium at $(CHROMIUM): apt-get install -y chromium (as root)" >&2; exit 1; }
	@test -x $(CHROMIUM) || { echo "chromium was installed but $(CHROMIUM) is missing" >&2; exit 1; }

## Install and run the whole test suite, the browser tests included (never skipped).
test: install-dev chromium
	$(PYTHON) -m pytest

bench: install-dev
	$(PYTHON) -m bench
