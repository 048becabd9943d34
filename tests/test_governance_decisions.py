"""Promotion and rollback decisions against a small recorded lineage (`make mutate`).

One real Dagster run materializes stand-ins for the sample model's six lifecycle stages, each
recording the upstream materialization it read (``upstream/<asset>``) as the real stages do,
and evaluates some of the model's blocking checks by name; no model is trained and no package
is built, so the stored package never verifies. What is asserted is what a promotion or a
rollback decides from that evidence: every missing verdict, failed check and unrecorded
lineage value is named, nothing is recorded, and a rollback restores the package that served.
"""

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.governance import (
    Candidate,
    GovernanceError,
    _change,
    candidate,
    history,
    production_model_spec,
    promote,
    rollback,
)
from lifecycle_pipeline.lineage.audit import AuditLog
from lifecycle_pipeline.lineage.query import metadata_values
from lifecycle_pipeline.resources.artifact_store import SHA_KEY, URI_KEY
from lifecycle_pipeline.resources.signing import PackageSigner
from tests.conftest import SAMPLE_MODEL

MODEL = SAMPLE_MODEL.name
STAGES = ("data_snapshot", "features", "trained_model", "evaluation", "model_card")
PARTITIONS = dg.StaticPartitionsDefinition(["v1", "v2"])
COMMIT = "c" * 40


