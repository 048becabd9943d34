"""The dependency audit gate: an unreachable advisory service is reported, anything else fails.

Both cases are real processes: a proxy on a closed loopback port makes the service unreachable
(no traffic leaves the machine), and an interpreter without pip-audit is a new virtualenv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

from tests.conftest import PROJECT_ROOT, free_port

SCRIPT = PROJECT_ROOT / ".ci" / "audit_deps.py"


def audit(python: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, str(SCRIPT)], cwd=PROJECT_ROOT, env={**os.environ, **env}, capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip


def test_an_unreachable_advisory_service_is_reported_not_failed() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    done = audit(sys.executable, HTTPS_PROXY=closed, HTTP_PROXY=closed, NO_PROXY="")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pip-audit: NOT AUDITED, the vulnerability service is unreachable" in done.stdout


def test_pip_audit_that_cannot_run_fails_the_gate(tmp_path: Path) -> None:
    venv.create(tmp_path / "bare", with_pip=False)  # an interpreter without pip-audit
    done = audit(str(tmp_path / "bare" / "bin" / "python"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pip-audit: FAILED to run" in done.stderr
    assert "No module named pip_audit" in done.stderr
