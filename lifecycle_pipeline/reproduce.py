"""Reproduce a recorded model version, and replay one past decision with its exact package.

A reproduction re-materializes the version's partition (data snapshot through evaluation) in a
scratch instance and artifact root, with the recorded run config, and compares every element
of the lineage tuple with the record. When today's commit or lock differs from the recorded
ones, it runs the recorded commit instead, in a git worktree with an environment built from
that commit's own lock: a past model is judged by its own code, never by today's.

The scratch run is driven through Dagster's CLI and read back by a short script run with the
target environment's interpreter, so the worktree's code never has to know this module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.lineage.environment import UNKNOWN, code_state
from lifecycle_pipeline.lineage.hashing import sha256_bytes
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.lineage.trace import Materialization
from lifecycle_pipeline.partitions import validate_partition_key
from lifecycle_pipeline.settings import Settings

STAGES = ("data_snapshot", "features", "trained_model", "evaluation")
SYNC_MARKER = ".lifecycle-synced-lock"

# Run with the target environment's python inside the scratch DAGSTER_HOME.
_ADD_PARTITION = """
import sys, dagster as dg
with dg.DagsterInstance.get() as instance:
    instance.add_dynamic_partitions(sys.argv[2], [sys.argv[1]])
"""
_READ_BACK = """
import json, sys, dagster as dg
key, model = sys.argv[1], sys.argv[2]
with dg.DagsterInstance.get() as instance:
    def newest(asset):
        found = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey([model, asset]), asset_partitions=[key]),
            limit=1,
        ).records
        if not found:
            return None
        meta = found[0].asset_materialization.metadata
        return {k: v.value for k, v in meta.items() if k in ("lineage", "dvc/md5")
                or k.startswith("metric/")}
    print(json.dumps({a: newest(a) for a in ("trained_model", "data_snapshot", "evaluation")}))
