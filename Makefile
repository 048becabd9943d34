# Two commands from a fresh clone: `make demo`, then `make test`.
# Needs only python3 (3.11+) and git; uv is bootstrapped into .tools/ and installs the
# locked environment into .venv/.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
RUN := $(UV) run --frozen --no-sync

export UV_PYTHON_DOWNLOADS := never
# An unrelated activated virtualenv must not redirect uv away from this project's .venv.
unexport VIRTUAL_ENV
export DVC_NO_ANALYTICS := 1
export DAGSTER_HOME ?= $(CURDIR)/.lifecycle/dagster_home

.PHONY: install demo test lint ui summary clean bench-drift

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
	$(RUN) pytest -n 2 --dist loadgroup

lint: install
	$(RUN) ruff check lifecycle_pipeline tests bench
	$(RUN) ruff format --check lifecycle_pipeline tests bench
	$(RUN) mypy lifecycle_pipeline tests bench

## ui: the Dagster UI on http://127.0.0.1:3000 with the demo's instance
ui: install
	$(RUN) lifecycle summary
	$(RUN) dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

## bench-drift: drift monitor vs Evidently's default DataDriftPreset at 100k and 1M rows (minutes)
bench-drift: install
	$(RUN) dvc repro
	$(RUN) python bench/drift_monitor.py

summary: install
	$(RUN) lifecycle summary

clean:
	rm -rf .lifecycle .venv $(TOOLS)
