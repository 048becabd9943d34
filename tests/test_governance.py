"""Promotion, rollback, history, decision replay and the audit export, on a real instance."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from lifecycle_pipeline import governance
from lifecycle_pipeline.cli import main
from lifecycle_pipeline.definitions import build_definitions
from lifecycle_pipeline.lineage.audit import AuditError, AuditLog
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from lifecycle_pipeline.resources.signing import PackageSigner
from tests.conftest import Pipeline, Registry, copy_registry, dagster_home

pytestmark = pytest.mark.xdist_group("governance")

STRICT = {"ops": {"evaluation": {"config": {"gates": {"roc_auc": 0.99999}}}}}


@dataclass
class Governed:
    pipeline: Pipeline
    home: Path
    public_key: Path


# Session scope: a module fixture is rebuilt whenever xdist interleaves another module.
@pytest.fixture(scope="session")
def governed(
    registry_module: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Governed]:
    """data-v1 and data-v2 packaged; data-v3 packaged, then re-evaluated under a failing gate.

    The instance lives in a real DAGSTER_HOME, so the `lifecycle` CLI reads the same one.
    """
    base = tmp_path_factory.mktemp("governed")
    home = dagster_home(base / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        defs = build_definitions(
            registry=registry_module.resource(),
            artifact_store=ArtifactStore(root=str(base / "artifacts")),
        )
        pipeline = Pipeline(defs=defs, instance=instance, artifacts=base / "artifacts")
        for key in ("data-v1", "data-v2", "data-v3"):
            assert pipeline.run(key).success
        stricter = pipeline.run("data-v3", STRICT, selection=dg.AssetSelection.assets("evaluation"))
        assert not stricter.success  # its blocking gate failed after the package was built
        yield Governed(pipeline, home, PackageSigner().key_pair()[1])


@pytest.fixture(scope="session")
def registry_module(
    demo_registry: Registry, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Registry:
    copy = copy_registry(demo_registry, tmp_path_factory.mktemp("gov_registry"))
    data = (sample_dir / "versions" / "data-v2" / "breast_cancer.csv").read_bytes()
    copy.publish("data-v3", data + data.rstrip(b"\n").rsplit(b"\n", 1)[1] + b"\n")
    return copy


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, governed: Governed) -> AuditLog:
    monkeypatch.setenv("LIFECYCLE_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("DAGSTER_HOME", str(governed.home))
    return AuditLog()


def _package(governed: Governed, key: str) -> Path:
    record = latest(governed.pipeline.instance, "deployment_package", key)
    return Path(str(metadata_values(record)["artifact/uri"]))


def test_promotion_needs_passed_gates_and_a_verifying_package(
    governed: Governed, log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    instance, key = governed.pipeline.instance, governed.public_key
    with pytest.raises(governance.GovernanceError) as failed_gate:
        governance.promote(instance, log, "data-v3", "ana", "try", key)
    assert "evaluation:gate_roc_auc: FAILED" in str(failed_gate.value)
    assert "newer than the package" in str(failed_gate.value)

    model = _package(governed, "data-v2") / "model.skops"
    original = model.read_bytes()
    try:
        model.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(governance.GovernanceError, match="package does not verify") as bad:
            governance.promote(instance, log, "data-v2", "ana", "try", key)
        assert "model.skops" in str(bad.value)
    finally:
        model.write_bytes(original)
    assert governance.history(log) == []  # refusals change nothing

    change = governance.promote(instance, log, "data-v2", "ana", "beats v1 on recall", key)
    assert (change.action, change.version, change.approver) == ("promotion", "data-v2", "ana")
    assert main(["promote", "data-v3", "--approver", "bo", "--reason", "r"]) == 2
    assert "gate_roc_auc" in capsys.readouterr().err
    assert main(["status"]) == 0
    assert "serving   data-v2" in capsys.readouterr().out


def test_rollback_restores_the_previous_version_and_history_answers_time_t(
    governed: Governed, log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    instance, key = governed.pipeline.instance, governed.public_key
    production = dg.AssetKey("production_model")
    before = len(instance.fetch_materializations(production, limit=100).records)
    assert main(["rollback", "--approver", "ana", "--reason", "r"]) == 2
    assert "nothing has been promoted" in capsys.readouterr().err

    first = governance.promote(instance, log, "data-v1", "ana", "initial release", key)
    second = governance.promote(instance, log, "data-v2", "bo", "retrained on v2", key)
    back = governance.rollback(instance, log, "cy", "v2 misroutes urgent cases", key)
    assert (back.action, back.version, back.previous) == ("rollback", "data-v1", "data-v2")
    assert governance.serving_at(log, back.time + timedelta(seconds=1)).version == "data-v1"  # type: ignore[union-attr]
    assert governance.serving_at(log, second.time).version == "data-v2"  # type: ignore[union-attr]
    assert governance.serving_at(log, first.time - timedelta(seconds=1)) is None
    assert back.package_sha256 == first.package_sha256  # the very package that served before

    assert main(["history", "--at", second.time.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "promotion  data-v2  by bo: retrained on v2" in out
    assert main(["history", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["action"], c["version"]) for c in listed] == [
        ("promotion", "data-v1"), ("promotion", "data-v2"), ("rollback", "data-v1"),
    ]  # fmt: skip
    # Each change is also an event on the production_model asset, for the UI.
    events = instance.fetch_materializations(production, limit=100).records
    assert len(events) == before + 3
    newest = metadata_values(events[0])
    assert (newest["action"], newest["version"]) == ("rollback", "data-v1")
    assert newest["approver"] == "cy"
    assert newest["audit/hash"] == log.records()[-1].hash
    assert log.verify().ok


def test_replay_of_a_golden_row_equals_the_packaged_output(
    governed: Governed, log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = _package(governed, "data-v1")
    golden = pd.read_parquet(package / "golden_inputs.parquet").iloc[[5]]
    expected = pd.read_parquet(package / "golden_outputs.parquet")["probability"].iloc[5]
    rows = tmp_path / "decision.parquet"
    golden.to_parquet(rows)
    assert main(["replay", "data-v1", "--input", str(rows)]) == 0
    out = capsys.readouterr().out
    replayed = pd.read_csv(io.StringIO(out.split("package ")[0]), index_col="row")
    assert replayed["probability"].iloc[0] == expected  # bit for bit, through %.17g
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["model"]["fingerprint"] in out and "(verified)" in out
    (record,) = [r for r in log.records() if r.kind == "replay"]
    assert record.data["predictions"]["probability"] == [expected]


def test_audit_export_holds_lineage_checks_documents_and_approvals(
    governed: Governed, log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    instance = governed.pipeline.instance
    governance.promote(instance, log, "data-v1", "ana", "initial release", governed.public_key)
    output = tmp_path / "bundle"
    assert main(["audit", "export", "--version", "data-v1", "--output", str(output)]) == 0
    bundle = json.loads((output / "audit.json").read_text())
    assert set(bundle["lineage"]) == {
        "data_snapshot", "features", "trained_model", "evaluation", "model_card",
        "deployment_package",
    }  # fmt: skip
    assert bundle["checks"] and all(c["passed"] for c in bundle["checks"].values())
    assert "evaluation:gate_roc_auc" in bundle["checks"]
    assert "documentation/model_card.md" in bundle["documentation"]
    assert (output / "documentation" / "model_card.md").read_text().startswith("# ")
    (promotion,) = bundle["deployment_history"]
    assert (promotion["approver"], promotion["reason"]) == ("ana", "initial release")
    assert {r["run_id"] for r in bundle["runs"]} >= {
        governed.pipeline.instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/partition": "data-v1"})
        )[0].run_id
    }
    page = (output / "audit.html").read_text()
    assert "Audit bundle: model version data-v1" in page and "initial release" in page
    # Exports never overwrite.
    assert main(["audit", "export", "--version", "data-v1", "--output", str(output)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_audit_sync_records_each_finished_run_once(governed: Governed, log: AuditLog) -> None:
    instance = governed.pipeline.instance
    added = governance.sync_runs(instance, log)
    runs = instance.get_runs()
    assert added == len(runs) and governance.sync_runs(instance, log) == 0
    recorded = {r.data["run_id"]: r for r in log.records() if r.kind == "run"}
    failed = [r for r in recorded.values() if r.data["status"] == "FAILURE"]
    assert len(failed) == 1  # the stricter re-evaluation of data-v3
    verdicts = {c["check"]: c["passed"] for c in failed[0].data["checks"]}
    assert verdicts["evaluation:gate_roc_auc"] is False
    run_id, model = next(
        (run_id, m)
        for run_id, r in recorded.items()
        for m in r.data["materializations"]
        if m["asset"] == "trained_model" and m["partition"] == "data-v1"
    )
    # The audit copy equals what the instance's event log holds for that run's materialization.
    [event] = [
        e
        for e in instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        if e.asset_key == dg.AssetKey("trained_model")
    ]
    in_instance = metadata_values(event)
    for key in ("model/fingerprint", "lineage", "artifact/sha256", "artifact/uri"):
        assert model["metadata"][key] == in_instance[key], key


def test_a_log_cut_short_or_replaced_is_caught_by_the_instances_copy(
    governed: Governed, log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deleting the last record(s) leaves a log whose remaining chain verifies on its own; the
    instance's copy of every governance change (seq and hash on production_model) does not
    agree, so verify, status and any further change refuse and name the missing record."""
    instance, key = governed.pipeline.instance, governed.public_key
    governance.promote(instance, log, "data-v1", "ana", "initial release", key)
    governance.promote(instance, log, "data-v2", "bo", "retrained on v2", key)
    back = governance.rollback(instance, log, "cy", "v2 misroutes urgent cases", key)
    assert main(["audit", "verify"]) == 0
    capsys.readouterr()
    whole = log.path.read_bytes()
    log.path.write_bytes(whole[: whole.rstrip(b"\n").rfind(b"\n") + 1])  # the rollback, gone
    assert log.verify().ok  # on its own, the shorter chain is flawless

    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert (
        f"record {back.seq}, the rollback of data-v1 (run-less event), is recorded in the "
        "Dagster instance but missing from the log: the log was cut short"
    ) in err, err
    assert main(["status"]) == 2  # it would otherwise name data-v2, rolled back, as serving
    assert "status refused" in capsys.readouterr().err
    with pytest.raises(AuditError, match=f"record {back.seq}, the rollback of data-v1"):
        governance.promote(instance, log, "data-v2", "ana", "again", key)

    # A log replaced by another that chains and verifies on its own: the hashes disagree.
    log.path.unlink()
    replacement = AuditLog(log.path)
    for _ in whole.splitlines():  # as many records as the original held, all rewritten
        replacement.append("promotion", {"note": "rewritten"}, version="data-v1")
    assert replacement.verify().ok
    assert main(["audit", "verify"]) == 1
    assert "the log was replaced" in capsys.readouterr().err
