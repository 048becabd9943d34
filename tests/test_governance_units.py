"""Governance's building blocks, exercised directly (`make mutate`): approvals, lineage gaps,
the identity of a re-materialized stage, a package found by version or by digest, and the runs
recorded as audit evidence. A real ephemeral Dagster instance, with materializations reported
into it as a run of the lifecycle would record them; no lifecycle is run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lifecycle_pipeline.governance import (
    Candidate,
    GovernanceError,
    Rematerialization,
    check_approval,
    evidence,
    jsonable,
    lineage_gaps,
    package_record,
    recorded_package,
    run_record,
    runs_of,
    sync_runs,
)
from lifecycle_pipeline.lineage.audit import AuditLog
from lifecycle_pipeline.lineage.trace import Materialization
from lifecycle_pipeline.resources.artifact_store import SHA_KEY, URI_KEY
from tests.conftest import SAMPLE_MODEL

COMMIT = "a" * 40


# ------------------------------------------------------------------------------ approvals


@pytest.mark.parametrize(
    ("approver", "reason"), [("", "ok"), ("ana", ""), ("  ", "ok"), ("ana", " \t ")]
)
def test_an_approval_needs_an_approver_and_a_reason(approver: str, reason: str) -> None:
    with pytest.raises(GovernanceError) as raised:
        check_approval("promotion", approver, reason)
    assert str(raised.value) == ("promotion needs an approver and a reason (--approver, --reason).")


def test_an_approval_with_a_control_character_is_refused_naming_where() -> None:
    check_approval("promotion", "Ana Müller", "passes gates; ok → ship")  # printable text
    with pytest.raises(GovernanceError) as raised:
        check_approval("rollback", "ana", "fine\nv9 promoted by boss")
    message = str(raised.value)
    assert message.startswith(
        "rollback refused: reason 'fine\\nv9 promoted by boss' holds a control character "
        "(U+000A at position 4)"
    )
    assert message.endswith(
        "an approver and a reason are one line of printable text, so that `history`, `status` "
        "and the UI print them as given. Pass --reason without line breaks or control "
        "characters."
    )
    with pytest.raises(GovernanceError, match=r"approver 'a\\u202eb' .*U\+202E at position 1"):
        check_approval("promotion", "a\u202eb", "ok")


# --------------------------------------------------------------------------- lineage gaps


def test_a_complete_lineage_has_no_gaps() -> None:
    assert lineage_gaps("f" * 64, "d" * 32, COMMIT) == []


def test_each_unrecorded_lineage_value_is_a_gap_by_name() -> None:
    assert lineage_gaps("", "", "") == [
        "trained_model: model/fingerprint is not recorded",
        "data_snapshot: dvc/md5 is not recorded",
        "trained_model: code/commit is not recorded",
    ]
    assert lineage_gaps("f", "", COMMIT) == ["data_snapshot: dvc/md5 is not recorded"]


def test_a_commit_git_could_not_read_is_a_gap() -> None:
    assert lineage_gaps("f", "d", "unknown") == [
        "trained_model: code/commit is 'unknown' (git could not read it when the model was "
        "trained): retrain where git can read the checkout, or build an image with "
        "build-info.json"
    ]


# -------------------------------------------------------------------- re-materializations


def _made(asset: str, run_id: str, metadata: dict[str, Any]) -> Materialization:
    return Materialization(asset, "data-v1", run_id, 1, 0.0, metadata)


def test_evidence_reads_plain_keys_and_one_files_digest() -> None:
    metadata = {"a": 1, "files": {"predict.py": "p1", "uv.lock": "u1"}, "plain": "x"}
    assert evidence(metadata, ("a", "files[predict.py]", "files[README.md]", "missing")) == {
        "a": 1,
        "files[predict.py]": "p1",
        "files[README.md]": None,
        "missing": None,
    }
    assert evidence(metadata, ("plain[x]",)) == {"plain[x]": None}  # not a dict of files


def test_a_package_rebuilt_with_another_predict_py_contradicts_the_packaged_one() -> None:
    files = {"predict.py": "p1", "uv.lock": "u"}
    packaged = _made("m/deployment_package", "r1", {"model/fingerprint": "f", "files": files})
    same = _made("m/deployment_package", "r2", {"model/fingerprint": "f", "files": files})
    other = _made(
        "m/deployment_package",
        "r3",
        {"model/fingerprint": "f", "files": {**files, "predict.py": "p2"}},
    )
    assert Rematerialization.judge(packaged, other).differing["files[predict.py]"] == ("p1", "p2")
    assert "files[predict.py]" not in Rematerialization.judge(packaged, same).differing


def test_a_rematerialization_with_the_same_identity_is_identical() -> None:
    metadata = {SHA_KEY: "s1", "dvc/md5": "m1", "code/commit": COMMIT, "config_hash": None}
    judged = Rematerialization.judge(
        _made("m/features", "r1", metadata), _made("m/features", "r2", {**metadata, "x": 1})
    )
    assert judged.differing == {}
    assert (judged.asset, judged.run_id) == ("m/features", "r2")
    # The newer one's identity and context are what the audit record keeps (unrecorded
    # context is left out).
    assert judged.evidence == {SHA_KEY: "s1", "dvc/md5": "m1", "code/commit": COMMIT}
    assert judged.to_dict() == {"asset": "m/features", "run_id": "r2", "evidence": judged.evidence}


def test_an_unrecorded_identity_counts_as_a_difference_never_a_match() -> None:
    judged = Rematerialization.judge(
        _made("m/trained_model", "r1", {"model/fingerprint": "f" * 64}),
        _made("m/trained_model", "r2", {"model/fingerprint": "g" * 64, "dvc/md5": "m"}),
    )
    assert judged.differing == {
        "model/fingerprint": ("f" * 64, "g" * 64),
        "dvc/md5": (None, "m"),
        "declaration/sha256": (None, None),
    }
    assert judged.refusal() == (
        "m/trained_model was re-materialized in run r2 and contradicts the package's lineage: "
        f"model/fingerprint {'g' * 16} (packaged: {'f' * 16}); dvc/md5 m (packaged: not "
        "recorded); declaration/sha256 not recorded (packaged: not recorded); the version's "
        "evidence changed since it was packaged. Find out why (`lifecycle reproduce`), then "
        "package and promote what is current"
    )


def test_a_stage_is_known_by_its_last_key_segment_under_a_deeper_prefix() -> None:
    judged = Rematerialization.judge(
        _made("team/m/trained_model", "r1", {SHA_KEY: "a", "model/fingerprint": "f"}),
        _made("team/m/trained_model", "r2", {SHA_KEY: "b", "model/fingerprint": "f"}),
    )
    # A trained model is known by its fingerprint (equal here), data and declaration, never
    # by its bytes (which differ); the two unrecorded values count as differences.
    assert judged.differing == {"dvc/md5": (None, None), "declaration/sha256": (None, None)}


def test_an_unknown_stage_is_identified_by_its_artifact_digest() -> None:
    judged = Rematerialization.judge(
        _made("m/custom", "r1", {SHA_KEY: "a", "model/fingerprint": "f"}),
        _made("m/custom", "r2", {SHA_KEY: "b", "model/fingerprint": "f"}),
    )
    assert judged.differing == {SHA_KEY: ("a", "b")}


def test_metadata_is_recorded_as_json_safe_values() -> None:
    class Row(tuple[int, int]):
        pass

    assert jsonable(None) is None and jsonable(True) is True and jsonable(1.5) == 1.5
    assert jsonable({1: [1, (2, "x")], "k": {"n": None}}) == {"1": [1, [2, "x"]], "k": {"n": None}}
    assert jsonable(Row((1, 2))) == "(1, 2)"  # a record subclassing tuple is its repr
    assert jsonable(Path("/x")) == repr(Path("/x"))


def test_a_candidate_summarizes_what_its_promotion_record_holds() -> None:
    lineage = {"m/b": _made("m/b", "r2", {}), "m/a": _made("m/a", "r1", {})}
    same = Rematerialization("m/a", "r3", {"k": Path("/p")}, {})
    summary = Candidate("v1", "file:///p", "s" * 64, "f", "d", COMMIT, lineage, [], [same])
    assert summary.summary() == {
        "version": "v1",
        "package_uri": "file:///p",
        "package_sha256": "s" * 64,
        "fingerprint": "f",
        "data_md5": "d",
        "code_commit": COMMIT,
        "runs": {"m/a": "r1", "m/b": "r2"},
        "identical_rematerializations": [
            {"asset": "m/a", "run_id": "r3", "evidence": {"k": repr(Path("/p"))}}
        ],
    }
    assert list(summary.summary()["runs"]) == ["m/a", "m/b"]


# ------------------------------------------------------------- packages in the instance


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as found:
        yield found


def _report(instance: dg.DagsterInstance, stage: str, version: str, **metadata: Any) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(SAMPLE_MODEL.key(stage), partition=version, metadata=metadata)
    )


def test_a_version_package_is_its_newest_or_the_one_with_a_digest(
    instance: dg.DagsterInstance,
) -> None:
    for n in (1, 2, 3):
        _report(instance, "deployment_package", "v1", **{SHA_KEY: f"s{n}", URI_KEY: f"u{n}"})
    _report(instance, "deployment_package", "v2", **{SHA_KEY: "s1", URI_KEY: "other"})

    def sha(record: Any) -> str:
        return str(record.asset_materialization.metadata[URI_KEY].value)

    assert sha(package_record(instance, SAMPLE_MODEL, "v1", None)) == "u3"
    assert sha(package_record(instance, SAMPLE_MODEL, "v1", "s1")) == "u1"
    assert sha(package_record(instance, SAMPLE_MODEL, "v2", "s1")) == "other"
    assert recorded_package(instance, SAMPLE_MODEL, "v1", "s9") is None
    with pytest.raises(GovernanceError) as raised:
        package_record(instance, SAMPLE_MODEL, "v1", "s9")
    assert str(raised.value).startswith(
        "the v1 package that served before (sha256 s9) is not among the deployment_package "
        "materializations of v1 in this instance ("
    )


def test_a_version_never_packaged_says_what_to_do(instance: dg.DagsterInstance) -> None:
    with pytest.raises(GovernanceError) as raised:
        package_record(instance, SAMPLE_MODEL, "v1", None)
    assert str(raised.value) == (
        "'v1' has no deployment_package in this instance; materialize the lifecycle job for it "
        "first (it packages only a model that passed its gates)."
    )
    _report(instance, "trained_model", "v1", **{"code/commit": "unknown", "run": "x"})
    with pytest.raises(GovernanceError) as unreadable:
        package_record(instance, SAMPLE_MODEL, "v1", None)
    assert str(unreadable.value).endswith(
        "recorded code/commit 'unknown': git could not read the checkout, and a model whose "
        "code no commit holds is never packaged or promoted. Retrain where git can read the "
        "checkout (or from an image with build-info.json), then promote."
    )
    _report(instance, "trained_model", "v3", run="y")  # no commit recorded at all
    with pytest.raises(GovernanceError, match="recorded code/commit '': git could not read"):
        package_record(instance, SAMPLE_MODEL, "v3", None)
    _report(instance, "trained_model", "v2", **{"code/commit": COMMIT})
    with pytest.raises(GovernanceError, match="materialize the lifecycle job for it first"):
        package_record(instance, SAMPLE_MODEL, "v2", None)


# ------------------------------------------------------------------ runs as audit evidence


@dg.asset(key=SAMPLE_MODEL.key("features"), partitions_def=dg.StaticPartitionsDefinition(["v1"]))
def _features() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={SHA_KEY: "s", "rows": 3, "table": [1, (2, 3)]})


@dg.asset_check(asset=_features)
def _rows_positive() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="no rows", metadata={"rows": 0})


@dg.asset(key=["other_model", "features"])
def _other() -> None:
    return None


def test_a_finished_run_is_recorded_with_what_it_made_and_every_verdict(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "audit.key"
    key.write_text("0" * 64)
    monkeypatch.setenv("LIFECYCLE_AUDIT_KEY", str(key))
    result = dg.materialize(
        [_features, _rows_positive],
        instance=instance,
        partition_key="v1",
        tags={"lifecycle/model": SAMPLE_MODEL.name, "custom": "dropped"},
        raise_on_error=False,
    )
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    other = dg.materialize([_other], instance=instance)
    other_run = instance.get_run_by_id(other.run_id)
    assert other_run is not None
    assert runs_of(instance, run, SAMPLE_MODEL.name)
    assert not runs_of(instance, run, "other_model")
    assert runs_of(instance, other_run, "other_model")  # an ad-hoc run: by the assets it made
    assert not runs_of(instance, other_run, SAMPLE_MODEL.name)
    # The model tag decides, whatever assets the run made.
    tagged = dg.materialize([_other], instance=instance, tags={"lifecycle/model": "third"})
    tagged_run = instance.get_run_by_id(tagged.run_id)
    assert tagged_run is not None
    assert runs_of(instance, tagged_run, "third") and not runs_of(
        instance, tagged_run, "other_model"
    )

    recorded = run_record(instance, run)
    assert recorded["run_id"] == run.run_id and recorded["status"] == "SUCCESS"
    assert recorded["job"] == run.job_name
    assert recorded["tags"]["lifecycle/model"] == SAMPLE_MODEL.name
    assert recorded["tags"]["dagster/partition"] == "v1" and "custom" not in recorded["tags"]
    assert isinstance(recorded["ended"], float)
    assert recorded["run_config"] == {}
    (made,) = recorded["materializations"]
    assert made["asset"] == f"{SAMPLE_MODEL.name}/features" and made["partition"] == "v1"
    assert made["metadata"] == {SHA_KEY: "s", "rows": 3, "table": [1, [2, 3]]}
    assert isinstance(made["storage_id"], int)
    assert recorded["checks"] == [
        {
            "check": f"{SAMPLE_MODEL.name}/features:_rows_positive",
            "passed": False,
            "description": "no rows",
            "metadata": {"rows": 0},
        }
    ]

    log = AuditLog(tmp_path / "audit" / "m.jsonl", SAMPLE_MODEL.name)
    assert sync_runs(instance, SAMPLE_MODEL.name, log) == 1
    assert sync_runs(instance, SAMPLE_MODEL.name, log) == 0  # recorded once
    (entry,) = log.records()
    assert (entry.kind, entry.version, entry.data["run_id"]) == ("run", "v1", run.run_id)
    other_log = AuditLog(tmp_path / "audit" / "o.jsonl", "other_model")
    assert sync_runs(instance, "other_model", other_log) == 1
    assert other_log.records()[0].version is None
    assert sync_runs(instance, "nobody", AuditLog(tmp_path / "audit" / "n.jsonl")) == 0
    assert not (tmp_path / "audit" / "n.jsonl").exists()
