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
from lifecycle_pipeline.audit_checkpoint import checkpoint_problems, found_checkpoints
from lifecycle_pipeline.lineage.audit import AuditError, AuditLog
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.resources.signing import PackageSigner
from tests.conftest import (
    SAMPLE,
    SAMPLE_MODEL,
    Pipeline,
    Registry,
    copy_registry,
    home_pipeline,
    lifecycle_cli,
)

pytestmark = pytest.mark.xdist_group("governance")

MODEL = SAMPLE_MODEL.name
STRICT = {"ops": {SAMPLE_MODEL.op("evaluation"): {"config": {"gates": {"roc_auc": 0.99999}}}}}


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
    with home_pipeline(registry_module.resource(), base) as pipeline:
        home = Path(pipeline.instance.root_directory)
        for key in ("data-v1", "data-v2", "data-v3"):
            assert pipeline.run(key).success
        stricter = pipeline.run(
            "data-v3", STRICT, selection=dg.AssetSelection.assets(SAMPLE["evaluation"])
        )
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
    """The sample model's audit log, in a folder of this test's own."""
    monkeypatch.setenv("LIFECYCLE_AUDIT_DIR", str(tmp_path / "audit"))
    monkeypatch.setenv("DAGSTER_HOME", str(governed.home))
    monkeypatch.delenv("LIFECYCLE_MODEL", raising=False)  # none chosen: commands need --model
    return AuditLog.for_model(MODEL)


lifecycle = lifecycle_cli


def _package(governed: Governed, key: str) -> Path:
    record = latest(governed.pipeline.instance, SAMPLE["deployment_package"], key)
    return Path(str(metadata_values(record)["artifact/uri"]))


