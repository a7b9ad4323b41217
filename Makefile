# speechkit: `make demo` runs the mini recipe end to end; `make test` runs the test suite.
# Both install what they need first (Debian packages, .venv, KenLM tools).
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := espeak-ng flite cmake g++ libboost-program-options-dev libboost-system-dev \
	libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev libsndfile1 sctk \
	fluidsynth timgm6mb-soundfont
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install apt kenlm test test-fast demo bench lint clean

install: $(VENV)/.installed kenlm

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "apt-get install:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi

$(VENV)/.installed: setup.cfg pyproject.toml | apt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

kenlm: $(VENV)/.installed
	bash scripts/build_kenlm.sh $(VENV)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash recipes/mini/run.sh

bench: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash benchmarks/run_all.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
