# adaptrx developer entry points. Every target that runs code first creates .venv and installs the package.
#
#   make demo       set up .venv, train a DAgger agent with the quick preset and compare it with the protocols
#   make test       ruff + the whole test suite, slow tests included (what .ci/run calls)
#   make test-fast  ruff + the tests not marked slow (the inner loop: about 1.5 minutes on 2 cores)
#   make bench      performance benchmarks (benchmarks/run.py)
#   make trial      rerun the committed trials (experiments/<condition>_trial/{test,ood}, ~4.5 min each)
#   make trial-report  re-analyse the committed trials from their stored results (no simulation)
#   make policy     retrain the shipped policies agents/dagger-<condition>-v0 with the paper preset (~6 min each)
#   make clinic-examples  regenerate the sample clinic histories and recommendations (experiments/clinic_examples)
#   make calibrate  regenerate the calibration table and figures under envs/calibration/
#   make lock       rewrite constraints.txt (exact dependency versions) from the current .venv
#   make clean      remove .venv and caches

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned in pyproject.toml; read the pin from there so the two cannot drift.
TORCH_VERSION := $(or $(shell sed -n 's/.*"torch==\([^"]*\)".*/\1/p' pyproject.toml),2.13.0)
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
# on a machine whose package index would otherwise serve the multi-GB CUDA build.
TORCH_PIP_ARGS ?=
# ruff only the folders that exist (benchmarks/ may not yet).
LINT_PATHS := $(wildcard src tests benchmarks)

.DEFAULT_GOAL := help
.PHONY: help install lock demo test test-fast bench trial trial-report policy clinic-examples calibrate clean

help:
	@sed -n 's/^#   make /make /p' Makefile

install: $(STAMP)

# torch goes in first, pinned: an unpinned resolve pulls a multi-GB CUDA build. Everything else is installed at the
# exact versions of constraints.txt, so that a fresh machine runs the code the committed numbers were made with.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "adaptrx needs Python >= 3.11; run e.g. 'make PYTHON=python3.11 $(MAKECMDGOALS)'" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install 'torch==$(TORCH_VERSION)' $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -e '.[dev,web]' -c constraints.txt
	touch $@

lock: $(STAMP)
	{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

demo: $(STAMP)
	$(BIN)/adaptrx-train experiment=quick

# -m "slow or not slow" selects every test, slow ones included, whatever a default -m elsewhere says.
test: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/pytest -q -n 2 -m "slow or not slow"

# Skips @pytest.mark.slow: trainings, subprocess CLIs, the browser, fuzzers, the committed-trial reruns.
test-fast: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/pytest -q -n 2 -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# The four conditions of the shipped policies and the committed trials.
CONDITIONS := knee_oa chronic_low_back_pain fibromyalgia lumbar_spinal_stenosis

# The committed trial reports: the paper preset (its shipped agent, the oracle, population_best and the clinical
# protocols) on the test and the ood split of each condition (tables, figures, report.md; a folder's README.md
# with the conclusions is written by hand and never overwritten).
trial: $(STAMP)
	for c in $(CONDITIONS); do for split in test ood; do rm -rf experiments/$${c}_trial/$$split && \
		$(BIN)/adaptrx-trial preset=paper cohort.condition=$$c cohort.split=$$split \
			hydra.run.dir=experiments/$${c}_trial/$$split || exit 1; done; done
	$(BIN)/python -c 'from pathlib import Path; from adaptrx.clinic.evidence import write; print(write(Path.cwd()))'

# The shipped policies, one per condition: train with the paper preset into a fixed run directory, copy its
# policy/ folder and append the hand-written development notes (methods and variants tried) to the card.
# SOURCE_DATE_EPOCH = the shipped manifest's time: a retrain that gives the same weights keeps the policy id.
policy: $(STAMP)
	for c in $(CONDITIONS); do name=dagger-$$c-v0 && rm -rf outputs/paper/$$name && \
		epoch=$$($(BIN)/python -c 'import datetime, json, sys; print(int(datetime.datetime.fromisoformat(json.load(open(sys.argv[1]))["created"]).timestamp()))' agents/$$name/manifest.json 2>/dev/null || true) && \
		SOURCE_DATE_EPOCH=$$epoch $(BIN)/adaptrx-train experiment=paper env=$$c hydra.run.dir=outputs/paper/$$name && \
		rm -rf agents/$$name && mkdir -p agents && cp -r outputs/paper/$$name/policy agents/$$name && \
		cat agents/notes/dagger.md >> agents/$$name/card.md || exit 1; done

# Re-analyse the committed trials (statistics, figures, TensorBoard, report.md) from their stored results with
# today's analysis code; nothing is simulated (seconds, where make trial takes about 35 min).
trial-report: $(STAMP)
	for c in $(CONDITIONS); do for split in test ood; do \
		$(BIN)/adaptrx-trial-report experiments/$${c}_trial/$$split || exit 1; done; done
	$(BIN)/python -c 'from pathlib import Path; from adaptrx.clinic.evidence import write; print(write(Path.cwd()))'

clinic-examples: $(STAMP)
	$(BIN)/python experiments/clinic_examples/generate.py

calibrate: $(STAMP)
	$(BIN)/python -m adaptrx.patient.calibration

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
