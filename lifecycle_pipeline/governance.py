"""Governance: which model serves, who approved it and why; promote and roll back with evidence.

The production record is the audit log (tamper-evident); every change is also reported to
Dagster as a materialization of the ``production_model`` asset, so the UI shows the same
history beside the lineage. A version is promotable only when the exact package and the exact
upstream materializations it was built from passed every blocking check and the package
verifies now, against the configured public key. A stage materialized again since then counts
against the package only when its evidence contradicts it (a failed check, another identity);
a rollback restores the very package that served, by its sha256, not the version's newest.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.events import DagsterEventType

from lifecycle_pipeline.assets.common import OWNERS, code_version
from lifecycle_pipeline.audit_anchor import (  # re-exported: governance's public names
    PRODUCTION_ASSET,
    require_anchored,
)
from lifecycle_pipeline.audit_checkpoint import signing_key, write_checkpoint
from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.failpoints import failpoint
from lifecycle_pipeline.governance_commit import commit_record, settle_locked, withdraw
from lifecycle_pipeline.governance_log import (  # re-exported: governance's public names
    Change,
    GovernanceError,
    history,
    serving_at,
)
from lifecycle_pipeline.lineage.audit import AuditLog
from lifecycle_pipeline.lineage.environment import commit_gap
from lifecycle_pipeline.lineage.query import check_results, latest, metadata_values
from lifecycle_pipeline.lineage.query import history as materializations
from lifecycle_pipeline.lineage.trace import Materialization, trace
from lifecycle_pipeline.partitions import validate_partition_key
from lifecycle_pipeline.resources.artifact_store import SHA_KEY, URI_KEY, ArtifactStore

if TYPE_CHECKING:
    from lifecycle_pipeline.resources.signing import TrustedKeys

    pass


def as_damage(exc: BaseException) -> Exception | None:
    """A damaged instance file named as such (doctor's reading), imported when needed."""
    from lifecycle_pipeline.doctor import as_damage as named

    return named(exc)


MODEL_TAG = "lifecycle/model"  # on every run of a model's jobs
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def production_model_spec(model: LoadedDeclaration) -> dg.AssetSpec:
    """An external asset: materialized by `lifecycle promote|rollback`, never by a run."""
    import inspect
    import sys
    import warnings

    with warnings.catch_warnings():  # code references are a beta API, used on purpose
        warnings.simplefilter("ignore", dg.BetaWarning)
        source = dg.CodeReferencesMetadataValue(
            code_references=[
                dg.LocalFileCodeReference(
                    file_path=__file__, line_number=inspect.getsourcelines(_change)[1]
                )
            ]
        )
    return dg.AssetSpec(
        model.key(PRODUCTION_ASSET),
        deps=[model.key("deployment_package")],
        group_name=model.name,
        kinds={"governance"},
        owners=OWNERS,
        tags={"lifecycle/stage": "8-governance"},
        code_version=code_version(sys.modules[__name__]),
        description=f"The {model.name} model serving in production. Each materialization is a "
        "promotion or rollback by `lifecycle promote|rollback`: version, package digest, "
        "approver, reason.",
        metadata={"dagster/code_references": source},
    )


def jsonable(value: Any) -> Any:
    """Metadata values as JSON-safe data (tables and schemas as their repr)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if type(value) is dict:
        return {str(k): jsonable(v) for k, v in value.items()}
    if type(value) in (list, tuple):  # exact types: Dagster's records subclass tuple
        return [jsonable(v) for v in value]
    return repr(value)


def run_record(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, Any]:
    """A finished run as audit evidence: what it made, with lineage, and every check verdict."""
    materializations = []
    for entry in instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records:
        found = Materialization.from_record(entry)
        materializations.append(
            {
                "asset": found.asset,
                "partition": found.partition,
                "storage_id": found.storage_id,
                "metadata": jsonable(found.metadata),
            }
        )
    checks = [
        {
            "check": name,
            "passed": outcome.passed,
            "description": outcome.description,
            "metadata": jsonable(outcome.metadata),
        }
        for name, outcome in sorted(check_results(instance, run.run_id).items())
    ]
    stats = instance.get_run_record_by_id(run.run_id)
    # Complete enough that `lifecycle instance rebuild` can restore the run from this record
    # alone: its config (what reproduce re-runs), and the run key and sensor tags by which a
    # sensor knows it already requested the run.
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "status": run.status.value,
        "tags": {k: v for k, v in run.tags.items() if k.startswith(("lifecycle/", "dagster/"))},
        "run_config": jsonable(dict(run.run_config)),
        "ended": stats.end_time if stats else None,
        "materializations": materializations,
        "checks": checks,
    }


def runs_of(instance: dg.DagsterInstance, run: dg.DagsterRun, model: str) -> bool:
    """Whether a run belongs to ``model``: one of its jobs (tagged with the model), or an
    ad-hoc materialization (e.g. from the UI) of its assets. A run of an ephemeral asset job
    (``dg.materialize``) selects no assets by key; the assets it planned to make say whose
    it is, also when it failed before making any."""
    if run.tags.get(MODEL_TAG):
        return run.tags[MODEL_TAG] == model
    keys: set[dg.AssetKey | None] = set(run.asset_selection or ()) or {
        record.asset_key
        for record in instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        ).records
    }
    return any(key is not None and key.path[0] == model for key in keys)


def sync_runs(
    instance: dg.DagsterInstance, model: str, log: AuditLog, since: datetime | None = None
) -> int:
    """Append every finished run of ``model`` the log does not hold yet, oldest first; return
    how many. ``since``: only runs updated after it (a sensor's cursor), so a steady-state tick
    of many models' sensors reads no run and no log."""
    found = instance.get_run_records(
        filters=dg.RunsFilter(statuses=list(FINISHED), updated_after=since)
    )
    mine = [r for r in found if runs_of(instance, r.dagster_run, model)]
    if not mine:
        return 0
    recorded = {r.data["run_id"] for r in log.records() if r.kind == "run"}
    pending = sorted(
        (r for r in mine if r.dagster_run.run_id not in recorded),
        key=lambda r: r.end_time or 0.0,
    )
    entries = [
        (run_record(instance, r.dagster_run), r.dagster_run.tags.get("dagster/partition"))
        for r in pending
    ]
    return len(log.append_runs_once("run", entries))


@dataclass(frozen=True)
class Candidate:
    """A version's package and the exact lineage behind it, with what blocks promoting it."""

    version: str
    package_uri: str
    package_sha256: str
    fingerprint: str
    data_md5: str
    commit: str
    lineage: dict[str, Materialization]
    missing: list[str]
    identical: list[Rematerialization] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "package_uri": self.package_uri,
            "package_sha256": self.package_sha256,
            "fingerprint": self.fingerprint,
            "data_md5": self.data_md5,
            "code_commit": self.commit,
            "runs": {asset: m.run_id for asset, m in sorted(self.lineage.items())},
            # What an auditor asks first when a newer run exists: why it did not count.
            "identical_rematerializations": [r.to_dict() for r in self.identical],
        }


# What identifies each stage's output across re-materializations from identical inputs. The
# artifact digest where the artifact is a pure function of its inputs; elsewhere the recorded
# lineage: a trained model's artifact embeds its fit time (the fingerprint binds its state and
# predictions), documentation cites the runs it was written in, and a package carries a
# randomized signature, a pickled model whose bytes vary, and that documentation.
IDENTITY: dict[str, tuple[str, ...]] = {
    "data_snapshot": (SHA_KEY, "dvc/md5"),
    "features": (SHA_KEY, "dvc/md5"),
    "trained_model": ("model/fingerprint", "dvc/md5", "declaration/sha256"),
    "evaluation": (SHA_KEY, "model/fingerprint"),
    "model_card": ("model/fingerprint", "declaration/sha256", "spec/sha256"),
    "deployment_package": ("model/fingerprint", "golden/prediction_digest", "env/lock_sha256",
                           "declaration/sha256", "signature/public_key_id",
                           "files[input_schema.json]", "files[output_schema.json]",
                           "files[golden_inputs.parquet]", "files[golden_outputs.parquet]",
                           "files[uv.lock]", "files[predict.py]"),
}  # fmt: skip
# Recorded beside the identity for the auditor, never decisive: the same model trained again
# at a later commit or lock is a reproduction, not a contradiction (its fingerprint says so).
CONTEXT = ("code/commit", "code/dirty", "env/lock_hash", "config_hash")


def evidence(metadata: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The identifying values of one materialization (``files[NAME]``: one file's digest)."""
    found: dict[str, Any] = {}
    for key in keys:
        name, _, member = key.partition("[")
        value = metadata.get(name)
        if member:
            value = value.get(member.rstrip("]")) if isinstance(value, dict) else None
        found[key] = value
    return found


@dataclass(frozen=True)
class Rematerialization:
    """A stage re-materialized after the package was built, judged against the packaged one."""

    asset: str
    run_id: str
    evidence: dict[str, Any]
    differing: dict[str, tuple[Any, Any]]  # key -> (packaged, newer); empty when identical

    @classmethod
    def judge(cls, packaged: Materialization, newer: Materialization) -> Rematerialization:
        keys = IDENTITY.get(packaged.asset.rsplit("/", 1)[-1], (SHA_KEY,))
        before, after = evidence(packaged.metadata, keys), evidence(newer.metadata, keys)
        # An unrecorded value proves nothing: it counts as a difference, never as a match.
        differing = {
            k: (before[k], after[k]) for k in keys if before[k] is None or before[k] != after[k]
        }
        context = {k: v for k, v in evidence(newer.metadata, CONTEXT).items() if v is not None}
        return cls(packaged.asset, newer.run_id, {**after, **context}, differing)

    def to_dict(self) -> dict[str, Any]:
        return {"asset": self.asset, "run_id": self.run_id, "evidence": jsonable(self.evidence)}

    def refusal(self) -> str:
        def short(value: Any) -> str:
            return "not recorded" if value is None else str(value)[:16]

        found = "; ".join(
            f"{key} {short(new)} (packaged: {short(old)})"
            for key, (old, new) in self.differing.items()
        )
        return (
            f"{self.asset} was re-materialized in run {self.run_id} and contradicts the "
            f"package's lineage: {found}; the version's evidence changed since it was "
            "packaged. Find out why (`lifecycle reproduce`), then package and promote what is "
            "current"
        )


def blocking_checks(model: LoadedDeclaration) -> dict[str, list[str]]:
    """Blocking check names per lifecycle asset, from the definitions (never a copied list)."""
    from lifecycle_pipeline.definitions import model_assets

    built = model_assets(model)
    found: dict[str, list[str]] = {}
    for definition in [*built.lifecycle, *built.checks]:  # on an asset, or on their own
        for spec in definition.check_specs:
            if spec.blocking:
                found.setdefault(spec.asset_key.to_user_string(), []).append(spec.name)
    return found


def lineage_gaps(fingerprint: str, data_md5: str, commit: str) -> list[str]:
    """What a promotion record would lack: each of the model fingerprint, the data md5 and
    the code commit that is not recorded (an empty value is a gap, never a value written as
    ``""``), and a commit git could not read when the model was trained (``unknown``)."""
    gaps = [
        f"{asset}: {key} is not recorded"
        for asset, key, value in (
            ("trained_model", "model/fingerprint", fingerprint),
            ("data_snapshot", "dvc/md5", data_md5),
            ("trained_model", "code/commit", commit),
        )
        if not value
    ]
    if commit and commit_gap({"commit": commit}):
        gaps.append(
            f"trained_model: code/commit is {commit!r} (git could not read it when the model "
            "was trained): retrain where git can read the checkout, or build an image with "
            "build-info.json"
        )
    return gaps


def candidate(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration,
    version: str,
    public_key: TrustedKeys,
    package_sha256: str | None = None,
) -> Candidate:
    """A package of ``version`` (the newest, or the one with ``package_sha256``) and
    everything that must hold to put it in production.

    A stage materialized again after the package was built counts against it only when the
    evidence says so: a blocking check failed there, or its identity (``IDENTITY``) differs
    from what the package was built from. Re-runs that reproduced the same output are listed
    in the change's audit record instead.
    """
    from lifecycle_pipeline.package.verify import verify_stored_package

    validate_partition_key(version)
    record = package_record(instance, model, version, package_sha256)
    lineage = trace(instance, Materialization.from_record(record))
    blocking = blocking_checks(model)
    missing: list[str] = []
    identical: list[Rematerialization] = []
    for asset in sorted(set(blocking) | set(lineage)):
        made = lineage.get(asset)
        if made is None:
            missing.append(f"{asset}: not in the package's recorded lineage")
            continue
        verdicts = check_results(instance, made.run_id)
        for name in blocking.get(asset, []):
            outcome = verdicts.get(f"{asset}:{name}")
            if outcome is None:
                missing.append(f"{asset}:{name}: never evaluated (run {made.run_id})")
            elif not outcome.passed:
                first = outcome.description.splitlines()[0] if outcome.description else ""
                missing.append(f"{asset}:{name}: FAILED in run {made.run_id}: {first}")
        newest = latest(instance, asset, version)
        # Identity, not storage ids: SQLite numbers a run's events apart from its index.
        if newest is None or (
            newest.run_id == made.run_id
            and metadata_values(newest).get(SHA_KEY) == made.metadata.get(SHA_KEY)
        ):
            continue
        failed = [
            f"{check}: FAILED in run {newest.run_id}, newer than the package: "
            + (outcome.description.splitlines() or [""])[0]
            for check, outcome in sorted(check_results(instance, newest.run_id).items())
            if check.startswith(f"{asset}:") and not outcome.passed
        ]
        judged = Rematerialization.judge(made, Materialization.from_record(newest))
        if failed:  # e.g. re-evaluated under stricter gates: the version's verdict changed
            missing += failed
        elif judged.differing:
            missing.append(judged.refusal())
        else:
            identical.append(judged)
    package = lineage[model.asset("deployment_package")]
    report = verify_stored_package(ArtifactStore(), record, public_key)
    if not report.ok:
        missing += [f"package does not verify: {p}" for p in report.problems]
    trained = lineage.get(model.asset("trained_model"))
    data = lineage.get(model.asset("data_snapshot"))
    fingerprint = str(package.metadata.get("model/fingerprint") or "")
    data_md5 = str(data.metadata.get("dvc/md5") or "") if data else ""
    commit = str(trained.metadata.get("code/commit") or "") if trained else ""
    missing += lineage_gaps(fingerprint, data_md5, commit)
    return Candidate(
        version=version,
        package_uri=str(package.metadata[URI_KEY]),
        package_sha256=str(package.metadata[SHA_KEY]),
        fingerprint=fingerprint,
        data_md5=data_md5,
        commit=commit,
        lineage=lineage,
        missing=missing,
        identical=identical,
    )


def package_record(
    instance: dg.DagsterInstance, model: LoadedDeclaration, version: str, sha256: str | None
) -> Any:
    """The version's newest package, or the one recorded with ``sha256`` (a rollback restores
    exactly the package that served, even after the version was packaged again)."""
    key = model.key("deployment_package")
    if sha256 is None:
        record = latest(instance, key, version)
        if record is None:
            raise GovernanceError(
                f"{version!r} has no deployment_package in this instance; "
                + _why_unpackaged(instance, model, version)
            )
        return record
    record = recorded_package(instance, model, version, sha256)
    if record is None:
        raise GovernanceError(
            f"the {version} package that served before (sha256 {sha256}) is not among the "
            f"deployment_package materializations of {version} in this instance "
            f"({instance.root_directory}), so it cannot be restored; promote the version's "
            "current package explicitly if its evidence allows it."
        )
    return record


def _why_unpackaged(instance: dg.DagsterInstance, model: LoadedDeclaration, version: str) -> str:
    """What to do about a version without a package: a model whose code no commit holds is
    never packaged (its training record says so), anything else is materialized first."""
    trained = latest(instance, model.key("trained_model"), version)
    commit = str(metadata_values(trained).get("code/commit") or "") if trained else ""
    if trained is not None and commit_gap({"commit": commit}):
        return (
            f"its trained model (run {trained.run_id}) recorded code/commit {commit!r}: git "
            "could not read the checkout, and a model whose code no commit holds is never "
            "packaged or promoted. Retrain where git can read the checkout (or from an image "
            "with build-info.json), then promote."
        )
    return (
        "materialize the lifecycle job for it first (it packages only a model that passed its "
        "gates)."
    )


def recorded_package(
    instance: dg.DagsterInstance, model: LoadedDeclaration, version: str, sha256: str
) -> Any | None:
    """The materialization of ``version``'s deployment_package whose digest is ``sha256``."""
    for record in reversed(materializations(instance, model.key("deployment_package"), version)):
        if metadata_values(record).get(SHA_KEY) == sha256:
            return record
    return None


def check_approval(action: str, approver: str, reason: str) -> None:
    """Refuse an empty approver or reason, or one holding a control character (a line break,
    a tab, a right-to-left override: Unicode category C). Both are printed as they were given
    by `history`, `status` and the UI; a line break in them printed a line that looked like
    another promotion. Refused rather than escaped: the log keeps what was approved verbatim."""
    if not approver.strip() or not reason.strip():
        raise GovernanceError(f"{action} needs an approver and a reason (--approver, --reason).")
    for field, value in (("approver", approver), ("reason", reason)):
        for position, character in enumerate(value):
            if unicodedata.category(character).startswith("C"):
                raise GovernanceError(
                    f"{action} refused: {field} {value!r} holds a control character "
                    f"(U+{ord(character):04X} at position {position}); an approver and a reason "
                    "are one line of printable text, so that `history`, `status` and the UI "
                    f"print them as given. Pass --{field} without line breaks or control "
                    "characters."
                )


def _change(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration,
    log: AuditLog,
    action: str,
    chosen: Candidate,
    approver: str,
    reason: str,
) -> Change:
    """Record one change in the three stores, in the order ``governance_commit`` justifies.

    The caller holds ``log.governing()``, so what serves now (the change's "previous") cannot
    move until the change is committed; re-approving the version already serving is refused
    (nothing would change in production, and an auditor would read two promotions).
    """
    check_approval(action, approver, reason)
    if chosen.missing:
        raise GovernanceError(
            f"{action} of {chosen.version} refused; missing:\n  - " + "\n  - ".join(chosen.missing)
        )
    current = serving_at(log, datetime.now(tz=UTC))
    if current is not None and current.version == chosen.version:
        raise GovernanceError(
            f"{action} of {chosen.version} refused: {chosen.version} is already serving "
            f"({model.name}, {current.action} of {current.time.isoformat(timespec='seconds')} "
            f"by {current.approver}, package sha256 {current.package_sha256[:12]}); nothing was "
            "recorded. Promote or roll back to another version to change what serves."
        )
    sync_runs(
        instance, model.name, log
    )  # the evidence the decision rests on is in the log before it
    data = {
        **chosen.summary(),
        "approver": approver,
        "reason": reason,
        "previous": current.version if current else None,
        "previous_package_sha256": current.package_sha256 if current else None,
    }
    key = signing_key()  # before anything is recorded: no change without its witness
    intent = log.append("intent", {"action": action, **data}, version=chosen.version)
    failpoint("governance.intent_written")
    try:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=model.key(PRODUCTION_ASSET),
                description=f"{action} of {model.name} {chosen.version} by {approver}: {reason}",
                metadata={
                    "action": action,
                    "model": model.name,
                    "version": chosen.version,
                    "approver": approver,
                    "reason": reason,
                    "previous": data["previous"] or "",
                    "package/uri": dg.MetadataValue.path(chosen.package_uri),
                    "package/sha256": chosen.package_sha256,
                    "model/fingerprint": chosen.fingerprint,
                    "dvc/md5": chosen.data_md5,
                    "code/commit": chosen.commit,
                    # The intent record: written before this event, so it can name it.
                    "audit/seq": intent.seq,
                    "audit/hash": intent.hash,
                    "audit/log": str(log.path.resolve()),
                    "lineage": dg.MetadataValue.json(chosen.summary()["runs"]),
                },
            )
        )
    except Exception as exc:
        # The instance refused the event (a SQLite error is atomic: nothing was written), so
        # the change must not take effect: withdraw the intent before anything reads it.
        withdrawn = withdraw(log, intent, f"the Dagster instance refused the event: {exc}")
        note = (
            f"{action} of {chosen.version} did NOT take effect: the Dagster instance refused "
            f"its production_model event; intent record {intent.seq} was withdrawn (record "
            f"{withdrawn.seq})"
        )
        damage = as_damage(exc)
        if damage is not None:  # kept an InstanceDamagedError: the CLI names it as such
            raise type(damage)(f"{note}. {damage}") from exc
        if isinstance(exc, LifecycleError):
            raise GovernanceError(f"{note}. The instance: {exc}") from exc
        exc.add_note(note)  # a defect stays a defect (exit 3), with what it left behind
        raise
    failpoint("governance.event_reported")
    record = commit_record(log, intent)
    failpoint("governance.committed")
    write_checkpoint(log, key=key)  # the new head, signed: evidence outside the log
    return Change.from_record(record)


def promote(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration,
    log: AuditLog,
    version: str,
    approver: str,
    reason: str,
    public_key: TrustedKeys,
) -> Change:
    """Put ``version``'s newest package in production, if its evidence allows it.

    Everything from reading what serves to the signed checkpoint happens under the log's
    governance lock, after any change an earlier command left unfinished is settled."""
    check_approval("promotion", approver, reason)
    with log.governing():
        settle_locked(instance, model, log)
        require_anchored(instance, model, log, f"promotion of {version}")
        chosen = candidate(instance, model, version, public_key)
        return _change(instance, model, log, "promotion", chosen, approver, reason)


def rollback(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration,
    log: AuditLog,
    approver: str,
    reason: str,
    public_key: TrustedKeys,
    to: str | None = None,
) -> Change:
    """Back to ``to``, or to the version that served before the current one.

    The target is the very package that served before (by its recorded sha256, not the
    version's newest package), and it must still verify and its lineage still hold: stages
    re-materialized since then count against it only when they differ from it or failed a
    check (see ``candidate``). A version never served is restored with its newest package.
    """
    check_approval("rollback", approver, reason)
    with log.governing():
        settle_locked(instance, model, log)
        require_anchored(instance, model, log, "rollback")
        return _rollback_locked(instance, model, log, approver, reason, public_key, to)


def _rollback_locked(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration,
    log: AuditLog,
    approver: str,
    reason: str,
    public_key: TrustedKeys,
    to: str | None,
) -> Change:
    changes = history(log)
    if not changes:
        raise GovernanceError("nothing has been promoted yet, so there is nothing to roll back.")
    current = changes[-1]
    expected_sha: str | None
    if to is None:
        earlier = [c for c in changes if c.version != current.version]
        if not earlier:
            raise GovernanceError(
                f"{current.version} is the only version ever promoted; name one with --to."
            )
        target_version, expected_sha = earlier[-1].version, earlier[-1].package_sha256
    else:
        target_version = validate_partition_key(to)
        served = [c for c in changes if c.version == to]
        expected_sha = served[-1].package_sha256 if served else None
    if target_version == current.version:
        raise GovernanceError(f"{target_version} is already serving.")
    chosen = candidate(instance, model, target_version, public_key, package_sha256=expected_sha)
    return _change(instance, model, log, "rollback", chosen, approver, reason)
