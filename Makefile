# The two set-up commands of README.md.
PYTHON ?= python3

.PHONY: run test install install-dev bench

install:
	$(PYTHON) -m pip install -q -r requirements.txt

install-dev:
	$(PYTHON) -m pip install -q -r requirements-dev.txt

## Install and start the app (starts the built-in ComfyUI simulator when no --comfy URL is given).
run: install
	$(PYTHON) app.py $(ARGS)

## Install and run the whole test suite (browser tests need Debian's chromium: see .ci/run).
test: install-dev
	$(PYTHON) -m pytest

bench: install-dev
	$(PYTHON) -m bench