def _stage(name: str, upstream: str | None, extra: dict[str, Any]) -> dg.AssetsDefinition:
    @dg.asset(key=SAMPLE_MODEL.key(name), partitions_def=PARTITIONS)
    def _made(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        metadata: dict[str, Any] = {SHA_KEY: f"{name}-sha", URI_KEY: f"file:///nowhere/{name}"}
        if upstream is not None:
            metadata[f"upstream/{MODEL}/{upstream}"] = {
                "partition": context.partition_key,
                "run_id": context.run.run_id,
                "sha256": f"{upstream}-sha",
            }
        return dg.MaterializeResult(metadata={**metadata, **extra})

    return _made


def _lineage(package: dict[str, Any], trained: dict[str, Any]) -> list[Any]:
    """The stages, the package reading the model card, and four blocking checks evaluated:
    two passed, one failed; the others are never evaluated."""
    assets = [
        _stage("data_snapshot", None, {"dvc/md5": "d" * 32}),
        _stage("features", "data_snapshot", {}),
        _stage("trained_model", "features", trained),
        _stage("evaluation", "trained_model", {}),
        _stage("model_card", "evaluation", {}),
        _stage("deployment_package", "model_card", package),
    ]

    def check(stage: str, name: str, passed: bool) -> dg.AssetChecksDefinition:
        @dg.asset_check(asset=SAMPLE_MODEL.key(stage), name=name)
        def _check() -> dg.AssetCheckResult:
            return dg.AssetCheckResult(passed=passed, description=f"{name} said so\nmore")

        return _check

    return [
        *assets,
        check("data_snapshot", "row_count", True),
        check("data_snapshot", "class_balance", True),
        check("evaluation", "gate_roc_auc", False),
        check("trained_model", "reproducible", True),
    ]


@pytest.fixture
def governed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIFECYCLE_AUDIT_DIR", str(tmp_path / "audit"))
    monkeypatch.setenv("LIFECYCLE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("LIFECYCLE_DEV_KEYS", "1")
    key = tmp_path / "audit.key"
    key.write_text("0" * 64)
    monkeypatch.setenv("LIFECYCLE_AUDIT_KEY", str(key))
    for name in ("LIFECYCLE_AUDIT_CHECKPOINTS", "LIFECYCLE_TRUSTED_KEYS"):
        monkeypatch.delenv(name, raising=False)
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def _run(
    instance: dg.DagsterInstance,
    version: str = "v1",
    package: dict[str, Any] | None = None,
    trained: dict[str, Any] | None = None,
) -> str:
    result = dg.materialize(
        _lineage(
            {"model/fingerprint": "f" * 64, **(package or {})},
            {"code/commit": COMMIT, **(trained or {})},
        ),
        instance=instance,
        partition_key=version,
        tags={"lifecycle/model": MODEL},
    )
    return result.run_id


def _keys() -> Path:
    return PackageSigner().signing_pair()[1]


def test_a_candidate_names_every_unevaluated_and_failed_check_and_the_unverified_package(
    governed: dg.DagsterInstance,
) -> None:
    run = _run(governed)
    chosen = candidate(governed, SAMPLE_MODEL, "v1", _keys())
    assert sorted(chosen.lineage) == sorted(f"{MODEL}/{s}" for s in (*STAGES, "deployment_package"))
    assert {m.run_id for m in chosen.lineage.values()} == {run}
    assert (chosen.version, chosen.fingerprint, chosen.data_md5, chosen.commit) == (
        "v1",
        "f" * 64,
        "d" * 32,
        COMMIT,
    )
    assert chosen.package_sha256 == "deployment_package-sha"
    assert chosen.package_uri == "file:///nowhere/deployment_package"
    assert chosen.identical == []
    blocking_missing = [m for m in chosen.missing if not m.startswith("package does not verify")]
    assert blocking_missing == [
        f"{MODEL}/deployment_package:prediction_parity: never evaluated (run {run})",
        f"{MODEL}/deployment_package:package_verifies: never evaluated (run {run})",
        f"{MODEL}/evaluation:gate_roc_auc: FAILED in run {run}: gate_roc_auc said so",
        f"{MODEL}/evaluation:gate_f1: never evaluated (run {run})",
        f"{MODEL}/evaluation:gate_recall: never evaluated (run {run})",
        f"{MODEL}/evaluation:gate_brier: never evaluated (run {run})",
    ]
    unverified = [m for m in chosen.missing if m.startswith("package does not verify")]
    assert len(unverified) == 1 and "stored package: " in unverified[0]


def test_unrecorded_lineage_values_block_a_candidate(governed: dg.DagsterInstance) -> None:
    _run(governed, package={"model/fingerprint": ""}, trained={"code/commit": "unknown"})
    chosen = candidate(governed, SAMPLE_MODEL, "v1", _keys())
    assert chosen.fingerprint == "" and chosen.commit == "unknown"
    assert "trained_model: model/fingerprint is not recorded" in chosen.missing
    gaps = [m for m in chosen.missing if m.startswith("trained_model: code/commit is 'unknown'")]
    assert len(gaps) == 1


def test_a_stage_rematerialized_since_the_package_is_judged_by_its_evidence(
    governed: dg.DagsterInstance,
) -> None:
    first = _run(governed, package={SHA_KEY: "pkg-1"})
    second = _run(governed, package={SHA_KEY: "pkg-2"}, trained={"model/fingerprint": "new"})
    newest = candidate(governed, SAMPLE_MODEL, "v1", _keys())
    assert newest.package_sha256 == "pkg-2" and newest.identical == []
    assert {m.run_id for m in newest.lineage.values()} == {second}
    # The first package, chosen by its digest as a rollback does: the stages made again
    # identically are listed as such; a newer trained model with another identity and a gate
    # failed in the newer run count against it.
    older = candidate(governed, SAMPLE_MODEL, "v1", _keys(), package_sha256="pkg-1")
    assert older.package_sha256 == "pkg-1"
    assert {m.run_id for m in older.lineage.values()} == {first}
    # (features record no dvc/md5 here: an unrecorded identity is never a match)
    assert [r.asset for r in older.identical] == [f"{MODEL}/data_snapshot"]
    assert all(r.run_id == second for r in older.identical)
    assert (
        f"{MODEL}/evaluation:gate_roc_auc: FAILED in run {second}, newer than the package: "
        "gate_roc_auc said so"
    ) in older.missing
    refused = [m for m in older.missing if m.startswith(f"{MODEL}/trained_model was re-")]
    assert len(refused) == 1 and f"run {second} and contradicts" in refused[0]
    assert "model/fingerprint new (packaged: not recorded)" in refused[0]


def test_promotion_is_refused_listing_what_is_missing_and_records_nothing(
    governed: dg.DagsterInstance,
) -> None:
    _run(governed)
    log = AuditLog.for_model(MODEL)
    with pytest.raises(GovernanceError) as raised:
        promote(governed, SAMPLE_MODEL, log, "v1", "ana", "gates passed", _keys())
    message = str(raised.value)
    assert message.startswith("promotion of v1 refused; missing:\n  - ")
    assert f"\n  - {MODEL}/evaluation:gate_f1: never evaluated (run " in message
    assert not log.path.exists() or history(log) == []
    with pytest.raises(GovernanceError, match="promotion needs an approver and a reason"):
        promote(governed, SAMPLE_MODEL, log, "v1", "", "x", _keys())


def _serve(log: AuditLog, version: str, sha: str, hours: int) -> None:
    when = (datetime.now(tz=UTC) - timedelta(hours=hours)).isoformat()
    data = {
        "approver": "ana",
        "reason": "ok",
        "package_sha256": sha,
        "package_uri": f"file:///{version}",
        "fingerprint": "f" * 64,
    }
    log.append("promotion", data, version=version, when=when)


def test_a_rollback_needs_something_to_roll_back_to(governed: dg.DagsterInstance) -> None:
    log = AuditLog.for_model(MODEL)
    with pytest.raises(GovernanceError) as nothing:
        rollback(governed, SAMPLE_MODEL, log, "ana", "bad", _keys())
    assert str(nothing.value) == (
        "nothing has been promoted yet, so there is nothing to roll back."
    )
    _serve(log, "v1", "s1", 3)
    with pytest.raises(GovernanceError) as only:
        rollback(governed, SAMPLE_MODEL, log, "ana", "bad", _keys())
    assert str(only.value) == "v1 is the only version ever promoted; name one with --to."
    with pytest.raises(GovernanceError) as serving:
        rollback(governed, SAMPLE_MODEL, log, "ana", "bad", _keys(), to="v1")
    assert str(serving.value) == "v1 is already serving."
    with pytest.raises(GovernanceError, match="rollback needs an approver"):
        rollback(governed, SAMPLE_MODEL, log, " ", "bad", _keys())


def test_a_rollback_restores_the_package_that_served_not_the_versions_newest(
    governed: dg.DagsterInstance,
) -> None:
    _run(governed, "v1")
    log = AuditLog.for_model(MODEL)
    _serve(log, "v1", "served-sha", 5)
    _serve(log, "v3", "s3", 4)
    _serve(log, "v2", "s2", 3)
    _serve(log, "v1", "served-again", 2)  # v1 again, with another package: the newest served
    _serve(log, "v2", "s2", 1)
    for to in (None, "v1"):
        with pytest.raises(GovernanceError) as raised:
            rollback(governed, SAMPLE_MODEL, log, "ana", "bad", _keys(), to=to)
        assert str(raised.value).startswith(
            "the v1 package that served before (sha256 served-again) is not among the "
            "deployment_package materializations of v1 in this instance"
        )
    # A version that never served is restored with its newest package, if it may be.
    log2 = AuditLog(log.path.with_name("other.jsonl"), MODEL)
    _serve(log2, "v2", "s2", 0)
    with pytest.raises(GovernanceError) as never:
        rollback(governed, SAMPLE_MODEL, log2, "ana", "bad", _keys(), to="v1")
    assert str(never.value).startswith("rollback of v1 refused; missing:\n  - ")


def test_a_change_is_recorded_in_the_log_the_instance_and_a_checkpoint(
    governed: dg.DagsterInstance,
) -> None:
    from lifecycle_pipeline.audit_checkpoint import found_checkpoints

    run = _run(governed)
    chosen = candidate(governed, SAMPLE_MODEL, "v1", _keys())
    clean = Candidate(**{**chosen.__dict__, "missing": []})
    log = AuditLog.for_model(MODEL)
    change = _change(governed, SAMPLE_MODEL, log, "promotion", clean, "ana", "gates passed")
    assert (change.action, change.version, change.approver, change.reason) == (
        "promotion",
        "v1",
        "ana",
        "gates passed",
    )
    assert change.previous is None and change.package_sha256 == "deployment_package-sha"
    kinds = [r.kind for r in log.records()]
    assert kinds == ["run", "intent", "promotion"]  # the run's evidence first
    intent = log.records()[1]
    assert intent.data["action"] == "promotion" and intent.data["runs"][f"{MODEL}/features"] == run
    (event,) = governed.fetch_materializations(SAMPLE_MODEL.key("production_model"), 5).records
    values = metadata_values(event)
    assert (values["action"], values["version"], values["approver"]) == ("promotion", "v1", "ana")
    assert (values["audit/seq"], values["audit/hash"]) == (intent.seq, intent.hash)
    assert values["previous"] == "" and values["package/sha256"] == "deployment_package-sha"
    assert values["audit/log"] == str(log.path.resolve())
    assert (values["model"], values["reason"], values["code/commit"]) == (
        MODEL,
        "gates passed",
        COMMIT,
    )
    assert values["package/uri"] == "file:///nowhere/deployment_package"
    assert (values["model/fingerprint"], values["dvc/md5"]) == ("f" * 64, "d" * 32)
    assert values["lineage"] == dict.fromkeys(chosen.lineage, run)
    materialization = event.asset_materialization
    assert materialization is not None and materialization.description == (
        f"promotion of {MODEL} v1 by ana: gates passed"
    )
    assert len(found_checkpoints(log)) == 1
    with pytest.raises(GovernanceError) as again:
        _change(governed, SAMPLE_MODEL, log, "promotion", clean, "bo", "again")
    assert str(again.value).startswith(
        f"promotion of v1 refused: v1 is already serving ({MODEL}, promotion of "
    )
    assert str(again.value).endswith(
        "by ana, package sha256 deployment_p); nothing was recorded. Promote or roll back to "
        "another version to change what serves."
    )
    other = Candidate(**{**clean.__dict__, "version": "v2", "package_sha256": "p2"})
    second = _change(governed, SAMPLE_MODEL, log, "rollback", other, "bo", "back")
    assert second.previous == "v1" and second.action == "rollback"
    assert log.records()[-1].data["previous_package_sha256"] == "deployment_package-sha"
    # Without a signing key for its checkpoint, a change stops before anything is recorded.
    for name in ("signing-key.pem", "signing-key.pub"):
        (Path(os.environ["LIFECYCLE_HOME"]) / "keys" / name).unlink()
    os.environ["LIFECYCLE_DEV_KEYS"] = "0"  # restored by the fixture's monkeypatch
    before = log.path.read_bytes()
    third = Candidate(**{**clean.__dict__, "version": "v3"})
    with pytest.raises(LifecycleError):
        _change(governed, SAMPLE_MODEL, log, "promotion", third, "cy", "no key")
    assert log.path.read_bytes() == before


def test_the_production_asset_is_described_for_the_ui() -> None:
    spec = production_model_spec(SAMPLE_MODEL)
    assert spec.key == SAMPLE_MODEL.key("production_model")
    assert {dep.asset_key for dep in spec.deps} == {SAMPLE_MODEL.key("deployment_package")}
    assert spec.group_name == MODEL and spec.kinds == {"governance"}
    assert spec.tags["lifecycle/stage"] == "8-governance"
    assert spec.description is not None and spec.description.startswith(
        f"The {MODEL} model serving in production. Each materialization is a promotion or "
        "rollback by `lifecycle promote|rollback`"
    )
    assert spec.owners == ["team:ml-platform"] and spec.code_version
    assert spec.description.endswith("version, package digest, approver, reason.")
    reference = spec.metadata["dagster/code_references"].code_references[0]
    assert reference.file_path.endswith("governance.py") and reference.line_number > 1
