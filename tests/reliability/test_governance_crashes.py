"""A real `lifecycle promote` or `rollback`, killed between its writes, raced, or refused by
the instance: the change is in force in all three stores or named until it is settled.

One world is built once (data-v1 and data-v2 packaged, data-v1 promoted) and frozen; each test
gets it back at the same absolute paths (the instance records absolute artifact and log paths),
so no test trains. Only the process under test is a real CLI process (a SIGKILL must hit a real
process); the commands that inspect and settle the state afterwards run in this process, as
`lifecycle` would, to keep the tests cheap. The write order is governance_commit's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_pipeline import governance
from lifecycle_pipeline.audit_anchor import verify_anchored
from lifecycle_pipeline.audit_checkpoint import found_checkpoints, read_checkpoint
from lifecycle_pipeline.governance_commit import pending_changes
from lifecycle_pipeline.lineage.audit import AuditLog
from lifecycle_pipeline.lineage.query import metadata_values
from lifecycle_pipeline.resources.signing import PackageSigner
from tests.conftest import (
    PROJECT_ROOT,
    SAMPLE_MODEL,
    Registry,
    copy_registry,
    home_pipeline,
    lifecycle_cli,
)
from tests.reliability.cases import GOVERNANCE_KILLS, Fault, case

pytestmark = [pytest.mark.xdist_group("governance_crashes"), pytest.mark.slow]

MODEL = SAMPLE_MODEL.name
BIN = Path(sys.executable).parent
CHANGE = ("--approver", "on-call", "--reason", "crash drill")


@dataclass(frozen=True)
class World:
    base: Path
    registry: Registry
    public_key: Path

    @property
    def home(self) -> Path:
        return self.base / "dagster_home"


def _environment(base: Path, registry: Registry) -> dict[str, str]:
    return {
        "DAGSTER_HOME": str(base / "dagster_home"),
        "LIFECYCLE_AUDIT_DIR": str(base / "audit"),
        "LIFECYCLE_REGISTRY_URL": str(registry.repo),
        "LIFECYCLE_ARTIFACT_ROOT": str(base / "artifacts"),
    }


@pytest.fixture(scope="module")
def frozen(demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Built once: data-v1 and data-v2 packaged, data-v1 promoted; copied to ``.frozen``."""
    base = tmp_path_factory.mktemp("governance_crashes") / "world"
    registry = copy_registry(demo_registry, base)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in _environment(base, registry).items():
            patch.setenv(name, value)
        patch.delenv("LIFECYCLE_MODEL", raising=False)
        public_key = PackageSigner().key_pair()[1]
        with home_pipeline(registry.resource(), base) as pipeline:
            for key in ("data-v1", "data-v2"):
                assert pipeline.run(key).success
            log = AuditLog.for_model(MODEL)
            governance.promote(
                pipeline.instance, SAMPLE_MODEL, log, "data-v1", "on-call", "first", public_key
            )
    shutil.copytree(base, base.with_suffix(".frozen"), symlinks=True)
    yield World(base, registry, public_key)


