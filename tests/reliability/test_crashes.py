"""SIGKILL at exact points (failpoints) in real CLI processes: nothing torn is ever readable.

Each run is a real ``dagster job execute`` process that kills itself with SIGKILL at the named
failpoint, so no cleanup code runs, as with the OOM killer. Afterwards the test checks what a
reader could pick up, then recovers and resumes the run the way on-call would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType

from lifecycle_pipeline.declaration import LoadedDeclaration, load_declaration
from lifecycle_pipeline.lineage.audit import AuditError, AuditLog
from lifecycle_pipeline.lineage.hashing import sha256_file
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.resources.artifact_store import ArtifactStore, ref_from_record
from tests.conftest import (
    PROJECT_ROOT,
    SAMPLE_MODEL,
    Registry,
    fast_training,
    scratch_pipeline,
)
from tests.reliability.cases import CRASHES, Fault, case

pytestmark = pytest.mark.xdist_group("crashes")

BIN = Path(sys.executable).parent
STAGES = ("data_snapshot", "features", "trained_model", "evaluation", "model_card")
LIFECYCLE = (*STAGES, "deployment_package")


DIABETES = load_declaration(PROJECT_ROOT / "models" / "diabetes")
# Both demo models (the second: regression, Parquet, a categorical feature), killed at both
# crash points; both are declared in the code location the killed process loads.
KILLS = [
    pytest.param(fault, key, model, id=fault.name + (" (diabetes)" if model is DIABETES else ""))
    for key, model in (("data-v1", SAMPLE_MODEL), ("diabetes-v1", DIABETES))
    for fault in CRASHES[:2]
]


@pytest.fixture(scope="session")
def clean_fingerprint(
    demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, LoadedDeclaration], str]:
    """A version's model fingerprint from an uninterrupted run, in its own instance and store."""
    found: dict[tuple[str, str], str] = {}

    def of(key: str, model: LoadedDeclaration) -> str:
        if (model.name, key) not in found:
            base = tmp_path_factory.mktemp("clean")
            with scratch_pipeline(demo_registry, base, model=model) as pipeline:
                # Only the stages the fingerprint depends on: packaging adds nothing to it.
                training = [model.key(s) for s in ("data_snapshot", "features", "trained_model")]
                assert pipeline.run(key, selection=training).success
                record = latest(pipeline.instance, model.key("trained_model"), key)
                found[model.name, key] = str(metadata_values(record)["model/fingerprint"])
        return found[model.name, key]

    return of


def cli_env(base: Path, registry: Registry, **extra: str) -> dict[str, str]:
    """The environment of a CLI run on its own instance, store and lifecycle home; every
    declared model is loaded, and no model is chosen (commands on one pass ``--model``)."""
    home = base / "dagster_home"
    home.mkdir(exist_ok=True)
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("LIFECYCLE_FAILPOINT", "LIFECYCLE_MODEL", "LIFECYCLE_MODELS_DIR")
        },
        "DAGSTER_HOME": str(home),
        "LIFECYCLE_HOME": str(base / "lifecycle_home"),
        "LIFECYCLE_REGISTRY_URL": str(registry.repo),
        "LIFECYCLE_ARTIFACT_ROOT": str(base / "artifacts"),
        "LIFECYCLE_AUDIT_DIR": str(base / "audit"),
        **extra,
    }