"""


class ReproduceError(LifecycleError, RuntimeError):
    """The version cannot be reproduced from its record; the message says what is missing."""


@dataclass(frozen=True)
class Element:
    name: str
    recorded: Any
    reproduced: Any

    @property
    def known(self) -> bool:
        """False when either side was not identified (e.g. no uv.lock): never "same" then."""
        return UNKNOWN not in (self.recorded, self.reproduced)

    @property
    def same(self) -> bool:
        return self.known and bool(self.recorded == self.reproduced)


@dataclass
class ReproductionReport:
    version: str
    run_id: str
    method: str  # "current" or "worktree"
    commit: str
    workdir: str
    elements: list[Element]
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(tz=UTC).isoformat())
    model: str = ""

    @property
    def identical(self) -> bool:
        return all(e.same for e in self.elements)

    @property
    def differences(self) -> list[str]:
        return [e.name for e in self.elements if e.known and not e.same]

    @property
    def unknown(self) -> list[str]:
        return [e.name for e in self.elements if not e.known]

    @property
    def verdict(self) -> str:
        if self.differences:
            return "different: " + ", ".join(self.differences)
        if self.unknown:
            return "unknown: not identified: " + ", ".join(self.unknown)
        return "identical"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["elements"] = [
            {**asdict(e), "same": e.same if e.known else None} for e in self.elements
        ]
        data["verdict"] = self.verdict
        data["identical"] = self.identical
        return data

    def render(self) -> str:
        """Digests shortened to 20 characters for a terminal; the JSON report has them whole."""
        from lifecycle_pipeline.lineage.query import render_table

        def short(value: Any) -> str:
            text = str(value)
            return text[:20] + "…" if len(text) > 21 else text

        rows: list[tuple[str, ...]] = [
            (
                e.name,
                short(e.recorded),
                short(e.reproduced),
                "yes" if e.same else "NO" if e.known else "unknown",
            )
            for e in self.elements
        ]
        where = (
            f"in worktree {self.workdir} (its own uv.lock)"
            if self.method == "worktree"
            else "with the current checkout"
        )
        header = f"reproduction of {self.model} {self.version} (run {self.run_id})"
        header += f" at commit {self.commit[:12]}, {where}"
        table = render_table(("element", "recorded", "reproduced", "same"), rows)
        return f"{header}\n{table}\nverdict: {self.verdict}"


def _tuple(lineage: dict[str, Any]) -> dict[str, Any]:
    """The lineage tuple, flattened: what a reproduction must match element by element."""
    code, prints = lineage["code"], lineage["fingerprint"]
    declaration = (
        {"declaration.sha256": lineage["declaration"]["sha256"]} if "declaration" in lineage else {}
    )  # recorded since models are declared
    return {
        "data_md5": lineage["data_md5"],
        **declaration,
        "code.commit": code["commit"],
        "code.dirty": code["dirty"],
        "code.lock_hash": code["lock_hash"],
        "code.source_digest": code["source_digest"],
        "config_hash": lineage["config_hash"],
        "fingerprint.state": prints["state"],
        "fingerprint.predictions": prints["predictions"],
        "fingerprint.combined": prints["combined"],
    }


@dataclass(frozen=True)
class RecordedVersion:
    version: str
    run_id: str
    lineage: dict[str, Any]
    run_config: dict[str, Any]


def recorded_version(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration,
    version: str,
    run_id: str | None = None,
) -> RecordedVersion:
    """The trained model of ``version`` (its newest, or the one made in ``run_id``)."""
    validate_partition_key(version)
    if run_id:
        from lifecycle_pipeline.lineage.trace import LineageError, in_run

        try:
            found = in_run(instance, model.key("trained_model"), version, run_id, None)
        except LineageError as exc:
            raise ReproduceError(str(exc)) from None
    else:
        record = latest(instance, model.key("trained_model"), version)
        if record is None:
            raise ReproduceError(
                f"{version!r} has no {model.name} trained_model in this instance (DAGSTER_HOME="
                f"{os.environ.get('DAGSTER_HOME', '?')}); nothing recorded to reproduce."
            )
        found = Materialization.from_record(record)
    run = instance.get_run_by_id(found.run_id)
    config: dict[str, Any] = dict(run.run_config) if run else {}
    ops_of_stages = {model.op(stage) for stage in STAGES}
    ops = {k: v for k, v in dict(config.get("ops") or {}).items() if k in ops_of_stages}
    lineage = found.metadata.get("lineage")
    if not isinstance(lineage, dict):
        raise ReproduceError(f"{version} run {found.run_id}: the record holds no lineage tuple.")
    return RecordedVersion(version, found.run_id, lineage, {"ops": ops} if ops else {})


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
    )


def _uv(root: Path) -> str:
    for candidate in (os.environ.get("LIFECYCLE_UV"), str(root / ".tools" / "bin" / "uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("uv")
    if found is None:
        raise ReproduceError(
            "uv is needed to build the recorded commit's environment from its lock; run "
            "`make install` (it bootstraps uv into .tools/) or set LIFECYCLE_UV."
        )
    return found


def prepare_worktree(root: Path, commit: str, cache: Path) -> tuple[Path, float]:
    """A worktree at ``commit`` with ``.venv`` synced from that commit's lock (cached)."""
    path = cache / commit[:16]
    started = time.perf_counter()
    if not (path / ".git").exists():
        if path.exists():
            shutil.rmtree(path)  # a worktree whose creation was interrupted
        path.parent.mkdir(parents=True, exist_ok=True)
        _git(root, "worktree", "prune")
        added = _git(root, "worktree", "add", "--detach", str(path), commit)
        if added.returncode != 0:
            raise ReproduceError(f"cannot check out {commit} into {path}: {added.stderr.strip()}")
    lock = (path / "uv.lock").read_bytes() if (path / "uv.lock").exists() else b""
    marker = path / ".venv" / SYNC_MARKER
    lock_id = sha256_bytes(lock)
    if not (marker.exists() and marker.read_text() == lock_id):
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        env["UV_PYTHON_DOWNLOADS"] = "never"
        synced = subprocess.run(
            [_uv(root), "sync", "--frozen", "--no-dev"],
            cwd=path, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if synced.returncode != 0:
            raise ReproduceError(
                f"building commit {commit[:12]}'s environment from its uv.lock failed:\n"
                f"{synced.stderr.strip()[-2000:]}"
            )
        marker.write_text(lock_id)
    return path, time.perf_counter() - started


def _materialize(
    workdir: Path,
    python: Path,
    model: LoadedDeclaration,
    version: str,
    run_config: dict[str, Any],
    scratch: Path,
) -> dict[str, Any]:
    settings = Settings.from_env()
    home = scratch / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {
        "DAGSTER_HOME": str(home),
        "LIFECYCLE_ARTIFACT_ROOT": str(scratch / "artifacts"),
        "LIFECYCLE_REGISTRY_URL": settings.registry_url,
        "LIFECYCLE_PROJECT_ROOT": str(workdir),
        "LIFECYCLE_EXECUTOR": "in_process",
        "PYTHONPATH": str(workdir),
        "DVC_NO_ANALYTICS": "1",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(python), *args], cwd=workdir, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-3000:]
            raise ReproduceError(f"the reproduction run failed ({' '.join(args[:3])}):\n{tail}")
        return done.stdout

    selection = " or ".join(f"key:{model.asset(stage)}" for stage in STAGES)
    run("-c", _ADD_PARTITION, version, model.scoped("data_versions"))
    run(
        "-m", "dagster", "asset", "materialize", "-m", "lifecycle_pipeline.definitions",
        "--select", selection, "--partition", version, "--config-json", json.dumps(run_config),
    )  # fmt: skip
    read = run("-c", _READ_BACK, version, model.name)
    result: dict[str, Any] = json.loads(read.strip().splitlines()[-1])
    return result