@pytest.fixture
def world(frozen: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The frozen world restored at its own paths, with this process pointed at it."""
    shutil.rmtree(frozen.base)
    shutil.copytree(frozen.base.with_suffix(".frozen"), frozen.base, symlinks=True)
    for name, value in _environment(frozen.base, frozen.registry).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LIFECYCLE_MODEL", raising=False)
    return frozen


def start(*args: str, **extra: str) -> subprocess.Popen[str]:
    """A real `lifecycle --model <sample> ARGS` process on the world (this process's env)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("LIFECYCLE_FAILPOINT", "LIFECYCLE_MODEL")
    }
    return subprocess.Popen(
        [str(BIN / "lifecycle"), "--model", MODEL, *args], cwd=PROJECT_ROOT,
        env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *args: str, model: bool = True) -> tuple[int, str, str]:
    """`lifecycle ARGS` in this process: exit status, stdout, stderr."""
    capsys.readouterr()
    code = lifecycle_cli(*(("--model", MODEL) if model else ()), *args)
    out, err = capsys.readouterr()
    return code, out, err


def assert_stores_agree(world: World, serving: str) -> None:
    """The log verifies against the instance and its checkpoints with nothing unfinished; the
    newest change is ``serving``, the instance's newest production_model event is that change,
    and the newest signed checkpoint witnesses the log's head."""
    log = AuditLog.for_model(MODEL)
    with dg.DagsterInstance.from_config(str(world.home)) as instance:
        report = verify_anchored(instance, MODEL, log)
        assert report.ok, report.render()
        assert pending_changes(instance, MODEL, log) == ([], [])
        [newest] = instance.fetch_materializations(
            SAMPLE_MODEL.key("production_model"), limit=1
        ).records
        event = metadata_values(newest)
    change = governance.history(log)[-1]
    record = log.records()[change.seq]
    assert change.version == serving and event["version"] == serving
    assert event["package/sha256"] == change.package_sha256
    assert event["audit/hash"] == record.data.get("intent_hash", record.hash)
    head = max((read_checkpoint(p) for p in found_checkpoints(log)), key=lambda c: c.seq)
    assert (head.seq, head.head) == (report.records - 1, report.head)


@pytest.mark.parametrize("fault", GOVERNANCE_KILLS, ids=[f.name for f in GOVERNANCE_KILLS])
def test_a_change_killed_between_its_writes_is_named_then_completed_or_withdrawn(
    world: World, capsys: pytest.CaptureFixture[str], fault: Fault
) -> None:
    command, point = fault.value
    log = AuditLog.for_model(MODEL)
    if command == "rollback":  # data-v2 serves, so a rollback goes back to data-v1
        with dg.DagsterInstance.from_config(str(world.home)) as instance:
            governance.promote(instance, SAMPLE_MODEL, log, "data-v2", "a", "b", world.public_key)
    before = governance.history(log)[-1].version
    argv = ("promote", "data-v2") if command == "promote" else ("rollback",)
    killed = start(*argv, *CHANGE, LIFECYCLE_FAILPOINT=point)
    _, err = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, err[-3000:]

    code, out, err = run(capsys, "audit", "verify")
    assert code == 1 and fault.shown_in(err), out + err
    assert f"`lifecycle --model {MODEL} audit recover`" in err
    code, out, err = run(capsys, "doctor", model=False)
    assert code == 1 and fault.shown_in(out + err), out + err
    code, out, err = run(capsys, "status")
    assert code == 2 and fault.shown_in(err), out + err  # never "serving" while unfinished
    in_instance = point != "governance.intent_written"
    assert (governance.history(log)[-1].version != before) == (point == "governance.committed")

    if command == "promote":
        code, out, err = run(capsys, "audit", "recover")
        assert code == 0, out + err
    else:  # the retried rollback settles first, then proceeds or finds it already done
        code, out, err = run(capsys, "rollback", "--to", "data-v1", *CHANGE)
        assert code == (0 if not in_instance else 2), out + err
        if in_instance:
            assert "data-v1 is already serving" in err
    change = "promotion of data-v2" if command == "promote" else "rollback of data-v1"
    assert f"{'completed' if in_instance else 'withdrew'} the {change}" in out
    expected = "data-v1" if command == "rollback" or not in_instance else "data-v2"
    assert_stores_agree(world, expected)
    assert run(capsys, "audit", "verify")[0] == 0
    assert run(capsys, "doctor", model=False)[0] == 0
    records = log.records()
    kinds = [r.kind for r in records if r.kind in ("intent", "withdrawal")]
    assert kinds.count("withdrawal") == (0 if in_instance else 1)  # recorded which was done


def test_a_promotion_the_instance_refuses_does_not_take_effect(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    fault = case("instance", "promotion refused by a damaged instance")
    runless = world.home / "history" / "runs" / ".db"
    data = runless.read_bytes()
    runless.write_bytes(data[: len(data) // 2])
    refused = start("promote", "data-v2", *CHANGE)
    out, err = refused.communicate(timeout=600)
    assert refused.returncode == 2 and fault.shown_in(err), out + err
    log = AuditLog.for_model(MODEL)
    assert [c.version for c in governance.history(log)] == ["data-v1"]
    assert [r.kind for r in log.records()][-2:] == ["intent", "withdrawal"]
    assert log.verify().ok
    runless.write_bytes(data)  # the storage repaired: nothing of data-v2 in any store
    assert_stores_agree(world, "data-v1")
    code, out, _ = run(capsys, "status")
    assert code == 0 and "serving   data-v1" in out


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def _waits(pid: int) -> bool:
    """Whether the process sleeps in the kernel waiting for a file lock (``flock``)."""
    try:
        return "lock" in Path(f"/proc/{pid}/wchan").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False


def test_concurrent_promotions_of_one_model_record_the_right_predecessor(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first promotion stops itself while it holds the governance lock (after its intent
    record); the second, started then, must wait, and then see data-v2 already serving."""
    fault = case("concurrency", "two promotions of one model")
    first = start("promote", "data-v2", *CHANGE, LIFECYCLE_PAUSEPOINT="governance.intent_written")
    second = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None and not _stopped(first.pid):
            time.sleep(0.2)
        assert _stopped(first.pid), "the first promotion never reached its pause point"
        second = start("promote", "data-v2", *CHANGE)
        while time.monotonic() < deadline and second.poll() is None and not _waits(second.pid):
            time.sleep(0.2)
        assert _waits(second.pid), second.communicate()  # blocked on the governance lock
        os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=600)
        assert first.returncode == 0, out + err
        out, err = second.communicate(timeout=600)
        assert second.returncode == 2 and fault.shown_in(err), out + err
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    log = AuditLog.for_model(MODEL)
    promotions = [c for c in governance.history(log) if c.version == "data-v2"]
    assert [c.previous for c in promotions] == ["data-v1"]
    assert_stores_agree(world, "data-v2")
    code, _, err = run(capsys, "promote", "data-v2", *CHANGE)
    assert code == 2 and fault.shown_in(err)  # also in this process: refused, clear message