def execute(
    env: dict[str, str], key: str = "data-v1", model: LoadedDeclaration = SAMPLE_MODEL
) -> subprocess.Popen[str]:
    """Start ``dagster job execute`` of a model's lifecycle job for one partition."""
    config = Path(env["DAGSTER_HOME"]).parent / "run_config.json"
    config.write_text(json.dumps(fast_training(model)), encoding="utf-8")
    partitions = model.scoped("data_versions")
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        if key not in instance.get_dynamic_partitions(partitions):
            instance.add_dynamic_partitions(partitions, [key])
    command = [str(BIN / "dagster"), "job", "execute", "-m", "lifecycle_pipeline.definitions"]
    command += [
        "-j",
        model.scoped("lifecycle"),
        "-c",
        str(config),
        "--tags",
        json.dumps({"dagster/partition": key}),
    ]
    return subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def _stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state T in /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def lifecycle(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lifecycle"), *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip


def assert_readers_see_only_recorded_artifacts(
    instance: dg.DagsterInstance, root: Path, model: LoadedDeclaration = SAMPLE_MODEL
) -> None:
    """Every artifact a reader can find (not a ``.tmp-*`` name) anywhere under the root (every
    model's ``<model>/<stage>/<partition>/``) was recorded for ``model`` and verifies."""
    recorded: set[Path] = set()
    store = ArtifactStore(root=str(root))
    for asset in LIFECYCLE:
        for record in instance.fetch_materializations(model.key(asset), limit=100).records:
            metadata = metadata_values(record)
            recorded.add(Path(metadata["artifact/uri"]))
            if "artifact/archive" in metadata:
                recorded.add(Path(metadata["artifact/archive"]))
            if "artifact/kind" not in metadata:
                store.read(ref_from_record(record))  # digest verifies
    visible = {
        entry
        for partition in root.glob("*/*/*")
        for entry in partition.iterdir()
        if not entry.name.startswith(".tmp-")
    }
    assert visible <= recorded, sorted(map(str, visible - recorded))
    assert recorded <= visible, sorted(map(str, recorded - visible))  # found where readers look


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "key", "model"), KILLS)
def test_a_killed_run_leaves_nothing_readable_and_resumes_to_the_same_fingerprint(
    demo_registry: Registry,
    clean_fingerprint: Callable[[str, LoadedDeclaration], str],
    tmp_path: Path,
    fault: Fault,
    key: str,
    model: LoadedDeclaration,
) -> None:
    env = cli_env(tmp_path, demo_registry)
    point = fault.value.format(model=model.name)
    killed = execute({**env, "LIFECYCLE_FAILPOINT": point}, key, model)
    output, _ = killed.communicate(timeout=600)
    assert killed.returncode == -9, output[-3000:]  # SIGKILL, not an orderly failure
    artifacts = tmp_path / "artifacts"

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED  # nobody could record the death
        assert run.tags.get("lifecycle/model") == model.name
        assert_readers_see_only_recorded_artifacts(instance, artifacts, model)
        if point == "training.fitted":
            assert latest(instance, model.key("features"), key) is not None
            assert latest(instance, model.key("trained_model"), key) is None
            assert not (artifacts / model.name / "trained_model").exists()
        else:
            assert latest(instance, model.key("model_card"), key) is not None
            assert latest(instance, model.key("deployment_package"), key) is None
            [half] = (artifacts / model.name / "deployment_package" / key).iterdir()
            assert half.name.startswith(".tmp-")  # the torn folder is never under a final name
            assert sum(1 for p in half.rglob("*") if p.is_file()) > 0

    recovered = lifecycle(env, "runs", "recover", "--all")
    assert recovered.returncode == 0, recovered.stderr
    assert f"{run.run_id}: {fault.expected}" in recovered.stdout
    resumed = lifecycle(env, "resume", run.run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
        [child] = [r for r in instance.get_runs() if r.run_id != run.run_id]
        assert child.status == dg.DagsterRunStatus.SUCCESS
        assert child.parent_run_id == run.run_id
        redone = {
            r.event_log_entry.step_key
            for r in instance.get_records_for_run(
                child.run_id, of_type=DagsterEventType.STEP_SUCCESS
            ).records
        }
        first = model.op("trained_model" if point == "training.fitted" else "deployment_package")
        assert model.op("data_snapshot") not in redone and first in redone  # resumed, not restarted
        assert child.tags.get("lifecycle/model") == model.name
        trained = metadata_values(latest(instance, model.key("trained_model"), key))
        assert trained["model/fingerprint"] == clean_fingerprint(key, model)
        assert latest(instance, model.key("deployment_package"), key) is not None
        assert_readers_see_only_recorded_artifacts(instance, artifacts, model)
    verified = lifecycle(env, "--model", model.name, "verify", key)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_writer_killed_mid_append_leaves_a_torn_record_that_is_reported(
    tmp_path: Path, demo_registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = cli_env(tmp_path, demo_registry)
    name = SAMPLE_MODEL.name
    append = (
        "from lifecycle_pipeline.lineage.audit import AuditLog; "
        f"AuditLog.for_model({name!r})"
        ".append('promotion', {'approver': 'a', 'reason': 'r'}, version='{v}')"
    )
    for version in ("v1", "v2", "v3"):
        code = append.replace("{v}", version)
        subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=PROJECT_ROOT)
    log_path = Path(env["LIFECYCLE_AUDIT_DIR"]) / f"{name}.jsonl"  # the model's own log
    assert sorted(p.name for p in log_path.parent.glob("*.jsonl")) == [log_path.name]
    intact = log_path.read_bytes()
    code = append.replace("{v}", "v4")
    killed = subprocess.run(
        [sys.executable, "-c", code], env={**env, "LIFECYCLE_FAILPOINT": "audit.half_appended"},
        cwd=PROJECT_ROOT, check=False,
    )  # fmt: skip
    assert killed.returncode == -9
    torn = log_path.read_bytes()[len(intact) :]
    assert torn and not torn.endswith(b"\n")

    fault = case("crash", "SIGKILL while appending to the audit log")
    for chosen in ([], ["--model", name]):  # every model's log, and this model's alone
        verified = lifecycle(env, *chosen, "audit", "verify")
        assert verified.returncode == 1, verified.stdout + verified.stderr
        assert fault.shown_in(verified.stderr) and "record 3: torn" in verified.stderr
        assert f"{name}: {log_path}: NOT VERIFIED" in verified.stderr, verified.stderr
    before = log_path.read_bytes()
    for action in (["promote", "data-v1"], ["rollback"]):
        refused = lifecycle(env, "--model", name, *action, "--approver", "x", "--reason", "y")
        assert refused.returncode == 2, refused.stderr
        # Refused because of the torn record, before the empty instance is even consulted.
        assert "refused: the audit log does not verify" in refused.stderr, refused.stderr
        assert "record 3: torn" in refused.stderr
        assert log_path.read_bytes() == before  # nothing is ever added on top of a torn record

    recovered = lifecycle(env, "--model", name, "audit", "recover")
    assert recovered.returncode == 0, recovered.stderr
    [aside] = log_path.parent.glob(f"{name}.jsonl.torn-3-*")
    assert aside.read_bytes() == torn  # the evidence is kept, byte for byte
    for chosen in ([], ["--model", name]):
        again = lifecycle(env, *chosen, "audit", "verify")
        assert again.returncode == 0, again.stdout + again.stderr
    for variable in ("LIFECYCLE_AUDIT_DIR", "LIFECYCLE_HOME"):
        monkeypatch.setenv(variable, env[variable])
    records = AuditLog.for_model(name).records()
    assert [r.version for r in records[:3]] == ["v1", "v2", "v3"]
    assert records[3].kind == "recovery"
    assert records[3].data["torn_sha256"] == sha256_file(aside)
    assert {r.data["model"] for r in records} == {name}  # every record says whose log it is
    assert log_path.read_bytes().startswith(intact)  # earlier records untouched
    with pytest.raises(AuditError, match="no torn record"):
        AuditLog.for_model(name).recover_torn()


@pytest.mark.slow
def test_recover_leaves_a_live_worker_alone_and_fails_it_once_it_is_gone(
    demo_registry: Registry, tmp_path: Path
) -> None:
    """A paused worker (SIGSTOP) is alive: never marked failed. Killed, it is.

    The worker stops itself after the fit (a pause point), not at a moment chosen from
    outside: a SIGSTOP sent after some event could land inside a SQLite write and leave the
    instance locked, and one sent after the RUN_START event but before the run's status was
    updated found no started run at all."""
    env = cli_env(tmp_path, demo_registry, LIFECYCLE_PAUSEPOINT="training.fitted")
    process = execute(env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None and not _stopped(process.pid):
            time.sleep(0.2)
        assert _stopped(process.pid), "the worker never reached its pause point"
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            [run] = instance.get_runs()
            assert run.status == dg.DagsterRunStatus.STARTED
        alive = lifecycle(env, "runs", "recover", "--all")
        assert f"{run.run_id}: left as it is: worker pid {process.pid} is alive" in alive.stdout
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        gone = lifecycle(env, "runs", "recover", "--all")
        assert f"{run.run_id}: marked FAILURE: the run worker (pid {process.pid}" in gone.stdout
        again = lifecycle(env, "runs", "recover", "--all")
        assert "no started runs" in again.stdout  # reported once, never twice
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
