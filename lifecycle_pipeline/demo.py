"""The embedded-default demo: build the registry, add partitions, materialize, summarize.

Everything lands under ``LIFECYCLE_HOME`` (default ``.lifecycle/``) with SQLite storage and
telemetry off, so that `make ui` afterwards shows the same instance. Running it again is safe:
the registry builder refuses to move tags, partitions are only added when missing, and a
re-materialization must reproduce the recorded fingerprints (the `reproducible` check).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from lifecycle_pipeline.assets.documentation import REASON_TAG
from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.lineage.query import (
    VersionSummary,
    format_table,
    latest,
    metadata_values,
    render_table,
    summarize,
)
from lifecycle_pipeline.registry_demo import build_demo_registry
from lifecycle_pipeline.settings import Settings

# Step logs stay in the instance (the UI shows them); the console gets a one-line summary.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def failure_summary(result: dg.ExecuteInProcessResult) -> str:
    """The root cause of each failed step, one line each, for a terminal."""
    lines = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None and error.cause is not None:
            error = error.cause
        message = error.message.strip().splitlines()[-1] if error else "unknown error"
        lines.append(f"  {event.step_key}: {message}")
    return "\n".join(lines)


def _root_causes(result: dg.ExecuteInProcessResult) -> list[str]:
    names: list[str] = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None and error.cause is not None:
            error = error.cause
        names.append(str(error.cls_name) if error else "")
    return names


def failed_on_input(result: dg.ExecuteInProcessResult) -> bool:
    """Every failed step was refused by a LifecycleError (bad input or evidence), not a defect.

    Dagster keeps only the class name of a step's exception, so the name is matched against
    every subclass of LifecycleError that is loaded.
    """
    from lifecycle_pipeline.errors import LifecycleError

    def subclasses(cls: type[LifecycleError]) -> set[str]:
        names = {cls.__name__}
        for sub in cls.__subclasses__():
            names |= subclasses(sub)
        return names

    known = subclasses(LifecycleError)
    causes = _root_causes(result)
    return bool(causes) and all(name in known for name in causes)


def failed_on_gates(result: dg.ExecuteInProcessResult) -> bool:
    """Every failed step was stopped by a failing blocking check (a gate): the version was
    judged and found wanting, which is a verdict, not a refusal of the input or a defect."""
    causes = _root_causes(result)
    return bool(causes) and all(name == "DagsterAssetCheckFailedError" for name in causes)


DAGSTER_YAML = """\
# Embedded default: SQLite run, event-log and schedule storage under this folder.
telemetry:
  enabled: false
"""


def prepare_environment(settings: Settings) -> None:
    """Point Dagster at the project-local instance and switch telemetry and analytics off."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home)))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")


def add_missing_partitions(
    instance: dg.DagsterInstance, keys: list[str], partitions: str
) -> list[str]:
    known = set(instance.get_dynamic_partitions(partitions))
    missing = [k for k in keys if k not in known]
    if missing:
        instance.add_dynamic_partitions(partitions, missing)
    return missing


def materialize_version(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    model: LoadedDeclaration,
    version: str,
    reason: str,
) -> dg.ExecuteInProcessResult:
    """One run of the model's lifecycle job for a data version that is already a partition,
    in this process (the demo and `lifecycle materialize`), with the reason the card quotes."""
    job = defs.resolve_job_def(model.scoped("lifecycle"))
    return job.execute_in_process(
        partition_key=version,
        instance=instance,
        raise_on_error=False,
        run_config=QUIET,
        tags={REASON_TAG: reason},
    )


def drift_table(instance: dg.DagsterInstance, model: LoadedDeclaration, batches: list[str]) -> str:
    rows: list[tuple[str, ...]] = []
    for batch in batches:
        record = latest(instance, model.key("drift_monitor"), batch)
        if record is None:
            continue
        meta = metadata_values(record)
        rows.append(
            (
                batch,
                str(meta["drift/verdict"]),
                f"{meta['drift/share']:.3f}",
                ", ".join(meta["drift/drifted_columns"]) or "-",
                str(meta.get("artifact/entry", "")),
            )
        )
    return render_table(("batch", "verdict", "drift share", "drifted columns", "report"), rows)


def gated_metrics(model: LoadedDeclaration) -> list[str]:
    """The summary's metric columns: what the model is gated on."""
    return list(model.model.evaluation.gates)


def run_demo(settings: Settings, echo: Callable[[str], None] = print) -> list[VersionSummary]:
    prepare_environment(settings)
    from lifecycle_pipeline.cli import current_registry
    from lifecycle_pipeline.declaration import current_declaration
    from lifecycle_pipeline.definitions import build_definitions

    model = current_declaration()
    defs = build_definitions(model=model)

    tags = build_demo_registry(
        settings.sample_data_dir, Path(settings.registry_url), Path(settings.registry_remote_url)
    )
    echo(f"registry {settings.registry_url}: {', '.join(f'{t}={m[:8]}' for t, m in tags.items())}")
    versions = current_registry().versions()
    with dg.DagsterInstance.get() as instance:
        added = add_missing_partitions(instance, versions, model.scoped("data_versions"))
        echo(f"partitions: {', '.join(versions)} ({len(added)} new)")
        for version in versions:
            reason = f"demo: train and document data version {version}"
            result = materialize_version(instance, defs, model, version, reason)
            echo(
                f"materialized {version}: {'success' if result.success else 'FAILED'} "
                f"(run {result.run_id})"
            )
            if not result.success:
                echo(failure_summary(result))
        rows = [row for v in versions if (row := summarize(instance, model.name, v)) is not None]
        batches = current_registry().batches()
        add_missing_partitions(instance, batches, model.scoped("production_batches"))
        drift = defs.resolve_job_def(model.scoped("drift"))
        for batch in batches:
            result = drift.execute_in_process(
                partition_key=batch, instance=instance, raise_on_error=False, run_config=QUIET
            )
            echo(
                f"drift monitor {batch}: {'success' if result.success else 'FAILED'} "
                f"(run {result.run_id})"
            )
            if not result.success:
                echo(failure_summary(result))
        drift_rows = drift_table(instance, model, batches)
    echo("")
    echo(format_table(rows, gated_metrics(model)))
    echo("")
    echo(drift_rows)
    echo(f"\nDagster instance: {os.environ['DAGSTER_HOME']}  (open it with `make ui`)")
    return rows
