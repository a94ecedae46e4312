# Fresh-machine entry points. torch is installed first, pinned (a bare `torch` requirement
# could pull another, multi-GB CUDA build). This project's machines resolve the pin to a
# local CPU wheel; elsewhere set TORCH_INDEX=https://download.pytorch.org/whl/cpu for the
# CPU build.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
STAMP  := $(VENV)/.kgsampler-installed

.PHONY: run test docs install scatter clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q '.[test,plot]'
	touch $(STAMP)

# (Re)install the package itself (not editable) so the CLI and tests use the packaged configs.
install: $(STAMP)
	$(BIN)/pip install -q --no-deps --force-reinstall .

# Main job: train MF with the flagship sampler on the built-in dataset; prints metrics,
# writes outputs/<date>/<time>/metrics.json.
run: install
	$(BIN)/kgsampler-train

test: install
	$(BIN)/python -m pytest -q tests

# The documentation site (Sphinx, autodoc over the docstrings, the Markdown pages of docs/),
# warnings as errors; opens at docs/_build/html/index.html.
docs: $(STAMP)
	$(BIN)/pip install -q '.[docs]'
	$(BIN)/sphinx-build -E -q -W --keep-going -b html docs docs/_build/html

# Optional fast paths (compiled from source here: ~6 min for torch-scatter, ~20 for torch-sparse).
scatter: $(STAMP)
	$(BIN)/pip install --no-build-isolation torch-scatter
	$(BIN)/pip install --no-build-isolation torch-sparse

clean:
	rm -rf $(VENV) build src/*.egg-info outputs multirun docs/_build
