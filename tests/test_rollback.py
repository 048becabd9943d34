"""Rollback, promotion and replay decide on the package, not on incidental re-runs.

One instance for the module: data-v1 and data-v2 packaged, data-v1 then data-v2 promoted, and
then every stage of data-v1 re-materialized, each in a run of its own, from identical inputs
(the package too: its signature is randomized, so the re-built one has another sha256). The
tests run in file order; the last one re-trains data-v1 differently, so it stays last.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from lifecycle_pipeline import governance
from lifecycle_pipeline.lineage.audit import AuditLog
from lifecycle_pipeline.lineage.query import history, metadata_values
from lifecycle_pipeline.resources.signing import PackageSigner
from tests.conftest import (
    SAMPLE,
    SAMPLE_MODEL,
    Pipeline,
    Registry,
    fast_training,
    home_pipeline,
    lifecycle_cli,
)
from tests.reliability.cases import case

pytestmark = pytest.mark.xdist_group("rollback")

MODEL = SAMPLE_MODEL.name
STAGES = ("data_snapshot", "features", "trained_model", "evaluation", "model_card",
          "deployment_package")  # fmt: skip


@dataclass
class Rolled:
    pipeline: Pipeline
    home: Path
    log: AuditLog
    public_key: Path
    served_v1: str  # sha256 of the data-v1 package that served
    served_v1_run: str
    rebuilt_v1: str  # sha256 of the identical re-build of data-v1's package
    rebuilt_v1_run: str
    reruns: dict[str, str]  # stage -> the run that re-materialized it


def _package(rolled: Rolled, sha256: str) -> Path:
    for record in history(rolled.pipeline.instance, SAMPLE["deployment_package"], "data-v1"):
        values = metadata_values(record)
        if values["artifact/sha256"] == sha256:
            return Path(str(values["artifact/uri"]))
    raise AssertionError(f"no data-v1 package {sha256}")


def rematerialize(
    pipeline: Pipeline, stage: str, config: dict[str, Any] | None = None
) -> dg.ExecuteInProcessResult:
    """One stage of data-v1 alone, with its checks (as "Materialize selected" in the UI), in
    the lifecycle job: a package_verifies never evaluated would rightly block a package."""
    job = pipeline.defs.resolve_job_def(SAMPLE_MODEL.scoped("lifecycle"))
    return job.execute_in_process(
        run_config=fast_training() if config is None else config,
        instance=pipeline.instance,
        partition_key="data-v1",
        asset_selection=[SAMPLE[stage]],
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def rolled(demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rolled]:
    base = tmp_path_factory.mktemp("rollback")
    with (
        pytest.MonkeyPatch.context() as env,
        # The demo registry is only read here: no tag is added or moved.
        home_pipeline(demo_registry.resource(), base) as pipeline,
    ):
        instance, home = pipeline.instance, Path(pipeline.instance.root_directory)
        env.setenv("LIFECYCLE_AUDIT_DIR", str(base / "audit"))
        env.setenv("DAGSTER_HOME", str(home))  # the `lifecycle` CLI reads the same instance
        env.delenv("LIFECYCLE_MODEL", raising=False)
        for key in ("data-v1", "data-v2"):
            assert pipeline.run(key).success
        log = AuditLog.for_model(MODEL)
        public_key = PackageSigner().key_pair()[1]
        first = governance.promote(
            instance, SAMPLE_MODEL, log, "data-v1", "ana", "first", public_key
        )
        governance.promote(instance, SAMPLE_MODEL, log, "data-v2", "bo", "retrained", public_key)
        reruns: dict[str, str] = {}
        for stage in STAGES:  # each stage alone, from the recorded upstream: identical inputs
            result = rematerialize(pipeline, stage)
            assert result.success, stage
            reruns[stage] = result.run_id
        packages = history(instance, SAMPLE["deployment_package"], "data-v1")
        served = next(r for r in packages if metadata_values(r)["artifact/sha256"]
                      == first.package_sha256)  # fmt: skip
        rebuilt = metadata_values(packages[-1])["artifact/sha256"]
        assert rebuilt != first.package_sha256  # the signature is randomized
        yield Rolled(
            pipeline, home, log, public_key, first.package_sha256, served.run_id,
            str(rebuilt), packages[-1].run_id, reruns,
        )  # fmt: skip


def lifecycle(*args: str) -> int:
    """`lifecycle --model breast_cancer ARGS` in this process."""
    return lifecycle_cli("--model", MODEL, *args)


def test_rollback_after_identical_rematerializations_restores_the_package_that_served(
    rolled: Rolled, capsys: pytest.CaptureFixture[str]
) -> None:
    fault = case("on-call", "rollback after identical re-runs")
    change = ["--approver", "cy", "--reason", "v2 misroutes urgent cases"]
    capsys.readouterr()
    assert lifecycle("rollback", "--to", "data-v1", *change) == 0, capsys.readouterr().err
    assert fault.shown_in(capsys.readouterr().out)
    record = rolled.log.records()[-1]
    assert (record.kind, record.version) == ("rollback", "data-v1")
    # The very package that served, not the newest (re-built) one.
    assert record.data["package_sha256"] == rolled.served_v1
    assert record.data["runs"]["breast_cancer/deployment_package"] == rolled.served_v1_run
    # Every re-materialization judged identical is named, with its run and the evidence.
    judged = {r["asset"]: r for r in record.data["identical_rematerializations"]}
    assert set(judged) == {SAMPLE[s].to_user_string() for s in STAGES}
    assert {s: judged[SAMPLE[s].to_user_string()]["run_id"] for s in STAGES} == rolled.reruns
    trained = judged["breast_cancer/trained_model"]["evidence"]
    assert set(trained) >= {"model/fingerprint", "dvc/md5", "code/commit", "env/lock_hash"}
    # Promotion decides the same way: data-v1's newest package, re-built from identical inputs.
    assert lifecycle("promote", "data-v2", *change) == 0
    assert lifecycle("promote", "data-v1", *change) == 0, capsys.readouterr().err
    assert rolled.log.records()[-1].data["package_sha256"] == rolled.rebuilt_v1
    assert rolled.log.verify().ok


def test_replay_picks_the_package_by_run_or_by_path_and_names_it(
    rolled: Rolled, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = _package(rolled, rolled.served_v1)
    rows = tmp_path / "decision.parquet"
    pd.read_parquet(package / "golden_inputs.parquet").iloc[[3]].to_parquet(rows)
    capsys.readouterr()

    replay = ["replay", "data-v1", "--input", str(rows)]
    for chosen, sha, run in (
        (["--run", rolled.served_v1_run], rolled.served_v1, rolled.served_v1_run),
        (["--run", rolled.rebuilt_v1_run], rolled.rebuilt_v1, rolled.rebuilt_v1_run),
        (["--package", str(package)], rolled.served_v1, rolled.served_v1_run),
        (["--package", f"{package}.zip"], rolled.served_v1, rolled.served_v1_run),
    ):
        assert lifecycle(*replay, *chosen) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert f"sha256    {sha}" in out and f"run {run}" in out, out
        record = rolled.log.records()[-1]
        assert record.kind == "replay"
        assert (record.data["package_sha256"], record.data["package_run_id"]) == (sha, run)
        assert record.data["origin"] == (
            f"--run {run}" if chosen[0] == "--run" else f"--package {chosen[1]}"
        )
    # Neither: the package that served data-v1 last, named by the change that put it there.
    served = [c for c in governance.history(rolled.log) if c.version == "data-v1"][-1]
    assert lifecycle(*replay) == 0, capsys.readouterr().err
    record = rolled.log.records()[-1]
    assert record.data["package_sha256"] == served.package_sha256
    assert record.data["origin"] == f"{served.action} #{served.seq}"
    assert record.data["package_run_id"] in (rolled.served_v1_run, rolled.rebuilt_v1_run)


def test_replay_refuses_a_bad_run_id_and_a_tampered_or_unrecorded_package(
    rolled: Rolled, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = _package(rolled, rolled.served_v1)
    rows = tmp_path / "decision.parquet"
    pd.read_parquet(package / "golden_inputs.parquet").iloc[[3]].to_parquet(rows)
    replay = ["replay", "data-v1", "--input", str(rows)]
    replays = len([r for r in rolled.log.records() if r.kind == "replay"])
    capsys.readouterr()

    assert lifecycle(*replay, "--unrecorded") == 2
    assert "--unrecorded applies to a package given with --package" in capsys.readouterr().err
    assert lifecycle(*replay, "--run", "../../escape") == 2
    assert "Invalid run id '../../escape'" in capsys.readouterr().err
    unknown = str(uuid.uuid4())
    assert lifecycle(*replay, "--run", unknown) == 2
    assert f"No run {unknown}" in capsys.readouterr().err
    made = [p for p in rolled.home.parent.rglob("*") if "escape" in p.name or unknown in p.name]
    assert made == []  # asking storage about an id would create a database file named by it
    snapshot_only = rolled.reruns["data_snapshot"]
    assert lifecycle(*replay, "--run", snapshot_only) == 2
    err = capsys.readouterr().err
    assert case("on-call", "replay: a run that made no package").shown_in(err), err
    assert f"run {snapshot_only} made no deployment_package of data-v1" in err, err

    tampered = tmp_path / "tampered"
    shutil.copytree(package, tampered)
    model = tampered / "model.skops"
    model.write_bytes(model.read_bytes()[:-1] + bytes([model.read_bytes()[-1] ^ 1]))
    assert lifecycle(*replay, "--package", str(tampered)) == 1
    err = capsys.readouterr().err
    assert case("on-call", "replay: a tampered package").shown_in(err), err
    assert "model.skops" in err and "does not verify" in err, err

    # Signed again outside the pipeline: it verifies, but no materialization recorded it.
    resigned = tmp_path / "resigned"
    shutil.copytree(package, resigned)
    PackageSigner().sign(resigned)
    assert lifecycle(*replay, "--package", str(resigned)) == 2
    err = capsys.readouterr().err
    assert case("on-call", "replay: an unrecorded package").shown_in(err), err
    assert "not recorded" in err and "--unrecorded" in err, err
    assert len([r for r in rolled.log.records() if r.kind == "replay"]) == replays
    # Asked for explicitly, it is replayed and recorded as unrecorded.
    assert lifecycle(*replay, "--package", str(resigned), "--unrecorded") == 0
    record = rolled.log.records()[-1]
    assert (record.kind, record.data["package_run_id"]) == ("replay", None)
    assert record.data["origin"].startswith(f"--package {resigned} (unrecorded")
    assert "UNRECORDED" in capsys.readouterr().out

    # A package of another version is not this version's, even though it is recorded.
    other = next(
        Path(str(metadata_values(r)["artifact/uri"]))
        for r in history(rolled.pipeline.instance, SAMPLE["deployment_package"], "data-v2")
    )
    assert lifecycle(*replay, "--package", str(other)) == 2
    assert case("on-call", "replay: another version's package").shown_in(capsys.readouterr().err)


def test_rollback_is_refused_naming_the_evidence_that_contradicts_the_package(
    rolled: Rolled, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs last: it re-trains data-v1 differently, which the module's other tests must not see."""
    instance, key, log = rolled.pipeline.instance, rolled.public_key, rolled.log
    governance.promote(instance, SAMPLE_MODEL, log, "data-v2", "bo", "again", key)
    served = [c for c in governance.history(log) if c.version == "data-v1"][-1]
    model = _package(rolled, served.package_sha256) / "model.skops"
    original = model.read_bytes()
    try:
        model.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(governance.GovernanceError, match="package does not verify") as bad:
            governance.rollback(instance, SAMPLE_MODEL, log, "cy", "r", key, to="data-v1")
        assert "model.skops" in str(bad.value)
        assert case("on-call", "rollback to a tampered package").shown_in(str(bad.value))
    finally:
        model.write_bytes(original)

    changed = fast_training()
    changed["ops"][SAMPLE_MODEL.op("trained_model")]["config"]["params"]["n_estimators"] = 41
    retrained = rematerialize(rolled.pipeline, "trained_model", changed)
    assert retrained.success
    with pytest.raises(governance.GovernanceError) as refused:
        governance.rollback(instance, SAMPLE_MODEL, log, "cy", "r", key, to="data-v1")
    message = str(refused.value)
    assert case("on-call", "rollback against a different re-training").shown_in(message)
    assert f"breast_cancer/trained_model was re-materialized in run {retrained.run_id}" in message
    assert "model/fingerprint" in message, message
    with pytest.raises(governance.GovernanceError, match="model/fingerprint"):
        governance.promote(instance, SAMPLE_MODEL, log, "data-v1", "ana", "r", key)
    assert log.records()[-1].version == "data-v2"  # refusals change nothing
