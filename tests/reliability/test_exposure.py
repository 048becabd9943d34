"""Nothing listens beyond this host by default, and the dev keys stay private and out of git.

The servers are started exactly as `make ui` and the systemd units start them (their command
lines are read from the Makefile and the unit files; only the port is a free one). The
container image is the one exception by design: inside a pod the code server must listen on
the pod's address (deploy/Dockerfile), and the chart keeps it a cluster-internal service.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from lifecycle_pipeline.lineage.audit import audit_key
from lifecycle_pipeline.resources.signing import ensure_dev_key
from tests.conftest import PROJECT_ROOT, free_port
from tests.reliability.cases import Fault, case

BIN = Path(sys.executable).parent
UNITS = PROJECT_ROOT / "deploy" / "systemd"
STARTUP = 240.0  # seconds for every server of a tree to come up (the code server imports all)
SHUTDOWN = 60.0  # seconds for an orderly stop before what is left is killed

# Dagster stops on SIGINT and maps SIGTERM to the same handler; a child inherits an ignored
# SIGINT (as in any background job), so each server starts with SIGINT at its default.
_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _make_ui_command() -> list[str]:
    """The `dagster dev` line `make ui` runs, with this checkout's binary and a free port."""
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    [ui] = re.findall(r"^ui:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    [line] = re.findall(r"^\t\$\(RUN\) (dagster dev .+)$", ui, flags=re.M)
    command = shlex.split(line)
    command[0] = str(BIN / command[0])
    command[command.index("-p") + 1] = str(free_port())
    return command


def _unit_command(unit: str) -> list[str]:
    """The unit's ExecStart with this checkout's binaries and a free port."""
    text = (UNITS / unit).read_text(encoding="utf-8")
    [line] = re.findall(r"^ExecStart=(.+)$", text, flags=re.M)
    command = shlex.split(line)
    command[0] = str(BIN / Path(command[0]).name)
    command[command.index("-p") + 1] = str(free_port())
    return command


WEBSERVER = case("exposure", "webserver binds to loopback")
CODE_SERVER = case("exposure", "code server binds to loopback")

# (row, how it is started, whether a webserver and code servers must come up in its tree)
SERVERS = [
    (WEBSERVER, "make ui", True, True),
    (WEBSERVER, "lifecycle-webserver.service", True, False),
    (CODE_SERVER, "lifecycle-code-server.service", False, True),
]


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _option(command: list[str], *names: str) -> str | None:
    for name in names:
        if name in command[:-1]:
            return command[command.index(name) + 1]
    return None


def _accepts(address: str | tuple[str, int]) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as probe:
        probe.settimeout(2)
        return probe.connect_ex(address) == 0


def _code_servers(tree: list[psutil.Process]) -> dict[str, list[str | tuple[str, int]]]:
    """Each code server in the tree (a proxy and the gRPC servers it runs) -> its address."""
    found: dict[str, list[str | tuple[str, int]]] = {"proxy": [], "grpc": []}
    for process in tree:
        command = _cmdline(process)
        joined = " ".join(command)
        role = "proxy" if "code-server start" in joined else "grpc" if "api grpc" in joined else ""
        if not role:
            continue
        path, port = _option(command, "--socket"), _option(command, "--port", "-p")
        found[role].append(path if path else ("127.0.0.1", int(port or 0)))
    return found


def _answers_http(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _all_up(root: psutil.Process, port: int, webserver: bool, code_servers: bool) -> bool:
    if webserver and not _answers_http(port):
        return False
    if code_servers:
        found = _code_servers(_tree(root))
        addresses = found["proxy"] + found["grpc"]
        if not (found["proxy"] and found["grpc"] and all(_accepts(a) for a in addresses)):
            return False
    return True


def _listening(tree: list[psutil.Process]) -> set[tuple[str, int]]:
    """Every listening internet socket (address, port) of the processes in ``tree``."""
    sockets: set[tuple[str, int]] = set()
    for process in tree:
        try:
            connections = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        sockets |= {
            (c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN
        }
    return sockets


def _loopback(address: str) -> bool:
    """127.0.0.1, ::1, or 127.0.0.1 mapped into IPv6 (how gRPC reports its socket)."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def _stop(server: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """SIGTERM the root (it stops its own children), then kill whatever is left; return the
    processes that had to be killed."""
    tree = _tree(psutil.Process(server.pid)) if server.poll() is None else []
    server.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=SHUTDOWN)
    _, alive = psutil.wait_procs(tree, timeout=SHUTDOWN / 2)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=SHUTDOWN / 2)
    server.wait(timeout=SHUTDOWN / 2)
    return alive


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "source", "webserver", "code_servers"), SERVERS, ids=[s[1] for s in SERVERS]
)
def test_servers_listen_on_loopback_only(
    fault: Fault, source: str, webserver: bool, code_servers: bool, tmp_path: Path
) -> None:
    """Once every server of the tree is up, no socket of the tree listens beyond loopback."""
    command = _make_ui_command() if source == "make ui" else _unit_command(source)
    port = int(command[command.index("-p") + 1])
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env = {**os.environ, "DAGSTER_HOME": str(home), "LIFECYCLE_HOME": str(tmp_path / "state")}
    env["DVC_NO_ANALYTICS"] = "1"  # as the Makefile exports it
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-c", _DEFAULT_SIGINT, *command],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        root = psutil.Process(server.pid)
        deadline = time.monotonic() + STARTUP
        while not _all_up(root, port, webserver, code_servers):
            assert server.poll() is None, f"{source} exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{source} not up:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        sockets = _listening(_tree(root))
    finally:
        killed = _stop(server)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert fault.shown_in(text), text[-3000:]
    assert all(_loopback(ip) for ip, _ in sockets), sorted(sockets)
    assert port in {p for _, p in sockets}, sorted(sockets)
    assert killed == [], f"{source}: {killed} did not stop on SIGTERM"


def test_dev_keys_are_private_and_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fault = case("exposure", "dev keys private and ignored")
    home = PROJECT_ROOT / ".lifecycle"
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path))
    monkeypatch.delenv("LIFECYCLE_AUDIT_KEY", raising=False)
    private, _ = ensure_dev_key()
    audit_key()
    made = [private, tmp_path / "keys" / "audit.key"]
    for key in made:
        listed = stat.filemode(key.stat().st_mode)  # the mode as `ls -l` shows it
        assert fault.shown_in(listed), f"{key}: {listed}"
        assert stat.filemode(key.parent.stat().st_mode) == "drwx------", key.parent
        relative = home / key.relative_to(tmp_path)
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(relative.relative_to(PROJECT_ROOT))],
            cwd=PROJECT_ROOT,
            check=False,
        )
        assert ignored.returncode == 0, f"{relative} is not ignored by git"
