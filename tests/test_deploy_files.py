"""Deployment files agree with the code: Helm values, container build file, process layout.

No container engine or cluster runs here, so the Helm values are checked against the code
they reference, and the Dockerfile's install steps are replayed on this machine: the files it
copies, the lock it installs, the build information it writes and the command it serves.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from lifecycle_pipeline.declaration import declared_models
from lifecycle_pipeline.definitions import executor_from_env
from lifecycle_pipeline.lineage.environment import BUILD_INFO, code_state, write_build_info
from tests.conftest import PROJECT_ROOT, free_port

DEPLOY = PROJECT_ROOT / "deploy"
# Variables that carry credentials: they may only arrive through Secrets, never as values.
SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|POSTGRES_URL|ACCESS_KEY", re.IGNORECASE)


@functools.cache
def _sources_text() -> str:
    files = [*sorted((PROJECT_ROOT / "lifecycle_pipeline").rglob("*.py"))]
    files += [DEPLOY / "dagster.postgres.yaml"]
    return "\n".join(path.read_text(encoding="utf-8") for path in files)


def _read_by_code(name: str) -> bool:
    """Whether the project (or a tool it configures) reads this environment variable."""
    external = {"DAGSTER_HOME", "DVC_NO_ANALYTICS"}
    sources = _sources_text()
    return name in external or f'"{name}"' in sources or f"env: {name}" in sources


def _values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text(encoding="utf-8"))


def _deployment() -> dict[str, Any]:
    deployments = _values()["dagster-user-deployments"]["deployments"]
    assert len(deployments) == 1
    return deployments[0]


class Dockerfile:
    """The instructions of a single-stage Dockerfile, continuation lines joined."""

    def __init__(self, path: Path) -> None:
        text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))
        self.instructions: list[tuple[str, str]] = []
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                word, _, rest = line.strip().partition(" ")
                self.instructions.append((word.upper(), rest.strip()))

    def all(self, word: str) -> list[str]:
        return [rest for w, rest in self.instructions if w == word]

    def env(self) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for rest in self.all("ENV"):
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                pairs[name] = value
        return pairs

    def command(self) -> list[str]:
        (cmd,) = self.all("CMD")
        parsed: list[str] = json.loads(cmd)
        return parsed


DOCKERFILE = DEPLOY / "Dockerfile"


def test_helm_values_serve_the_real_module_on_the_image_port() -> None:
    deployment = _deployment()
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("--module-name") + 1]
    defs = importlib.import_module(module).defs
    assert isinstance(defs, dg.Definitions)
    # One code location for every declared model, each with its own jobs; none is broken
    # (a model that does not load is a single `<name>/declaration` asset instead).
    models = declared_models()
    assert models
    assert {job.name for job in defs.jobs or ()} >= {
        f"{model}_{job}" for model in models for job in ("lifecycle", "drift")
    }
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert {f"{model}/production_model" for model in models} <= keys
    assert not [key for key in keys if key.endswith("/declaration")]
    docker = Dockerfile(DOCKERFILE)
    command = docker.command()
    assert command[command.index("-m") + 1] == module
    assert deployment["port"] == int(command[command.index("-p") + 1])
    assert docker.all("EXPOSE") == [str(deployment["port"])]


def test_helm_values_name_only_variables_the_code_reads_and_no_secret_values() -> None:
    deployment = _deployment()
    env = {item["name"]: str(item["value"]) for item in deployment["env"]}
    unknown = [name for name in env if not _read_by_code(name)]
    assert not unknown, f"values.yaml sets variables nothing reads: {unknown}"
    leaked = [name for name in env if SECRET_NAMES.search(name)]
    assert not leaked, f"credentials must come from envSecrets, not values: {leaked}"
    # The configured executor and cron are ones the code accepts.
    assert executor_from_env(env).name == env["LIFECYCLE_EXECUTOR"]
    from dagster._utils.schedules import is_valid_cron_string

    assert is_valid_cron_string(env["LIFECYCLE_RETRAIN_CRON"])
    # Keys arrive as a mounted Secret, the audit logs (one per model, in one folder) on a
    # shared volume, at the named paths.
    mounts = {m["name"]: m["mountPath"] for m in deployment["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["volumes"]}
    for name in ("LIFECYCLE_SIGNING_KEY", "LIFECYCLE_SIGNING_PUBLIC_KEY", "LIFECYCLE_AUDIT_KEY"):
        assert env[name].startswith(mounts["signing-key"] + "/"), name
    assert volumes["signing-key"]["secret"]["secretName"]
    from lifecycle_pipeline.lineage.audit import audit_path

    audit_dir = Path(env["LIFECYCLE_AUDIT_DIR"])
    assert audit_dir.is_relative_to(mounts["audit"])
    assert declared_models()
    for model in declared_models():  # every model's log lands on the volume
        assert audit_path(model, env).is_relative_to(mounts["audit"]), model
    # The code location serves every model folder: none is chosen for it.
    assert "LIFECYCLE_MODEL" not in env and "LIFECYCLE_MODELS_DIR" not in env
    assert volumes["audit"]["persistentVolumeClaim"]["claimName"]
    assert deployment["envSecrets"]


def test_helm_values_use_the_k8s_launcher_and_an_external_database() -> None:
    values = _values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    from dagster_k8s import K8sRunLauncher  # installed: the image carries what the chart loads

    assert K8sRunLauncher.__name__ == values["runLauncher"]["type"]
    # Dead run pods are found by run monitoring, which needs the launcher's health check.
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True
    assert "supports_check_run_worker_health" in vars(K8sRunLauncher)
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert "postgresqlPassword" not in values["postgresql"]


def test_team_server_files_name_real_variables_commands_and_ports() -> None:
    names = [
        line.split("=", 1)[0]
        for line in (DEPLOY / "lifecycle.env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert [n for n in names if not _read_by_code(n)] == []
    workspace = yaml.safe_load((DEPLOY / "workspace.grpc.yaml").read_text(encoding="utf-8"))
    server = workspace["load_from"][0]["grpc_server"]
    units = {p.stem: p.read_text(encoding="utf-8") for p in (DEPLOY / "systemd").glob("*.service")}
    assert set(units) == {"lifecycle-code-server", "lifecycle-webserver", "lifecycle-daemon"}
    code_server = units["lifecycle-code-server"]
    assert f"-p {server['port']} -m lifecycle_pipeline.definitions" in code_server
    for unit in ("lifecycle-webserver", "lifecycle-daemon"):
        assert "-w deploy/workspace.grpc.yaml" in units[unit]
    # Servers bind to loopback; exposure is a reverse proxy's decision, not a default.
    assert "-h 127.0.0.1" in units["lifecycle-webserver"] and "-h 127.0.0.1" in code_server


def test_build_info_stands_in_for_git_inside_an_image(tmp_path: Path) -> None:
    shutil.copy(PROJECT_ROOT / "uv.lock", tmp_path / "uv.lock")
    commit = "0123456789abcdef0123456789abcdef01234567"
    write_build_info(tmp_path, commit)
    state = code_state(tmp_path)  # tmp_path is outside any git checkout
    assert (state.commit, state.dirty) == (commit, False)
    (tmp_path / "uv.lock").write_text("edited inside the container\n", encoding="utf-8")
    assert code_state(tmp_path).dirty
    with pytest.raises(ValueError, match="--build-arg GIT_COMMIT"):
        write_build_info(tmp_path, "")
    (tmp_path / BUILD_INFO).unlink()
    assert code_state(tmp_path).commit == "unknown" and code_state(tmp_path).dirty


def _uv() -> str:
    """uv, or a skip with the reason; in CI (``CI=true``) a missing uv fails instead."""
    local = PROJECT_ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if found is None:
        reason = "uv is not installed; run `make install` first"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the Dockerfile replay cannot run in CI: {reason}")
        pytest.skip(reason)
    return found


def _uv_outcome() -> tuple[str, str]:
    """What ``_uv()`` did: ("found", path), ("failed", reason) or ("skipped", reason)."""
    try:
        return "found", _uv()
    except pytest.fail.Exception as failed:
        return "failed", str(failed)
    except pytest.skip.Exception as skipped:
        return "skipped", str(skipped)


def test_a_missing_uv_skips_locally_and_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "PROJECT_ROOT", tmp_path)  # no .tools/bin/uv
    monkeypatch.setenv("PATH", str(tmp_path))  # and none on PATH
    missing = "uv is not installed; run `make install` first"
    monkeypatch.setenv("CI", "true")
    assert _uv_outcome() == ("failed", f"the Dockerfile replay cannot run in CI: {missing}")
    monkeypatch.delenv("CI")
    assert _uv_outcome() == ("skipped", missing)


@pytest.mark.slow
def test_dockerfile_install_steps_build_a_working_code_location(tmp_path: Path) -> None:
    """Replays the Dockerfile: its COPY set, lock install, build info and CMD, in a folder."""
    docker = Dockerfile(DOCKERFILE)
    (workdir,) = docker.all("WORKDIR")
    root = tmp_path / "image"
    app = root / workdir.lstrip("/")
    for instruction in docker.all("COPY"):
        *sources, target = instruction.split()
        destination = root / target.lstrip("/") if target.startswith("/") else app / target
        for source in sources:
            origin = PROJECT_ROOT / source
            assert origin.exists(), f"Dockerfile copies {source}, which is not in the repository"
            if origin.is_dir():
                shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                into = destination / origin.name if target.endswith("/") else destination
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, into)
    installs = [r for r in docker.all("RUN") if "uv sync --frozen --no-dev" in r]
    assert len(installs) == 2, "dependencies from the lock, then the project"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "LIFECYCLE_"))}
    env |= {"UV_PYTHON_DOWNLOADS": "never", "DAGSTER_HOME": str(tmp_path / "home")}
    env |= {"LIFECYCLE_PROJECT_ROOT": str(app), "LIFECYCLE_HOME": str(tmp_path / "state")}
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", "utf-8")
    subprocess.run([_uv(), "sync", "--frozen", "--no-dev"], cwd=app, env=env, check=True)
    bin_dir = app / ".venv" / "bin"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run([bin_dir / "lifecycle", "build-info", "--commit", head], env=env, check=True)
    state = subprocess.run(
        [bin_dir / "python", "-c", "from lifecycle_pipeline.lineage.environment import "
         "code_state; from lifecycle_pipeline.settings import Settings; "
         "print(code_state(Settings.from_env().project_root).to_dict())"],
        cwd=app, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"'commit': '{head}'" in state
    # The image's code location loads every model folder it copied, none of them broken.
    served = subprocess.run(
        [bin_dir / "python", "-c", "from lifecycle_pipeline.definitions import defs; "
         "print(sorted(j.name for j in defs.jobs)); "
         "print(sorted(k.to_user_string() for k in defs.resolve_all_asset_keys()))"],
        cwd=app, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    jobs, keys = served.splitlines()[-2:]
    for model in declared_models(PROJECT_ROOT / "models"):
        assert f"'{model}_lifecycle'" in jobs and f"'{model}/production_model'" in keys, served
    assert "/declaration'" not in keys, served
    assert "pytest" not in {p.name.split("-")[0] for p in (app / ".venv").glob("lib/*/site-*/*")}

    port = free_port()
    command = docker.command()
    command[command.index("-p") + 1] = str(port)
    command[command.index("-h") + 1] = "127.0.0.1"
    server = subprocess.Popen([str(bin_dir / command[0]), *command[1:]], cwd=app, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            health = subprocess.run(
                [bin_dir / "dagster", "api", "grpc-health-check", "-p", str(port)],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if health.returncode == 0:
                break
            assert server.poll() is None, "the code server exited"
            assert time.monotonic() < deadline, health.stdout + health.stderr
            time.sleep(1)
        from dagster._grpc.client import DagsterGrpcClient

        listed = DagsterGrpcClient(port=port, host="127.0.0.1").list_repositories()
        assert "lifecycle_pipeline.definitions" in repr(listed)
    finally:  # stopping on SIGTERM is test_exposure's to prove; here only clean up
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:  # seen once on a loaded 2-core machine
            server.kill()
            server.wait(timeout=30)


def test_image_python_satisfies_the_project() -> None:
    (base,) = Dockerfile(DOCKERFILE).all("FROM")
    major_minor = re.match(r"python:(\d+)\.(\d+)", base)
    assert major_minor is not None, base
    project = (PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    floor = re.search(r'requires-python = ">=(\d+)\.(\d+)', project)
    assert floor is not None
    image = tuple(int(g) for g in major_minor.groups())
    assert image >= tuple(int(g) for g in floor.groups())
    assert image == sys.version_info[:2], "the image should run the Python the tests run"
