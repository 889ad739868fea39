# Two entry points (README "Set up"): `make quickstart` runs the whole loop on real small models,
# `make test` runs the test suite. Both install into a virtual environment (.venv, or VENV=...) with
# the tested versions in constraints.txt; nothing is installed outside it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The PyTorch build: the default one from PyPI (a CUDA build on x86-64 Linux). On a CPU-only machine,
# e.g. `make TORCH_INDEX=https://download.pytorch.org/whl/cpu quickstart`.
TORCH_INDEX ?=
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: install quickstart test clean-venv

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH_PIN)
	$(PIP) install --quiet -c constraints.txt -e ".[dev,quickstart]"
	touch $@

install: $(VENV)/.installed

quickstart: install
	$(PY) -m openavs_st.quickstart $(ARGS)

test: install
	$(PY) -m pytest -q $(ARGS)

clean-venv:
	rm -rf $(VENV)
