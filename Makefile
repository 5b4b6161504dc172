# Two commands: `make demo` (built-in end-to-end run) and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export WANDB_MODE ?= disabled
export HF_HUB_OFFLINE ?= 0
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo grok test lint format setup clean-outputs browser

setup: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml requirements-bench.txt requirements-crosscheck.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: on a CPU machine this takes the CPU wheel and no CUDA packages.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	# the libraries the cross-check tests compare against (SAEBench, sparsify), without their own
	# dependencies so that nothing pinned above moves; `pip check` would only list their unmet pins.
	$(PY) -m pip install -q --no-deps -r requirements-crosscheck.txt -r requirements-bench.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . || $(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# The demo writes its results page to plots/demo/RESULTS.md (git-ignored: a clone stays clean); README's
# snapshot is rewritten only by maintainers: `make demo ARGS=--update_readme`.
demo: $(STAMP)
	$(PY) -m lorasae.demo $(ARGS)

# The grokking study (README "The grokking study"), offline on CPU, with the README's clamp settings;
# ARGS passes more flags to eval/grok/run.py (its defaults clamp from the pre checkpoint to the grok step).
# eval/grok/run.py pins one float path (lorasae/core/cpu_numerics.py), so every x86 CPU gives the same numbers.
GROK_ARGS ?= --clamp_from_step 300 --clamp_steps 150 --n_clamp 16
grok: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) eval/grok/run.py $(GROK_ARGS) $(ARGS)

test: $(STAMP) browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(ARGS)

# Headless Chromium for the dashboard browser test (tests/test_dashboard.py): Debian's package, installed
# when missing and we are root with apt (CI); otherwise a note (the test then skips, and fails under CI=true).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }; \
	else echo "note: chromium is not installed (apt-get install chromium); the dashboard browser test skips"; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .
