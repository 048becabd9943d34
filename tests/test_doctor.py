"""`lifecycle doctor` and `lifecycle instance rebuild` on a real, then deliberately damaged,
instance: SQLite files cut in half, an artifact deleted, a registry tag moved, a log cut short.

One instance is built once (two data versions, a drift batch, one promotion, runs synced to the
audit log) and frozen; each test gets the live folder restored from that frozen copy at the
same absolute paths (recorded artifact URIs and the log path anchored in the instance stay
valid), then damages it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_pipeline import governance
from lifecycle_pipeline.lineage.audit import AuditLog
from lifecycle_pipeline.lineage.query import check_results, latest, metadata_values
from lifecycle_pipeline.lineage.trace import Materialization, trace
from lifecycle_pipeline.reproduce import recorded_version
from lifecycle_pipeline.resources.signing import PackageSigner
from tests.conftest import (
    PROJECT_ROOT,
    SAMPLE,
    SAMPLE_MODEL,
    Registry,
    copy_registry,
    fast_training,
    home_pipeline,
    lifecycle_cli,
    tree_digest,
)
from tests.reliability.cases import INSTANCE_DAMAGE, INSTANCE_REBUILD, Fault, case

pytestmark = pytest.mark.xdist_group("doctor")

MODEL = SAMPLE_MODEL.name


@dataclass(frozen=True)
class World:
    """The live folder a test may damage, and what was recorded while building it."""

    base: Path
    home: Path
    audit: Path
    registry: Registry
    public_key: Path
    runs: dict[str, str]  # data version (or batch) -> the run that materialized it
    partitions: dict[str, list[str]]  # dynamic partitions definition -> keys, as built
    batch: str
    verdicts: dict[str, dict[str, bool]]  # run -> check -> passed, as built

    @property
    def history(self) -> Path:
        return self.home / "history"

    def shard(self, version: str) -> Path:
        return self.history / "runs" / f"{self.runs[version]}.db"


def _environment(base: Path, registry: Registry) -> dict[str, str]:
    return {
        "DAGSTER_HOME": str(base / "dagster_home"),
        "LIFECYCLE_AUDIT_DIR": str(base / "audit"),
        "LIFECYCLE_REGISTRY_URL": str(registry.repo),
        "LIFECYCLE_ARTIFACT_ROOT": str(base / "artifacts"),
    }


@pytest.fixture(scope="module")
def frozen(demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Built once: data-v1 and data-v2 through the lifecycle job, one drift batch, data-v1
    promoted (which syncs every run to the audit log); then copied to ``<base>.frozen``."""
    base = tmp_path_factory.mktemp("doctor") / "world"
    registry = copy_registry(demo_registry, base)
    home = base / "dagster_home"  # made by home_pipeline below
    runs: dict[str, str] = {}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in _environment(base, registry).items():
            patch.setenv(name, value)
        patch.delenv("LIFECYCLE_MODEL", raising=False)
        public_key = PackageSigner().key_pair()[1]
        with home_pipeline(registry.resource(), base) as pipeline:
            instance = pipeline.instance
            for key in ("data-v1", "data-v2"):
                result = pipeline.run(key)
                assert result.success
                runs[key] = result.run_id
            batch = registry.resource().batches()[0]
            drift = pipeline.drift(batch)
            assert drift.success
            runs[batch] = drift.run_id
            log = AuditLog.for_model(MODEL)
            governance.promote(
                instance, SAMPLE_MODEL, log, "data-v1", "on-call", "first release", public_key
            )
            verdicts = {
                run_id: {name: c.passed for name, c in check_results(instance, run_id).items()}
                for run_id in runs.values()
            }
            partitions = {
                name: list(instance.get_dynamic_partitions(name))
                for name in (SAMPLE_MODEL.scoped("data_versions"),
                             SAMPLE_MODEL.scoped("production_batches"))
            }  # fmt: skip
    shutil.copytree(base, base.with_suffix(".frozen"), symlinks=True)
    yield World(base, home, base / "audit", registry, public_key, runs, partitions, batch, verdicts)


@pytest.fixture
def world(frozen: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The frozen instance restored at its own paths, with this process pointed at it."""
    shutil.rmtree(frozen.base)
    shutil.copytree(frozen.base.with_suffix(".frozen"), frozen.base, symlinks=True)
    for name, value in _environment(frozen.base, frozen.registry).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LIFECYCLE_MODEL", raising=False)
    return frozen


lifecycle = lifecycle_cli


def truncate(path: Path) -> None:
    """Keep the first half of the bytes: what a full disk or a killed copy leaves."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ---------------------------------------------------------------- doctor


def test_doctor_healthy_instance_creates_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    before, files = tree_digest(world.home), listing(world.home)
    assert lifecycle("doctor") == 0
    out = capsys.readouterr().out
    assert "no problems found" in out
    # What was checked, with counts: 3 stores + 3 run shards + the run-less shard.
    assert "7 SQLite file(s)" in out
    assert "1 audit log(s)" in out
    assert "2 data-version tag(s)" in out
    assert tree_digest(world.home) == before
    assert listing(world.home) == files  # opened read-only: no -wal, -shm or new shard


def _cut_log(world: World) -> str:
    log = world.audit / f"{MODEL}.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-2]))  # the promotion's intent and commit records deleted
    return str(log)


def _move_tag(world: World) -> str:
    repo = world.registry.repo
    other = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "-n", "1", "data-v2"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run(["git", "-C", str(repo), "tag", "-f", "data-v1", other], check=True,
                   capture_output=True)  # fmt: skip
    return "data-v1"


def _delete_artifact(world: World) -> str:
    with dg.DagsterInstance.from_config(str(world.home)) as instance:
        record = latest(instance, SAMPLE["trained_model"], "data-v2")
        uri = str(metadata_values(record)["artifact/uri"])
    Path(uri).unlink()
    return uri


def _truncate(relative: str):  # type: ignore[no-untyped-def]
    def damage(world: World) -> str:
        path = world.home / relative
        truncate(path)
        return str(path)

    return damage


def _truncate_shard(world: World) -> str:
    truncate(world.shard("data-v1"))
    return str(world.shard("data-v1"))


DAMAGE = {
    "truncated index.db": (_truncate("history/runs/index.db"), "lifecycle instance rebuild"),
    "truncated runs.db": (_truncate("history/runs.db"), "lifecycle instance rebuild"),
    "truncated run shard": (_truncate_shard, "lifecycle instance rebuild"),
    "missing artifact": (_delete_artifact, "dagster asset materialize"),
    "moved registry tag": (_move_tag, "tag -f data-v1"),
    "log cut short": (_cut_log, "restore"),
}


@pytest.mark.parametrize("fault", INSTANCE_DAMAGE, ids=[f.name for f in INSTANCE_DAMAGE])
def test_doctor_names_each_problem_and_its_fix(
    world: World, fault: Fault, capsys: pytest.CaptureFixture[str]
) -> None:
    damage, fix = DAMAGE[fault.value]
    where = damage(world)
    assert lifecycle("--model", MODEL, "doctor") == 1
    out = capsys.readouterr().out
    assert fault.shown_in(out), out
    lines = [line for line in out.splitlines() if where in line]
    assert lines, f"no line names {where}:\n{out}"
    assert any(fix in line for line in lines), out  # the same line says what fixes it
    assert "no problems found" not in out


def test_a_damaged_file_during_a_command_is_named(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    index = world.history / "runs" / "index.db"
    truncate(index)
    assert lifecycle("--model", MODEL, "status") == 2
    err = capsys.readouterr().err
    assert str(index) in err
    assert "lifecycle instance rebuild" in err and "lifecycle doctor" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------- rebuild

ALL = "every SQLite file"
STORES = {
    "runs.db": ["history/runs.db"],
    "index.db": ["history/runs/index.db"],
    "run shard": ["<shard data-v1>"],
    "run-less shard": ["history/runs/.db"],
    "schedules.db": ["schedules/schedules.db"],
    # Nothing left but the audit log, the artifacts and the registry.
    ALL: ["history/runs.db", "history/runs/index.db", "<shard data-v1>", "<shard data-v2>",
          "<shard batch>", "history/runs/.db", "schedules/schedules.db"],
}  # fmt: skip


def _path(world: World, name: str) -> Path:
    if name.startswith("<shard "):
        version = name.removeprefix("<shard ").removesuffix(">")
        return world.shard(world.batch if version == "batch" else version)
    return world.home / name


# The faults that damage one store (a row with no store is asserted by its own test).
REBUILT_STORES = [f for f in INSTANCE_REBUILD if f.value is not None]


@pytest.mark.parametrize("fault", REBUILT_STORES, ids=[str(f.value) for f in REBUILT_STORES])
def test_rebuild_restores_status_history_lineage_and_promotion(
    world: World, fault: Fault, capsys: pytest.CaptureFixture[str]
) -> None:
    store = fault.value
    damaged = {str(_path(world, n)): _path(world, n) for n in STORES[store]}
    for path in damaged.values():
        truncate(path)
    kept = {name: path.read_bytes() for name, path in damaged.items()}

    assert lifecycle("instance", "rebuild") == 0
    out = capsys.readouterr().out
    assert fault.shown_in(out), out  # where each store came from, and what was lost
    aside = next(Path(line.split(": ", 1)[1]) for line in out.splitlines()
                 if line.startswith("kept aside: "))  # fmt: skip
    for name, data in kept.items():  # never destroyed: the damaged bytes, moved aside
        moved = aside / Path(name).relative_to(world.home)
        assert moved.read_bytes() == data
        assert name in out  # named as damaged

    assert lifecycle("doctor") == 0, capsys.readouterr()
    capsys.readouterr()
    assert lifecycle("--model", MODEL, "status") == 0
    assert "data-v1" in capsys.readouterr().out
    assert lifecycle("--model", MODEL, "history") == 0
    assert "promotion  data-v1  by on-call: first release" in capsys.readouterr().out

    with dg.DagsterInstance.from_config(str(world.home)) as instance:
        for name, keys in world.partitions.items():
            assert list(instance.get_dynamic_partitions(name)) == keys
        for version in ("data-v1", "data-v2"):
            package = latest(instance, SAMPLE["deployment_package"], version)
            assert package is not None and package.run_id == world.runs[version]
            lineage = trace(instance, Materialization.from_record(package))
            snapshot = lineage[SAMPLE["data_snapshot"].to_user_string()]
            assert snapshot.run_id == world.runs[version]
        for run_id, verdicts in world.verdicts.items():  # what promotion is gated on
            restored = check_results(instance, run_id)
            assert {name: c.passed for name, c in restored.items()} == verdicts
        drift = latest(instance, SAMPLE["drift_monitor"], world.batch)
        assert drift is not None and drift.run_id == world.runs[world.batch]
        recorded = recorded_version(instance, SAMPLE_MODEL, "data-v2")
        assert recorded.run_id == world.runs["data-v2"]
        assert recorded.run_config == fast_training()
        run = instance.get_run_by_id(world.runs["data-v2"])
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS

    assert lifecycle("--model", MODEL, "promote", "data-v2", "--approver", "on-call",
                     "--reason", "after the rebuild") == 0, capsys.readouterr().err  # fmt: skip
    assert lifecycle("--model", MODEL, "audit", "verify") == 0


def test_rebuild_refuses_while_a_run_is_in_progress(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = world.history / "runs.db"
    with sqlite3.connect(runs) as connection:
        connection.execute(
            "UPDATE runs SET status = 'STARTED' WHERE run_id = ?", (world.runs["data-v2"],)
        )
    connection.close()
    before = tree_digest(world.home)
    assert lifecycle("instance", "rebuild") == 2
    err = capsys.readouterr().err
    assert world.runs["data-v2"] in err and "lifecycle runs recover" in err
    assert tree_digest(world.home) == before


def test_rebuild_refuses_while_another_process_has_the_storage_open(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A webserver or daemon between queries holds no lock, but a process holding a storage
    file open is visible, and is named."""
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; handle = open(sys.argv[1], 'rb'); "
         "print('open', flush=True); sys.stdin.read()", str(world.history / "runs.db")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        assert lifecycle("instance", "rebuild") == 2
    finally:
        holder.communicate("")
    err = capsys.readouterr().err
    assert f"process {holder.pid} has {world.history / 'runs.db'} open" in err
    assert not list(world.home.glob("before-rebuild-*"))


def test_rebuild_refuses_a_storage_it_does_not_manage(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    config = world.home / "dagster.yaml"
    config.write_text(
        config.read_text() + "storage:\n  postgres:\n    postgres_url: postgresql://x/y\n"
    )
    assert lifecycle("instance", "rebuild") == 2
    assert "postgres" in capsys.readouterr().err


def test_doctor_checks_artifacts_and_tags_from_the_log_when_the_instance_is_damaged(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Everything wrong at once, the index among it: what the instance can no longer say,
    the audit log's run records do, and the JSON report holds one entry per problem."""
    uri = _delete_artifact(world)
    tag = _move_tag(world)
    index = world.history / "runs" / "index.db"
    truncate(index)
    assert lifecycle("--model", MODEL, "doctor", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    where = {problem["where"]: problem["fix"] for problem in report["problems"]}
    assert where[str(index)] == "lifecycle instance rebuild"
    assert "dagster asset materialize" in where[uri]
    assert any(w.startswith(f"tag {tag} ") and "tag -f" in f for w, f in where.items())
    assert report["checked"]["data-version tag(s)"] == 2


# ---------------------------------------------------------------- coverage (issue 29)


def _models_folder(base: Path, change: str) -> Path:
    """A copy of the project's models folder: breast_cancer's declaration with a typo
    (``typo``) or its folder removed (``removed``)."""
    folder = base / "models"
    shutil.copytree(PROJECT_ROOT / "models", folder)
    declaration = folder / MODEL / "defs.yaml"
    if change == "removed":
        shutil.rmtree(declaration.parent)
    else:
        text = declaration.read_text(encoding="utf-8")
        assert "\n  description: >" in text
        declaration.write_text(text.replace("\n  description: >", "\n  descriptoin: >", 1))
    return folder


def test_a_model_that_does_not_load_is_verified_and_reported(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A broken declaration must not hide its model from verification: with a typo in it and
    an approver edited in its log, every command that covers all models names both."""
    broken = case("coverage", "declaration broken, approver edited")
    log = world.audit / f"{MODEL}.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    assert b"on-call" in lines[3]
    log.write_bytes(b"".join([*lines[:3], lines[3].replace(b"on-call", b"on-kall")]))
    monkeypatch.setenv("LIFECYCLE_MODELS_DIR", str(_models_folder(tmp_path / "typo", "typo")))
    edited = "record 3 (line 4): content was edited"
    now = "2100-01-01T00:00:00Z"
    for command in (("audit", "verify"), ("doctor",), ("history",), ("history", "--at", now),
                    ("status",)):  # fmt: skip
        capsys.readouterr()
        assert lifecycle(*command) == 1, command
        out, err = capsys.readouterr()
        assert broken.shown_in(out + err), (command, out, err)
        assert edited in out + err, (command, out, err)
        assert "no problems found" not in out
    for command in (("audit", "verify"), ("doctor",)):  # the model named: the same verdict
        capsys.readouterr()
        assert lifecycle("--model", MODEL, *command) == 1, command
        out, err = capsys.readouterr()
        assert broken.shown_in(out + err) and edited in out + err, (command, out, err)
    answering = (("status",), ("history",), ("history", "--at", now))
    for command in answering:  # the log does not verify: refused, and the model still named
        capsys.readouterr()
        assert lifecycle("--model", MODEL, *command) == 2, command
        out, err = capsys.readouterr()
        assert broken.shown_in(err) and edited in err and "data-v1" not in out, (command, out)
    log.write_bytes(b"".join(lines))  # the log whole: answered from it, still not verified
    for command in answering:
        capsys.readouterr()
        assert lifecycle("--model", MODEL, *command) == 1, command
        out, err = capsys.readouterr()
        assert broken.shown_in(err) and "data-v1" in out and "on-call" in out, (command, out)
    log.write_bytes(b"".join([*lines[:3], lines[3].replace(b"on-call", b"on-kall")]))
    # The folder removed, the log left: still a model with a history, still verified.
    gone = case("coverage", "log without a model folder")
    monkeypatch.setenv("LIFECYCLE_MODELS_DIR", str(_models_folder(tmp_path / "gone", "removed")))
    for command in (("audit", "verify"), ("doctor",), ("history",), ("status",)):
        capsys.readouterr()
        assert lifecycle(*command) == 1, command
        out, err = capsys.readouterr()
        assert gone.shown_in(out + err), (command, out, err)
        assert edited in out + err, (command, out, err)


def test_nothing_is_answered_from_a_log_that_does_not_verify(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """history, history --at, replay and export refuse a log cut short (exit 2), naming the
    problem and its fix, and append nothing; one model's damaged log does not stop
    `history --at` answering for the others."""
    refused = case("coverage", "history and replay from a log cut short")
    intact = (world.audit / f"{MODEL}.jsonl").read_bytes()
    path = _cut_log(world)
    cut = Path(path).read_bytes()
    rows = tmp_path / "rows.csv"
    rows.write_text("mean_radius\n1.0\n", encoding="utf-8")
    missing = "record 3, the promotion of data-v1 (run-less event), is recorded in the Dagster"
    for command in (
        ("history", "--at", "2100-01-01T00:00:00Z"),
        ("history",),
        ("replay", "data-v1", "--input", str(rows), "--public-key", str(world.public_key)),
        ("audit", "export", "--version", "data-v1", "--output", str(tmp_path / "export")),
    ):
        capsys.readouterr()
        assert lifecycle("--model", MODEL, *command) == 2, command
        err = capsys.readouterr().err
        action = {"replay": "replay of data-v1", "audit": "export of data-v1"}.get(command[0])
        expected = refused.expected.replace("history", action) if action else refused.expected
        assert expected in err, (command, err)
        assert missing in err and f"fix: restore {path} from a backup" in err, err
        assert Path(path).read_bytes() == cut  # nothing appended
    assert not (tmp_path / "export").exists()
    # The log whole again, another model's log torn: the others are still answered.
    others = case("coverage", "one model's log torn, history --at of all")
    Path(path).write_bytes(intact)
    torn = AuditLog.for_model("diabetes")
    torn.append("replay", {"note": "a record cut in half below"}, version="diabetes-v1")
    torn.path.write_bytes(torn.path.read_bytes()[:-20])
    capsys.readouterr()
    assert lifecycle("history", "--at", "2100-01-01T00:00:00Z") == 1
    out, err = capsys.readouterr()
    assert others.shown_in(out), out + err
    assert "record 0: torn" in err and "fix: `lifecycle --model diabetes audit recover`" in err


def _delete_promotion_row(database: Path) -> None:
    with sqlite3.connect(database) as connection:
        deleted = connection.execute(
            "DELETE FROM event_logs WHERE asset_key LIKE '%\"production_model\"]'"
        ).rowcount
    assert deleted == 1, deleted


@pytest.mark.parametrize("store", ["index", "run-less shard"])
def test_doctor_compares_the_event_index_with_each_runs_event_log(
    world: World, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A promotion event kept by one of the instance's stores and lost from the other is
    named, with the command that rebuilds the index; in the issue's drill the last audit
    record and the newest checkpoint went too, so nothing else contradicted the log."""
    if store == "index":
        fault = case("coverage", "promotion missing from the event index")
        _cut_log(world)
        for checkpoint in (world.audit / "checkpoints").rglob("*.json"):
            checkpoint.unlink()
        _delete_promotion_row(world.history / "runs" / "index.db")
    else:
        fault = case("coverage", "promotion missing from its run's event log")
        _delete_promotion_row(world.history / "runs" / ".db")
    assert lifecycle("doctor") == 1
    out = capsys.readouterr().out
    assert fault.shown_in(out), out
    line = next(line for line in out.splitlines() if fault.shown_in(line))
    assert line.endswith("; fix: lifecycle instance rebuild"), line