def test_promotion_needs_passed_gates_and_a_verifying_package(
    governed: Governed, log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    instance, key = governed.pipeline.instance, governed.public_key
    with pytest.raises(governance.GovernanceError) as failed_gate:
        governance.promote(instance, SAMPLE_MODEL, log, "data-v3", "ana", "try", key)
    assert "breast_cancer/evaluation:gate_roc_auc: FAILED" in str(failed_gate.value)
    assert "newer than the package" in str(failed_gate.value)

    model = _package(governed, "data-v2") / "model.skops"
    original = model.read_bytes()
    try:
        model.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(governance.GovernanceError, match="package does not verify") as bad:
            governance.promote(instance, SAMPLE_MODEL, log, "data-v2", "ana", "try", key)
        assert "model.skops" in str(bad.value)
    finally:
        model.write_bytes(original)
    assert governance.history(log) == []  # refusals change nothing

    change = governance.promote(
        instance, SAMPLE_MODEL, log, "data-v2", "ana", "beats v1 on recall", key
    )
    assert (change.action, change.version, change.approver) == ("promotion", "data-v2", "ana")
    assert log.records()[-1].data["model"] == MODEL
    promote = ["promote", "data-v3", "--approver", "bo", "--reason", "r"]
    assert lifecycle("--model", MODEL, *promote) == 2
    assert "gate_roc_auc" in capsys.readouterr().err
    assert lifecycle("--model", MODEL, "status") == 0
    out = capsys.readouterr().out
    assert "model     breast_cancer" in out and "serving   data-v2" in out
    # Without --model, one row per declared model: the other serves nothing yet.
    assert lifecycle("status") == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
    assert rows["model"][:2] == ["serving", "since"]
    assert rows["breast_cancer"][0] == "data-v2" and "ana" in rows["breast_cancer"]
    assert rows["diabetes"][0] == "-"


def test_rollback_restores_the_previous_version_and_history_answers_time_t(
    governed: Governed, log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    instance, key = governed.pipeline.instance, governed.public_key
    production = SAMPLE["production_model"]
    assert production == dg.AssetKey(["breast_cancer", "production_model"])
    before = len(instance.fetch_materializations(production, limit=100).records)
    assert lifecycle("--model", MODEL, "rollback", "--approver", "ana", "--reason", "r") == 2
    assert "nothing has been promoted" in capsys.readouterr().err

    first = governance.promote(
        instance, SAMPLE_MODEL, log, "data-v1", "ana", "initial release", key
    )
    second = governance.promote(
        instance, SAMPLE_MODEL, log, "data-v2", "bo", "retrained on v2", key
    )
    back = governance.rollback(instance, SAMPLE_MODEL, log, "cy", "v2 misroutes urgent cases", key)
    assert (back.action, back.version, back.previous) == ("rollback", "data-v1", "data-v2")
    assert governance.serving_at(log, back.time + timedelta(seconds=1)).version == "data-v1"  # type: ignore[union-attr]
    assert governance.serving_at(log, second.time).version == "data-v2"  # type: ignore[union-attr]
    assert governance.serving_at(log, first.time - timedelta(seconds=1)) is None
    assert back.package_sha256 == first.package_sha256  # the very package that served before

    assert lifecycle("--model", MODEL, "history", "--at", second.time.isoformat()) == 0
    out = capsys.readouterr().out
    assert "promotion  data-v2  by bo: retrained on v2" in out
    assert lifecycle("--model", MODEL, "history", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["model"], c["action"], c["version"]) for c in listed] == [
        (MODEL, "promotion", "data-v1"), (MODEL, "promotion", "data-v2"),
        (MODEL, "rollback", "data-v1"),
    ]  # fmt: skip
    # Without --model, every model's history, each change named by its model.
    assert lifecycle("history") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{MODEL}: ") for line in lines), lines
    # Each change is also an event on the production_model asset, for the UI.
    events = instance.fetch_materializations(production, limit=100).records
    assert len(events) == before + 3
    newest = metadata_values(events[0])
    assert (newest["action"], newest["model"], newest["version"]) == ("rollback", MODEL, "data-v1")
    assert newest["approver"] == "cy"
    committed = log.records()[-1]  # the event names the intent record the commit closes
    assert newest["audit/hash"] == committed.data["intent_hash"] == log.records()[-2].hash
    assert log.verify().ok


def test_replay_of_a_golden_row_equals_the_packaged_output(
    governed: Governed, log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = _package(governed, "data-v1")
    golden = pd.read_parquet(package / "golden_inputs.parquet").iloc[[5]]
    expected = pd.read_parquet(package / "golden_outputs.parquet")["probability"].iloc[5]
    rows = tmp_path / "decision.parquet"
    golden.to_parquet(rows)
    assert lifecycle("--model", MODEL, "replay", "data-v1", "--input", str(rows)) == 0
    out = capsys.readouterr().out
    replayed = pd.read_csv(io.StringIO(out.split("package ")[0]), index_col="row")
    assert replayed["probability"].iloc[0] == expected  # bit for bit, through %.17g
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["model"]["fingerprint"] in out and "(verified)" in out
    (record,) = [r for r in log.records() if r.kind == "replay"]
    assert record.data["predictions"]["probability"] == [expected]
    # Never promoted: the version's newest package, named with the run that made it.
    made = latest(governed.pipeline.instance, SAMPLE["deployment_package"], "data-v1")
    assert record.data["origin"] == "newest package; never promoted"
    assert made is not None and record.data["package_run_id"] == made.run_id
    assert f"made by   run {made.run_id}" in out


def test_audit_export_holds_lineage_checks_documents_and_approvals(
    governed: Governed, log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    instance = governed.pipeline.instance
    governance.promote(
        instance, SAMPLE_MODEL, log, "data-v1", "ana", "initial release", governed.public_key
    )
    output = tmp_path / "bundle"
    export = ["audit", "export", "--version", "data-v1", "--output", str(output)]
    assert lifecycle("--model", MODEL, *export) == 0
    bundle = json.loads((output / "audit.json").read_text())
    assert bundle["model"] == MODEL
    assert set(bundle["lineage"]) == {
        SAMPLE[stage].to_user_string()
        for stage in ("data_snapshot", "features", "trained_model", "evaluation", "model_card",
                      "deployment_package")
    }  # fmt: skip
    assert bundle["checks"] and all(c["passed"] for c in bundle["checks"].values())
    assert "breast_cancer/evaluation:gate_roc_auc" in bundle["checks"]
    assert "documentation/model_card.md" in bundle["documentation"]
    assert (output / "documentation" / "model_card.md").read_text().startswith("# ")
    (promotion,) = bundle["deployment_history"]
    assert (promotion["approver"], promotion["reason"]) == ("ana", "initial release")
    assert {r["run_id"] for r in bundle["runs"]} >= {
        governed.pipeline.instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/partition": "data-v1"})
        )[0].run_id
    }
    # The head the bundle was cut from, signed, travels with it and stays beside the log.
    shipped = output / "checkpoint.json"
    witnessed = json.loads(shipped.read_text())["checkpoint"]
    assert (witnessed["model"], witnessed["head"]) == (MODEL, log.verify().head)
    assert checkpoint_problems(log, [shipped]) == []
    page = (output / "audit.html").read_text()
    assert "Audit bundle: breast_cancer, model version data-v1" in page
    assert "initial release" in page
    # Exports never overwrite.
    assert lifecycle("--model", MODEL, *export) == 2
    assert "already exists" in capsys.readouterr().err


def test_audit_sync_records_each_finished_run_once(governed: Governed, log: AuditLog) -> None:
    instance = governed.pipeline.instance
    added = governance.sync_runs(instance, MODEL, log)
    runs = instance.get_runs()
    assert added == len(runs) and governance.sync_runs(instance, MODEL, log) == 0
    # Another model's log takes none of them: runs are filed under the model they ran for.
    other = AuditLog.for_model("diabetes")
    assert governance.sync_runs(instance, "diabetes", other) == 0 and other.records() == []
    recorded = {r.data["run_id"]: r for r in log.records() if r.kind == "run"}
    assert all(r.data["model"] == MODEL for r in recorded.values())
    failed = [r for r in recorded.values() if r.data["status"] == "FAILURE"]
    assert len(failed) == 1  # the stricter re-evaluation of data-v3
    verdicts = {c["check"]: c["passed"] for c in failed[0].data["checks"]}
    assert verdicts["breast_cancer/evaluation:gate_roc_auc"] is False
    run_id, model = next(
        (run_id, m)
        for run_id, r in recorded.items()
        for m in r.data["materializations"]
        if m["asset"] == "breast_cancer/trained_model" and m["partition"] == "data-v1"
    )
    # The audit copy equals what the instance's event log holds for that run's materialization.
    [event] = [
        e
        for e in instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        if e.asset_key == SAMPLE["trained_model"]
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
    governance.promote(instance, SAMPLE_MODEL, log, "data-v1", "ana", "initial release", key)
    governance.promote(instance, SAMPLE_MODEL, log, "data-v2", "bo", "retrained on v2", key)
    back = governance.rollback(instance, SAMPLE_MODEL, log, "cy", "v2 misroutes urgent cases", key)
    assert lifecycle("audit", "verify") == 0  # every model's log
    capsys.readouterr()
    # Each change signed the head it made: the witness outside the log and the instance.
    heads = [json.loads(p.read_text())["checkpoint"]["seq"] for p in found_checkpoints(log)]
    assert back.seq in heads and len(heads) == 3
    # The rollback is two records: its intent (which the instance's event names) and the
    # commit that put it in force; both gone.
    intent = int(log.records()[back.seq].data["intent_seq"])
    assert intent == back.seq - 1
    whole = log.path.read_bytes()
    log.path.write_bytes(b"".join(whole.splitlines(keepends=True)[:intent]))
    assert log.verify().ok  # on its own, the shorter chain is flawless

    assert lifecycle("audit", "verify") == 1
    err = capsys.readouterr().err
    assert (
        f"record {intent}, the rollback of data-v1 (run-less event), is recorded in the "
        "Dagster instance but missing from the log: the log was cut short"
    ) in err, err
    assert err.startswith(f"{MODEL}: ")  # the model whose log it is
    # It would otherwise name data-v2, rolled back, as serving.
    assert lifecycle("--model", MODEL, "status") == 2
    assert "status refused" in capsys.readouterr().err
    assert lifecycle("status") == 1  # every model: this one's row says its log does not verify
    out, err = capsys.readouterr()
    assert "breast_cancer  AUDIT LOG DOES NOT VERIFY" in out
    assert "the log was cut short" in err
    with pytest.raises(AuditError, match=f"record {intent}, the rollback of data-v1"):
        governance.promote(instance, SAMPLE_MODEL, log, "data-v2", "ana", "again", key)

    # A log replaced by another that chains and verifies on its own: the hashes disagree.
    log.path.unlink()
    replacement = AuditLog.for_model(MODEL)
    for _ in whole.splitlines():  # as many records as the original held, all rewritten
        replacement.append("promotion", {"note": "rewritten"}, version="data-v1")
    assert replacement.verify().ok
    assert lifecycle("--model", MODEL, "audit", "verify") == 1
    assert "the log was replaced" in capsys.readouterr().err