def reproduce(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration,
    version: str,
    run_id: str | None = None,
) -> ReproductionReport:
    recorded = recorded_version(instance, model, version, run_id)
    code = recorded.lineage["code"]
    commit = str(code["commit"])
    if commit == UNKNOWN:
        raise ReproduceError(
            f"{version} run {recorded.run_id} was trained outside a git checkout (commit "
            "unknown): no commit holds its code, so it cannot be reproduced."
        )
    if code["dirty"]:
        raise ReproduceError(
            f"{version} run {recorded.run_id} was trained from uncommitted changes on "
            f"{commit[:12]} (source digest {str(code['source_digest'])[:16]}): the exact code "
            "is in no commit, so it cannot be reproduced. Missing: a commit of those changes; "
            "train from a clean tree to make versions reproducible."
        )
    settings = Settings.from_env()
    root = settings.project_root
    if _git(root, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise ReproduceError(
            f"commit {commit} that trained {version} is not reachable in {root}: fetch it "
            f"(`git fetch origin {commit}`) or restore the branch or tag that held it."
        )
    today = code_state(root)
    same = today.commit == commit and not today.dirty and today.lock_hash == code["lock_hash"]
    seconds: dict[str, float] = {}
    if same:
        method, workdir, python = "current", root, Path(sys.executable)
    else:
        method = "worktree"
        workdir, seconds["environment"] = prepare_worktree(
            root, commit, settings.home / "reproduce" / "worktrees"
        )
        python = workdir / ".venv" / "bin" / "python"
    scratch_parent = settings.home / "reproduce"
    scratch_parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scratch-", dir=scratch_parent) as scratch:
        found = _materialize(workdir, python, model, version, recorded.run_config, Path(scratch))
    seconds["materialize"] = time.perf_counter() - started
    trained = found.get("trained_model")
    if not trained or "lineage" not in trained:
        raise ReproduceError(f"the reproduction of {version} recorded no trained_model lineage.")
    before, after = _tuple(recorded.lineage), _tuple(trained["lineage"])
    elements = [Element(name, before[name], after.get(name)) for name in before]
    metrics = {k: v for k, v in (found.get("evaluation") or {}).items() if k.startswith("metric/")}
    return ReproductionReport(
        model=model.name,
        version=version,
        run_id=recorded.run_id,
        method=method,
        commit=commit,
        workdir=str(workdir),
        elements=elements,
        seconds={k: round(v, 2) for k, v in seconds.items()},
        metrics=metrics,
    )


def save_report(report: ReproductionReport, folder: Path | None = None) -> Path:
    """Write the report as JSON (atomically) under LIFECYCLE_HOME/reproductions/."""
    folder = folder or Settings.from_env().home / "reproductions"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"{report.model}-{report.version}-{report.run_id[:8]}-{stamp}.json"
    partial = target.with_suffix(".json.partial")
    partial.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    partial.rename(target)
    return target


def record_reproduction(
    report: ReproductionReport, log: Any, output: Path | None = None
) -> Path:
    """Save the report (to ``output`` or the default folder) and append its audit record: what
    the CLI and the reproduce job both leave behind, so either is the same evidence."""
    path = save_report(report, output.parent if output else None)
    if output:
        path = path.rename(output)
    log.append("reproduction", {**report.to_dict(), "report": str(path)}, version=report.version)
    return path


def package_record(
    instance: dg.DagsterInstance, model: LoadedDeclaration, version: str
) -> dict[str, Any]:
    """The newest deployment_package of ``version``: its metadata, or a named error."""
    validate_partition_key(version)
    record = latest(instance, model.key("deployment_package"), version)
    if record is None:
        raise ReproduceError(f"{version!r} has no deployment_package in this instance.")
    return {"run_id": record.run_id, **metadata_values(record)}
