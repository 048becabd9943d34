"""Nothing listens beyond this host by default, and the dev keys stay private and out of git.

The container image is the one exception by design: inside a pod the code server must listen
on the pod's address (deploy/Dockerfile), and the chart keeps it a cluster-internal service.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lifecycle_pipeline.lineage.audit import audit_key
from lifecycle_pipeline.resources.signing import ensure_dev_key
from tests.conftest import PROJECT_ROOT, free_port

BIN = Path(sys.executable).parent
UNITS = PROJECT_ROOT / "deploy" / "systemd"


def _unit_command(unit: str) -> list[str]:
    """The unit's ExecStart with this checkout's binaries and a free port."""
    text = (UNITS / unit).read_text(encoding="utf-8")
    [line] = re.findall(r"^ExecStart=(.+)$", text, flags=re.M)
    command = shlex.split(line)
    command[0] = str(BIN / Path(command[0]).name)
    command[command.index("-p") + 1] = str(free_port())
    return command


def _listening(process: psutil.Process) -> set[str]:
    addresses = set()
    for proc in [process, *process.children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        addresses |= {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
    return addresses


def _loopback(address: str) -> bool:
    """127.0.0.1, ::1, or 127.0.0.1 mapped into IPv6 (how gRPC reports its socket)."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


@pytest.mark.slow
@pytest.mark.parametrize("unit", ["lifecycle-webserver.service", "lifecycle-code-server.service"])
def test_servers_listen_on_loopback_only(unit: str, tmp_path: Path) -> None:
    command = _unit_command(unit)
    assert command[command.index("-h") + 1] == "127.0.0.1"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    server = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline, addresses = time.monotonic() + 120, set[str]()
        while time.monotonic() < deadline and not addresses:
            assert server.poll() is None, f"{unit} exited with {server.returncode}"
            addresses = _listening(psutil.Process(server.pid))
            time.sleep(0.5)
        assert addresses and all(_loopback(a) for a in addresses), addresses
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_make_ui_binds_to_loopback() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    [ui] = re.findall(r"^\t\$\(RUN\) dagster dev (.+)$", makefile, flags=re.M)
    assert "-h 127.0.0.1" in ui


def test_dev_keys_are_private_and_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = PROJECT_ROOT / ".lifecycle"
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path))
    monkeypatch.delenv("LIFECYCLE_AUDIT_KEY", raising=False)
    private, _ = ensure_dev_key()
    audit_key()
    made = [private, tmp_path / "keys" / "audit.key"]
    for key in made:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert stat.S_IMODE(key.parent.stat().st_mode) & 0o077 == 0, key.parent
        relative = home / key.relative_to(tmp_path)
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(relative.relative_to(PROJECT_ROOT))],
            cwd=PROJECT_ROOT,
            check=False,
        )
        assert ignored.returncode == 0, f"{relative} is not ignored by git"
