"""`lifecycle` tells scripts what happened: 0 ok, 1 negative verdict, 2 refused, 3 defect.

Each code is produced here by a real `lifecycle` process, the way a cron job or CI step
would meet it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

BIN = Path(sys.executable).parent

# The table of the README's "Exit status of `lifecycle`", as literals (not the code's enum).
README_EXIT_CODES = {
    0: "done",
    1: "a negative verdict",
    2: "refused",
    3: "internal error",
}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    return {
        **{k: v for k, v in os.environ.items() if k != "LIFECYCLE_MODEL"},  # no model chosen
        "DAGSTER_HOME": str(home),
        "LIFECYCLE_HOME": str(tmp_path / "lifecycle_home"),
        "LIFECYCLE_AUDIT_DIR": str(tmp_path / "audit"),
    }


def lifecycle(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lifecycle"), *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip


def test_help_documents_every_exit_code(env: dict[str, str]) -> None:
    done = lifecycle(env, "--help")
    assert done.returncode == 0
    for code, meaning in README_EXIT_CODES.items():
        assert f"\n  {code}  {meaning}" in done.stdout, f"exit status {code} is not documented"


def test_the_code_promises_the_readmes_numbers() -> None:
    """The numbers are the README's promise to scripts, written here as literals: a change to
    the code's own table (two values swapped) fails this test instead of moving with it."""
    from lifecycle_pipeline.errors import ExitCode

    assert {code.value: code.name for code in ExitCode} == {
        0: "OK",
        1: "NEGATIVE",
        2: "REFUSED",
        3: "INTERNAL",
    }


def test_0_when_the_audit_log_verifies(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lifecycle_pipeline.lineage.audit import AuditLog

    monkeypatch.setenv("LIFECYCLE_HOME", env["LIFECYCLE_HOME"])  # where the audit key lives
    log = Path(env["LIFECYCLE_AUDIT_DIR"]) / "breast_cancer.jsonl"
    AuditLog(log, "breast_cancer").append(
        "promotion", {"approver": "a", "reason": "r"}, version="v1"
    )
    done = lifecycle(env, "audit", "verify")  # every declared model's log
    assert done.returncode == 0, done.stderr
    assert f"breast_cancer: {log}: 1 record(s) verify" in done.stdout
    assert "diabetes: " in done.stdout


def test_1_for_a_negative_verdict(env: dict[str, str]) -> None:
    """Nothing served at a time is an answer, not an error: exit 1, no traceback."""
    done = lifecycle(env, "history", "--at", "2001-01-01T00:00:00+00:00")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nothing was serving at 2001-01-01T00:00:00+00:00" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--model", "breast_cancer", "reproduce", "../x"],
            "PartitionKeyError: Invalid partition key '../x'",
        ),
        (
            ["--model", "breast_cancer", "verify", "data-v404"],
            "'data-v404' is neither a package path nor a data version",
        ),
        (["runs", "recover"], "name the run ids to recover, or pass --all"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
        (
            ["reproduce", "data-v1"],
            "Which model? Pass --model NAME (or set LIFECYCLE_MODEL); declared: breast_cancer, "
            "diabetes",
        ),
        (["--model", "no_such_model", "status"], "No model 'no_such_model'"),
    ],
    ids=[
        "bad identifier",
        "unknown version",
        "incomplete request",
        "unknown command",
        "model not named",
        "unknown model",
    ],
)
def test_2_for_rejected_input_with_the_problem_named(
    env: dict[str, str], args: list[str], expected: str
) -> None:
    done = lifecycle(env, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr  # a refusal is one readable line, not a stack


def test_a_missing_input_file_is_an_input_error(tmp_path: Path) -> None:
    """`predict` and `replay` read rows with the package's own reader: a named refusal."""
    from lifecycle_pipeline.package.runtime import InputError, read_table

    for name in ("absent.csv", "absent.parquet"):
        with pytest.raises(InputError, match=r"cannot be read|not a readable Parquet file"):
            read_table(tmp_path / name)


def test_3_for_a_defect_or_unexpected_failure_with_the_traceback(env: dict[str, str]) -> None:
    """A storage plugin that is not installed is nobody's input: exit 3 with the traceback."""
    (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text(
        "run_storage:\n  module: no_such_storage_plugin\n  class: RunStorage\n"
    )
    done = lifecycle(env, "summary")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert "internal error (" in done.stderr and "please report it" in done.stderr


def test_2_for_a_damaged_instance_file_naming_it(env: dict[str, str]) -> None:
    """A damaged instance database is named, with the commands that diagnose and rebuild it
    (tests/test_doctor.py damages a real instance)."""
    history = Path(env["DAGSTER_HOME"]) / "history"
    history.mkdir()
    (history / "runs.db").write_bytes(b"this is not an SQLite database" * 100)
    done = lifecycle(env, "summary")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{history / 'runs.db'} (run storage): file is not a database" in done.stderr
    assert "lifecycle instance rebuild" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ("../../../escaped", "Invalid run id '../../../escaped': a run id is a UUID"),
        ("not-a-run", "Invalid run id 'not-a-run'"),
        ("0f8e4b7a-52c1-4bd2-9d0e-2b5a1c3d4e5f", "No run 0f8e4b7a-52c1-4bd2-9d0e-2b5a1c3d4e5f"),
    ],
    ids=["path traversal", "malformed", "unknown"],
)
def test_a_run_id_is_validated_before_it_touches_storage(
    env: dict[str, str], tmp_path: Path, run: str, expected: str
) -> None:
    """SQLite keeps a database file per run id: an unchecked id used to create one, anywhere."""
    before = set(tmp_path.rglob("*")) | set(tmp_path.parent.glob("*"))
    for args in (["--model", "breast_cancer", "reproduce", "data-v1", "--run", run],
                 ["resume", run], ["runs", "recover", run]):  # fmt: skip
        done = lifecycle(env, *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert expected in done.stderr, done.stderr
    created = (set(tmp_path.rglob("*")) | set(tmp_path.parent.glob("*"))) - before
    instance_files = {"runs.db", "index.db", "schedules.db"}  # opening the instance makes these
    assert [p for p in created if p.suffix == ".db" and p.name not in instance_files] == []
    assert all(p.is_relative_to(tmp_path) for p in created), created
