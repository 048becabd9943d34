"""The audit log checked against the Dagster instance's own copy of its governance changes.

Apart from governance.py so that `lifecycle status` and `audit verify` import only Dagster's
instance and the log, not the lineage, artifact and pandas modules a promotion needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.lineage.audit import AuditError, AuditLog, VerifyReport
from lifecycle_pipeline.lineage.query import metadata_values

PRODUCTION_ASSET = "production_model"  # a stage name: each model has its own


def _name(model: LoadedDeclaration | str) -> str:
    return model if isinstance(model, str) else model.name


def anchor_problems(
    instance: dg.DagsterInstance, model: LoadedDeclaration | str, log: AuditLog
) -> list[str]:
    """The log against the instance's own copy of every governance change written to it.

    Each promotion and rollback is also a run-less event on ``production_model`` carrying the
    record's sequence number and hash. A log cut short (its last records deleted), replaced,
    or restored from an older copy still verifies on its own, since every remaining record
    chains; it cannot match those independent copies. Events are matched by the log's path,
    so a test's or another deployment's log is not confused with this one.
    """
    held: dict[int, str] = {}
    for line in log.path.read_bytes().split(b"\n") if log.path.exists() else []:
        try:
            raw = json.loads(line)
            held[int(raw["seq"])] = str(raw["hash"])
        except (ValueError, KeyError, TypeError):
            continue  # torn or edited lines are verify()'s to report
    here = str(log.path.resolve())
    key = dg.AssetKey([_name(model), PRODUCTION_ASSET])
    problems: list[str] = []
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor
        )
        for event in page.records:
            meta = metadata_values(event)
            if meta.get("audit/log") != here or "audit/seq" not in meta:
                continue
            seq, expected = int(str(meta["audit/seq"])), str(meta["audit/hash"])
            what = f"the {meta.get('action')} of {meta.get('version')} (run-less event)"
            if seq not in held:
                problems.append(
                    f"record {seq}, {what}, is recorded in the Dagster instance but missing "
                    "from the log: the log was cut short, replaced or restored from an older copy"
                )
            elif held[seq] != expected:
                problems.append(
                    f"record {seq}: the instance recorded hash {expected[:16]} for {what}, the "
                    f"log holds {held[seq][:16]}: the log was replaced"
                )
        if not page.has_more:
            break
        cursor = page.cursor
    return sorted(problems)


def verify_anchored(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration | str,
    log: AuditLog,
    checkpoints: list[Path] | None = None,
    public_key: Path | None = None,
) -> VerifyReport:
    """The log's own chain and keyed digests, and its agreement with the instance's copy of
    its governance changes and with every signed checkpoint of its head (those beside it and
    those ``checkpoints`` names, e.g. fetched from the team's own store), and no promotion or
    rollback left unfinished by a crash (``governance_commit``)."""
    from lifecycle_pipeline.audit_checkpoint import checkpoint_problems
    from lifecycle_pipeline.governance_commit import incomplete_problems

    report = log.verify()
    report.problems += anchor_problems(instance, model, log)
    report.problems += checkpoint_problems(log, checkpoints, public_key)
    if report.ok:  # a change is settled only on a log that verifies: name it only there
        report.problems += incomplete_problems(instance, model, log)
    return report


def resolution(model: LoadedDeclaration | str, path: Path, problem: str) -> str:
    """The command (or act) that resolves one problem ``verify_anchored`` named in the log at
    ``path``: said with the problem, so an on-call engineer is not left to guess."""
    from lifecycle_pipeline.governance_commit import INCOMPLETE

    name = _name(model)
    if "torn (no line end)" in problem or INCOMPLETE in problem:
        return f"`lifecycle --model {name} audit recover`"
    if "another model's records" in problem:
        return (
            f"put each model's log back at its own path ({path.parent}/<model>.jsonl) from a "
            f"backup; `lifecycle --model {name} audit verify` shows the details"
        )
    return (
        f"restore {path} from a backup (never edit it by hand); "
        f"`lifecycle --model {name} audit verify` shows the details"
    )


def refusal(
    action: str, model: LoadedDeclaration | str, log: AuditLog, report: VerifyReport
) -> str:
    """Why ``action`` is refused on a log that does not verify, and what resolves it."""
    fixes = dict.fromkeys(resolution(model, log.path, p) for p in report.problems)
    return (
        f"{action} refused: the audit log of {_name(model)} does not verify against itself and "
        "its evidence (the instance's copy of its governance changes, its signed checkpoints); "
        f"nothing is answered from it or recorded on top of it:\n{report.render()}\n"
        + "\n".join(f"fix: {fix}" for fix in fixes)
    )


def require_anchored(
    instance: dg.DagsterInstance, model: LoadedDeclaration | str, log: AuditLog, action: str
) -> VerifyReport:
    """The log's anchored verification, or an ``AuditError`` naming the problems and their
    fixes: every command that answers from the log (status, history, replay, export) or
    writes to it calls this first."""
    report = verify_anchored(instance, model, log)
    if not report.ok:
        raise AuditError(refusal(action, model, log, report))
    return report
