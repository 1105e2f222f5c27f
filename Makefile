# Two commands do all set-up on a fresh machine:
#   make demo   installs stemtf in .venv and separates the bundled example into separated/
#   make test   installs stemtf with its test extras in .venv and runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS_TEST := dev,train,eval,onnx,tflite,serve,beam,plots,notebooks

.PHONY: demo test bench system-deps training-deps browser-deps serve clean

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

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-base: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[$(EXTRAS_TEST)]"
	touch $@ $(VENV)/.installed-base

demo: system-deps $(VENV)/.installed-base
	$(BIN)/stemtf separate examples/caesium_excerpt.ogg --output-dir separated --overwrite

test: system-deps training-deps browser-deps $(VENV)/.installed-test
	$(BIN)/python -m pytest

# The web page on http://127.0.0.1:8501/ with the three shipped models.
serve: system-deps $(VENV)/.installed-test
	$(BIN)/stemtf serve --models 2stems,4stems,5stems

bench: system-deps $(VENV)/.installed-test
	$(BIN)/python benchmarks/separate_speed.py

clean:
	rm -rf $(VENV) separated build dist *.egg-info
