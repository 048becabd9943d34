"""Two processes materialize the same partition at once; secrets in their environment.

What happens, stated so it can be tested: both runs succeed and each records its own
materializations. Outputs whose bytes are identical (the data snapshot, the features, the
evaluation) land on one content-addressed path, written by whichever rename came last with the
same bytes; outputs whose bytes differ between runs (a skops archive, a signed package) are
distinct immutable files. Every recorded artifact verifies, and both models have one
fingerprint. Different partitions at once are covered in tests/test_deployment.py.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from lifecycle_pipeline.lineage.audit import AuditLog
from lifecycle_pipeline.lineage.query import metadata_values
from tests.conftest import SAMPLE_MODEL, Registry
from tests.reliability.cases import case
from tests.reliability.test_crashes import (
    LIFECYCLE,
    assert_readers_see_only_recorded_artifacts,
    cli_env,
    execute,
    lifecycle,
)

pytestmark = [pytest.mark.xdist_group("crashes"), pytest.mark.slow]

# Values no code has any reason to record; each must stay in the environment only.
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "sentinel-aws-3f9c1e7a",
    "PGPASSWORD": "sentinel-pg-8b2d4c6e",
    "LIFECYCLE_API_TOKEN": "sentinel-token-5a7e9b1d",
}


@dataclass
class TwoRuns:
    env: dict[str, str]
    outputs: list[str]
    base: Path


@pytest.fixture(scope="module")
def two_runs(demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> TwoRuns:
    base = tmp_path_factory.mktemp("same_partition")
    env = cli_env(base, demo_registry, **SECRETS)
    processes = [execute(env), execute(env)]  # both started before either is awaited
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    synced = lifecycle(env, "--model", SAMPLE_MODEL.name, "audit", "sync")
    assert synced.returncode == 0, synced.stderr
    return TwoRuns(env, outputs, base)


@pytest.fixture
def instance(two_runs: TwoRuns) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(two_runs.env["DAGSTER_HOME"]) as opened:
        yield opened


def test_two_processes_materializing_the_same_partition(
    two_runs: TwoRuns, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = case("concurrency", "same partition, two processes")
    for output in two_runs.outputs:  # what each `dagster job execute` printed
        assert fault.shown_in(output), output[-3000:]
    runs = instance.get_runs()
    assert len(runs) == 2 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    artifacts = two_runs.base / "artifacts"
    assert_readers_see_only_recorded_artifacts(instance, artifacts)
    assert not list(artifacts.rglob(".tmp-*"))
    shared: list[str] = []
    distinct: list[str] = []
    for asset in LIFECYCLE:
        records = instance.fetch_materializations(SAMPLE_MODEL.key(asset), limit=10).records
        assert sorted(r.run_id for r in records) == sorted(r.run_id for r in runs), asset
        uris = {metadata_values(r)["artifact/uri"] for r in records}
        (shared if len(uris) == 1 else distinct).append(asset)
    assert {"data_snapshot", "features"} <= set(shared)  # same bytes, one immutable path
    trained = SAMPLE_MODEL.key("trained_model")
    prints = {
        metadata_values(r)["model/fingerprint"]
        for r in instance.fetch_materializations(trained, limit=10).records
    }
    assert len(prints) == 1  # one model, however many times it was trained at once
    for name in ("LIFECYCLE_AUDIT_DIR", "LIFECYCLE_HOME"):
        monkeypatch.setenv(name, two_runs.env[name])
    log = AuditLog.for_model(SAMPLE_MODEL.name)
    assert log.verify().ok
    recorded = [r.data["run_id"] for r in log.records() if r.kind == "run"]
    assert sorted(recorded) == sorted(r.run_id for r in runs)
    assert {r.data["model"] for r in log.records()} == {SAMPLE_MODEL.name}


def _texts(root: Path) -> Iterator[tuple[str, bytes]]:
    """Every file under ``root``, and every member of every zip, as bytes."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield str(path), data
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.namelist():
                    yield f"{path}!{member}", archive.read(member)


def test_no_environment_secret_is_recorded(two_runs: TwoRuns, instance: dg.DagsterInstance) -> None:
    fault = case("exposure", "secrets stay out of the record")
    keys = Path(two_runs.env["LIFECYCLE_HOME"]) / "keys"
    key_lines = [
        line.strip()
        for key in keys.iterdir()
        if key.is_file() and not key.name.endswith(".pub")
        for line in key.read_bytes().splitlines()
        if len(line.strip()) >= 16 and b"-----" not in line
    ]
    assert key_lines, "the run should have created the dev signing and audit keys"
    needles = [v.encode() for v in SECRETS.values()] + key_lines
    places: list[tuple[str, bytes]] = []
    for run in instance.get_runs():
        places.append((f"run {run.run_id} tags and config", json.dumps(
            [run.tags, run.run_config], default=str).encode()))  # fmt: skip
        places += [
            (f"run {run.run_id} event", serialize_value(entry).encode())
            for entry in instance.all_logs(run.run_id)
        ]
    places += [(f"output of process {n}", out.encode()) for n, out in enumerate(two_runs.outputs)]
    places += list(_texts(Path(two_runs.env["DAGSTER_HOME"])))  # storage, compute logs
    places += list(_texts(two_runs.base / "artifacts"))  # documentation bundles, packages
    places += list(_texts(Path(two_runs.env["LIFECYCLE_AUDIT_DIR"])))  # every model's audit log
    assert len(places) > 100
    leaks = [(where, n) for where, data in places for n, s in enumerate(needles) if s in data]
    assert fault.shown_in(f"places holding a secret: {leaks}"), leaks
    bundle = [where for where, _ in places if where.endswith("card.md")]
    assert bundle, "the documentation bundle was among the scanned files"
