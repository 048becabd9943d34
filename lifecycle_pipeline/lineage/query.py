"""Read recorded lineage back from a Dagster instance: what the UI shows, as plain values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.events import DagsterEventType


def metadata_values(record: Any) -> dict[str, Any]:
    """A materialization's metadata as plain Python values."""
    materialization = record.asset_materialization
    return {key: entry.value for key, entry in materialization.metadata.items()}


AssetRef = str | Sequence[str] | dg.AssetKey


def asset_key(asset: AssetRef) -> dg.AssetKey:
    """A key given as a key, its path or its user string (``fraud/trained_model``)."""
    if isinstance(asset, dg.AssetKey):
        return asset
    if isinstance(asset, str):
        return dg.AssetKey.from_user_string(asset)
    return dg.AssetKey(list(asset))


def latest(instance: dg.DagsterInstance, asset: AssetRef, partition: str) -> Any | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key(asset), asset_partitions=[partition]), limit=1
    ).records
    return records[0] if records else None


def history(
    instance: dg.DagsterInstance, asset: AssetRef, partition: str, limit: int = 1000
) -> list[Any]:
    """Materializations of one partition, oldest first."""
    return list(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key(asset), asset_partitions=[partition]),
            limit=limit,
            ascending=True,
        ).records
    )


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class VersionSummary:
    """One row of the demo's summary table, read only from the instance."""

    partition: str
    md5: str
    commit: str
    fingerprint: str
    metrics: dict[str, float]
    gates_passed: int
    gates_total: int
    run_id: str
    checks: dict[str, CheckOutcome]

    @property
    def verdict(self) -> str:
        return "PASS" if self.checks and all(c.passed for c in self.checks.values()) else "FAIL"

    @property
    def reproduced(self) -> str:
        """'yes' only when an earlier training with identical inputs was actually compared."""
        check = next(
            (c for name, c in self.checks.items() if name.endswith("trained_model:reproducible")),
            None,
        )
        if check is None:
            return "n/a"
        if check.metadata.get("verdict") == "unknown":
            return "unknown"
        if not check.passed:
            return "NO"
        if "compared_run" in check.metadata:
            return "yes"
        changed = check.metadata.get("changed_inputs")
        return f"new ({', '.join(changed)})" if changed else "first"


def check_results(instance: dg.DagsterInstance, run_id: str) -> dict[str, CheckOutcome]:
    """Every asset check evaluated in a run, keyed ``asset:check``."""
    results: dict[str, CheckOutcome] = {}
    records = instance.get_records_for_run(
        run_id=run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    )
    for record in records.records:
        data: Any = record.event_log_entry.get_dagster_event().event_specific_data
        results[f"{data.asset_key.to_user_string()}:{data.check_name}"] = CheckOutcome(
            passed=bool(data.passed),
            description=str(data.description or ""),
            metadata={k: v.value for k, v in data.metadata.items()},
        )
    return results


def summarize(
    instance: dg.DagsterInstance, model_name: str, partition: str
) -> VersionSummary | None:
    """One version of one model, read from the instance (None while a stage is missing)."""
    snapshot = latest(instance, [model_name, "data_snapshot"], partition)
    model = latest(instance, [model_name, "trained_model"], partition)
    evaluation = latest(instance, [model_name, "evaluation"], partition)
    if snapshot is None or model is None or evaluation is None:
        return None
    data, trained, scores = (metadata_values(r) for r in (snapshot, model, evaluation))
    return VersionSummary(
        partition=partition,
        md5=str(data["dvc/md5"]),
        commit=str(data["git/commit"]),
        fingerprint=str(trained["model/fingerprint"]),
        metrics={
            k.removeprefix("metric/"): float(v)
            for k, v in scores.items()
            if k.startswith("metric/")
        },
        gates_passed=int(scores["gates/passed"]),
        gates_total=int(scores["gates/total"]),
        run_id=evaluation.run_id,
        checks=check_results(instance, evaluation.run_id),
    )


def format_table(rows: list[VersionSummary], metrics: list[str] | None = None) -> str:
    """One line per version; ``metrics`` (default: the first four every row has) as columns.

    A metric a row does not have is shown as "n/a", never as a number.
    """
    if metrics is None:
        common = [m for m in rows[0].metrics if all(m in r.metrics for r in rows)] if rows else []
        metrics = common[:4]
    header = ("version", "data md5", "registry commit", *metrics, "fingerprint", "reproduced",
              "checks")  # fmt: skip
    lines: list[tuple[str, ...]] = [
        (
            row.partition,
            row.md5[:12],
            row.commit[:10],
            *(f"{row.metrics[m]:.4f}" if m in row.metrics else "n/a" for m in metrics),
            row.fingerprint[:16],
            row.reproduced,
            f"{row.verdict} {sum(c.passed for c in row.checks.values())}/{len(row.checks)}",
        )
        for row in rows
    ]
    return render_table(header, lines)


def render_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Plain-text columns, each as wide as its widest cell."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]

    def render(cells: tuple[str, ...] | list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join(
        [render(header), render(["-" * w for w in widths]), *(render(row) for row in rows)]
    )
