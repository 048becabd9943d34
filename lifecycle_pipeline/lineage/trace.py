"""Follow recorded lineage: from one materialization to the exact upstream ones it consumed.

Every stage records ``upstream/<asset>`` metadata (URI, digest, run id) for what it loaded,
so the chain from a model card back to the data snapshot is read from the instance alone,
never re-derived from "the latest" of anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster._core.events import DagsterEventType

from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.lineage.query import AssetRef, asset_key
from lifecycle_pipeline.partitions import RunIdError, validate_run_id
from lifecycle_pipeline.resources.artifact_store import SHA_KEY


class LineageError(LifecycleError, LookupError):
    """A recorded upstream reference cannot be found in the instance."""


@dataclass(frozen=True)
class Materialization:
    """One recorded materialization and its metadata, as plain values."""

    asset: str
    partition: str | None
    run_id: str
    storage_id: int
    timestamp: float
    metadata: dict[str, Any]

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.timestamp, tz=UTC).isoformat(timespec="seconds")

    def source(self) -> dict[str, Any]:
        """The provenance stamp attached to every machine-filled documentation value."""
        return {"asset": self.asset, "partition": self.partition, "run_id": self.run_id}

    def cite(self) -> str:
        return f"{self.asset}@{self.partition} run {self.run_id[:8]}"

    @classmethod
    def from_record(cls, record: Any) -> Materialization:
        materialization = record.asset_materialization
        return cls(
            asset=materialization.asset_key.to_user_string(),
            partition=materialization.partition,
            run_id=record.run_id,
            storage_id=record.storage_id,
            timestamp=record.timestamp,
            metadata={k: v.value for k, v in materialization.metadata.items()},
        )


def in_run(
    instance: dg.DagsterInstance,
    asset: AssetRef,
    partition: str | None,
    run_id: str,
    sha256: str | None,
) -> Materialization:
    """The materialization of ``asset`` made in ``run_id`` (matching ``sha256`` when given)."""
    asset = asset_key(asset).to_user_string()
    try:
        validate_run_id(run_id, instance)
    except RunIdError as exc:
        raise LineageError(f"{asset}@{partition}: {exc}") from None
    records = instance.get_records_for_run(
        run_id=run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    for record in reversed(records):
        found = Materialization.from_record(record)
        same_output = found.asset == asset and found.partition == partition
        if same_output and (sha256 is None or found.metadata.get(SHA_KEY) == sha256):
            return found
    raise LineageError(
        f"No materialization of {asset}@{partition} with sha256 {sha256} in run {run_id}; "
        "the instance does not hold the lineage this artifact claims."
    )


def trace(instance: dg.DagsterInstance, start: Materialization) -> dict[str, Materialization]:
    """``start`` and every upstream materialization it transitively consumed, by asset."""
    found: dict[str, Materialization] = {start.asset: start}
    pending = [start]
    while pending:
        current = pending.pop()
        for key, ref in current.metadata.items():
            if not key.startswith("upstream/") or not isinstance(ref, dict):
                continue
            asset = key.removeprefix("upstream/")
            if asset in found:
                continue
            upstream = in_run(instance, asset, ref["partition"], ref["run_id"], ref["sha256"])
            found[asset] = upstream
            pending.append(upstream)
    return found


def previous_model_version(
    instance: dg.DagsterInstance, current: Materialization, limit: int = 200
) -> Materialization | None:
    """The latest evaluated model before ``current`` whose fingerprint differs from it.

    Read from the model's own history (its asset's materializations, newest first): first
    ``current`` is found there by its run, then the next older record with another
    fingerprint. ``current.storage_id`` is not used: read from a run's own records it is
    ordered only within that run (SQLite keeps one database per run), so comparing it with
    the instance-wide index answered "first model version" for every model but the first.

    None only when every earlier materialization was read (page by page) and none differs:
    a documentation bundle states "first model version" on that answer, so it is never a
    guess from a truncated page. A ``current`` the history does not hold is an error.
    """
    fingerprint = current.metadata.get("model/fingerprint")
    sha256 = current.metadata.get(SHA_KEY)
    cursor: str | None = None
    seen_current = False
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key(current.asset)),
            limit=limit,
            cursor=cursor,
            ascending=False,
        )
        for record in page.records:
            candidate = Materialization.from_record(record)
            if not seen_current:
                seen_current = (
                    candidate.run_id == current.run_id
                    and candidate.partition == current.partition
                    and candidate.metadata.get(SHA_KEY) == sha256
                )
                continue
            if candidate.metadata.get("model/fingerprint") != fingerprint:
                return candidate
        if not page.has_more:
            break
        cursor = page.cursor
    if not seen_current:
        raise LineageError(
            f"{current.cite()} is not in the instance's history of {current.asset}; its event "
            "index may be damaged: run `lifecycle doctor`."
        )
    return None
