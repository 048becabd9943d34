# Two commands from a fresh clone: `make demo`, then `make test`.
# Needs only python3 (3.11+) and git; uv is bootstrapped into .tools/ and installs the
# locked environment into .venv/.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
RUN := $(UV) run --frozen --no-sync

export UV_PYTHON_DOWNLOADS := never
# Installed with bytecode: every process (the CLI, the code server, each test's subprocess)
# then starts without compiling Dagster's and scikit-learn's sources, also where
# PYTHONDONTWRITEBYTECODE keeps Python from caching them itself.
export UV_COMPILE_BYTECODE := 1
# An unrelated activated virtualenv must not redirect uv away from this project's .venv.
unexport VIRTUAL_ENV
export DVC_NO_ANALYTICS := 1
export DAGSTER_HOME ?= $(CURDIR)/.lifecycle/dagster_home

# The demo, the tests, the UI on the demo's instance and the benchmarks sign and key the audit
# log with development keys under .lifecycle/keys, allowed here explicitly: outside these
# targets, signing and the audit log refuse to start without configured keys
# (docs/governance.md, "Keys").
DEV_KEY_TARGETS := demo test ui summary bench-drift bench-calibrate bench bench-large \
	bench-models bench-quick bench-throughput mutate
$(DEV_KEY_TARGETS): export LIFECYCLE_DEV_KEYS := 1

.PHONY: install demo test lint ui summary clean bench-drift bench bench-large bench-quick bench-models bench-calibrate bench-throughput mutate

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

install: .venv/.synced

## demo: install from the lock, prepare sample data with DVC, materialize every data version
demo: install
	$(RUN) dvc repro
	$(RUN) lifecycle demo

## test: the whole test suite (real git + DVC registries, real Dagster instances)
test: install
	$(RUN) pytest -n 2 --dist loadgroup --durations=20

## lint: ruff, mypy, and pip-audit of uv.lock (an unreachable advisory service is reported, not failed)
lint: install
	$(RUN) ruff check lifecycle_pipeline tests bench .ci
	$(RUN) ruff format --check lifecycle_pipeline tests bench .ci
	$(RUN) mypy lifecycle_pipeline tests bench .ci/audit_deps.py
	$(RUN) python .ci/audit_deps.py

## ui: the Dagster UI on http://127.0.0.1:3000 with the demo's instance (every declared model)
ui: install
	$(RUN) lifecycle summary
	$(RUN) dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

## bench-drift: drift monitor vs Evidently's default DataDriftPreset at 100k and 1M rows (minutes)
bench-drift: install
	$(RUN) dvc repro
	$(RUN) python bench/drift_monitor.py

## bench-calibrate: drift thresholds before/after `lifecycle drift calibrate` at 60-row batches, both demo models -> bench/results/drift_calibration.json, BENCHMARKS.md (minutes)
bench-calibrate: install
	$(RUN) python -m bench.drift_calibration

## bench: lifecycle benchmarks at 10k, 100k, 1M (5M is bench-large) -> BENCHMARKS.md (~30 min)
bench: install
	$(RUN) dvc repro
	$(RUN) python -m bench.many_models
	$(RUN) python -m bench.lifecycle --profile

## bench-large: figures 1 and 3 at 5M rows, one repetition -> bench/results/lifecycle-large.json, BENCHMARKS.md (<= 40 min)
bench-large: install
	$(RUN) python -m bench.lifecycle --large

## bench-throughput: 8 models retrained at once through the daemon's run queue on the team profile (PostgreSQL), 1 and 2 workers, in-process and Dask -> bench/results/throughput.json, BENCHMARKS.md (~20 min; a quiet machine)
bench-throughput: install
	$(RUN) python -m bench.throughput

## bench-models: 1, 10 and 50 declared models x 20 versions: load, sensor tick, status (minutes)
bench-models: install
	$(RUN) python -m bench.many_models

## bench-quick: the lifecycle benchmarks at 10k and 100k only, no empty-cache reproduce (minutes)
bench-quick: install
	$(RUN) dvc repro
	$(RUN) python -m bench.lifecycle --sizes 10000 100000 --no-cold-cache --profile

summary: install
	$(RUN) lifecycle summary

## mutate: mutation testing (mutmut) of the governance, audit, checkpoint, package verification, fingerprint and gate modules against their fast tests -> bench/results/mutation.json; fails under a 90% kill rate (docs/mutation.md)
# One worker (--max-children 1): the other core stays free for other jobs. Tests that start the
# `lifecycle` CLI as a subprocess import the mutated copy through PYTHONPATH, so they see the
# mutant too. OMP_NUM_THREADS=1: mutmut forks each mutant's test run from a process that
# already fitted models, and an OpenMP thread pool (HistGradientBoosting) does not survive a
# fork: the child would hang until mutmut's timeout, counted as caught. mutants/ keeps each
# mutant's result: a rerun checks only the functions that changed.
mutate: install
	@mkdir -p mutants  # on PYTHONPATH from the start: Python skips a folder missing at startup
	PYTHONPATH=$(CURDIR)/mutants OMP_NUM_THREADS=1 $(RUN) mutmut run --max-children 1
	$(RUN) python -m bench.mutation_report

## clean: local state, environments and reproduction worktrees (git forgets them too)
clean:
	@git worktree list --porcelain 2>/dev/null | sed -n 's/^worktree //p' \
	  | grep -F "$(CURDIR)/.lifecycle/reproduce/worktrees/" \
	  | while IFS= read -r tree; do git worktree remove --force "$$tree" && echo "removed $$tree"; done; true
	rm -rf .lifecycle .venv $(TOOLS)
	@git worktree prune 2>/dev/null || true
