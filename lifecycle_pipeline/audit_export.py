"""One bundle holding everything about a model version, for an auditor who has no terminal.

The bundle is read from the Dagster instance (lineage and check verdicts), the artifact store
(the documentation bundle) and the audit log (approvals, deployment history, reproductions,
replays, and the runs as ingested), and written once into a new folder: ``audit.json``, a
standalone ``audit.html``, ``documentation/`` and ``checkpoint.json`` (the log's signed head).
The log is verified first; an export from a log that does not verify is refused.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import jinja2
from upath import UPath

from lifecycle_pipeline.audit_anchor import require_anchored
from lifecycle_pipeline.audit_checkpoint import write_checkpoint
from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.governance import jsonable, sync_runs
from lifecycle_pipeline.governance_log import CHANGES
from lifecycle_pipeline.lineage.audit import AuditError, AuditLog
from lifecycle_pipeline.lineage.query import check_results, latest
from lifecycle_pipeline.lineage.trace import Materialization, trace
from lifecycle_pipeline.partitions import validate_partition_key
from lifecycle_pipeline.resources.artifact_store import URI_KEY

# Newest first: the bundle starts from the furthest stage the version reached.
ENDPOINTS = ("deployment_package", "model_card", "evaluation", "trained_model", "data_snapshot")


def collect(
    instance: dg.DagsterInstance, model: LoadedDeclaration, log: AuditLog, version: str
) -> dict[str, Any]:
    validate_partition_key(version)
    report = require_anchored(instance, model, log, f"export of {version}")  # and witnesses
    sync_runs(instance, model.name, log)
    start = next(
        (r for a in ENDPOINTS if (r := latest(instance, model.key(a), version)) is not None), None
    )
    if start is None:
        raise AuditError(f"{version!r} has no materialization in this instance; nothing to export.")
    lineage = trace(instance, Materialization.from_record(start))
    checks = {}
    for made in lineage.values():
        for name, outcome in check_results(instance, made.run_id).items():
            if name.startswith(f"{made.asset}:"):
                checks[name] = {"passed": outcome.passed, "description": outcome.description}
    records = log.records()
    mine = [r for r in records if r.version == version or r.data.get("previous") == version]
    card = lineage.get(model.asset("model_card"))
    return {
        "model": model.name,
        "version": version,
        "generated": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "audit_log": {"path": str(log.path), "records": report.records, "head": report.head},
        "lineage": {
            made.asset: {
                "run_id": made.run_id,
                "storage_id": made.storage_id,
                "when": made.when,
                "metadata": jsonable(made.metadata),
            }
            for made in sorted(lineage.values(), key=lambda m: m.timestamp)
        },
        "checks": dict(sorted(checks.items())),
        "deployment_history": [
            {"seq": r.seq, "time": r.time, "action": r.kind, "version": r.version, **r.data}
            for r in mine
            if r.kind in CHANGES
        ],
        "reproductions": [
            {"seq": r.seq, "time": r.time, **r.data} for r in mine if r.kind == "reproduction"
        ],
        "replays": [{"seq": r.seq, "time": r.time, **r.data} for r in mine if r.kind == "replay"],
        "runs": [
            {
                "seq": r.seq,
                "run_id": r.data["run_id"],
                "status": r.data["status"],
                "tags": r.data["tags"],
                "checks": r.data["checks"],
            }
            for r in mine
            if r.kind == "run"
        ],
        "_documentation_uri": card.metadata.get(URI_KEY) if card else None,
    }


def export(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration,
    log: AuditLog,
    version: str,
    output: Path,
) -> Path:
    """Write the bundle into ``output`` (which must not exist yet); return the HTML path."""
    if output.exists():
        raise AuditError(f"{output} already exists; exports never overwrite, choose a new folder.")
    bundle = collect(instance, model, log, version)
    docs_uri = bundle.pop("_documentation_uri")
    partial = output.with_name(output.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    documentation: list[str] = []
    if docs_uri:
        source = UPath(str(docs_uri))
        for item in sorted(source.iterdir(), key=lambda p: p.name):
            if item.is_file():
                (partial / "documentation").mkdir(exist_ok=True)
                (partial / "documentation" / item.name).write_bytes(item.read_bytes())
                documentation.append(f"documentation/{item.name}")
    bundle["documentation"] = documentation
    # The head this bundle was cut from, signed: kept beside the log and shipped in the bundle,
    # so whoever holds the bundle can later show the log was not cut back behind it.
    witnessed = write_checkpoint(log)
    shutil.copyfile(witnessed, partial / "checkpoint.json")
    bundle["audit_log"]["checkpoint"] = str(witnessed)
    (partial / "audit.json").write_text(
        json.dumps(bundle, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
    template = jinja2.Environment(
        loader=jinja2.PackageLoader("lifecycle_pipeline", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    ).get_template("audit.html.j2")
    (partial / "audit.html").write_text(template.render(b=bundle), encoding="utf-8")
    partial.rename(output)  # the folder appears complete or not at all
    return output / "audit.html"
