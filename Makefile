# Two commands do all set-up on a fresh machine:
#   make demo   installs stemtf in .venv and separates the bundled example into separated/
#   make test   installs stemtf with its test extras in .venv and runs the whole test suite (CI)
# and a few more:
#   make check  the fast tier of the tests: the package's own contracts, no browsers or renderers
#   make serve  the web page;  make wheel  a wheel and an sdist in dist/;  make bench  the speed benchmark
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS_TEST := dev,train,eval,onnx,tflite,serve,beam,plots,notebooks
# What the demo's user tries next: `separate --plot` (matplotlib) and the web page (`make serve`).
EXTRAS_DEMO := plots,serve
# The fast tier: tests marked slow (long) or system (browsers, FluidSynth/Festival renders, a wheel
# build, notebook kernels, several training processes, the full-size shipped models) are left out.
CHECK_MARKERS := not slow and not system
# Extra flags of `python -m build` (e.g. --no-isolation, to build offline with this venv's setuptools).
BUILD_FLAGS ?=

.PHONY: demo test check wheel bench system-deps training-deps browser-deps web-runtime serve clean

# Debian packages go through scripts/apt-install.sh: only the missing ones, root or sudo, one line
# saying what to do when it cannot.

# ffmpeg decodes m4a/aac/mp4/... inputs (WAV/FLAC/OGG/MP3 need nothing beyond pip); an ffmpeg
# already on PATH, from anywhere, will do.
system-deps:
	@if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then \
		sh scripts/apt-install.sh --label system-deps ffmpeg; \
	fi

# FluidSynth, a GM SoundFont and Festival render the synthetic training songs (training/synth/);
# the test suite renders a tiny one.
training-deps:
	@sh training/synth/install-deps.sh

# Debian's chromium + chromium-driver and firefox-esr: the web page's tests drive them (no browser download).
browser-deps:
	@sh tests/install-browser.sh

# LiteRT.js (npm, pinned; node_modules/) for the page's "separate on this device"; Debian's npm is
# installed when missing. Never fails: without it the page separates on the server only.
web-runtime:
	@sh scripts/install-web-runtime.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Editable installs: the clone is the package (a plain `pip install .` would leave a copy, and build/).
$(VENV)/.installed-base: setup.cfg pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install -q -e ".[$(EXTRAS_DEMO)]"
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[$(EXTRAS_TEST)]"
	touch $@ $(VENV)/.installed-base

demo: system-deps $(VENV)/.installed-base
	$(BIN)/stemtf separate examples/caesium_excerpt.ogg --output-dir separated --overwrite

test: system-deps training-deps browser-deps web-runtime $(VENV)/.installed-test
	$(BIN)/python -m pytest

# A few minutes on 2 cores: what a change to the engine, the CLI or the server needs answered first.
check: system-deps $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "$(CHECK_MARKERS)"

# The web page on http://127.0.0.1:8501/ with the three shipped models; 4stems, the default of every
# other command, is preselected (the page offers them in this order) and answers TF Serving's REST API.
serve: system-deps web-runtime $(VENV)/.installed-base
	$(BIN)/stemtf serve 4stems --models 4stems,2stems,5stems

# dist/stemtf-VERSION-py3-none-any.whl and the sdist, with the shipped models inside. `build` is
# installed into the venv first: without it, `python -m build` finds pip's build/ folder instead.
wheel: | $(BIN)/python
	@$(BIN)/python -c "import build" 2>/dev/null || $(BIN)/pip install -q "build>=1.0"
	$(BIN)/python -m build $(BUILD_FLAGS) --outdir dist .

bench: system-deps $(VENV)/.installed-test
	$(BIN)/python benchmarks/separate_speed.py

clean:
	rm -rf $(VENV) separated build dist *.egg-info
