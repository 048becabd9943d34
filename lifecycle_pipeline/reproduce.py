"""Reproduce a recorded model version: is it exactly the model that shipped?

A reproduction re-materializes the version's partition (data snapshot through evaluation) in a
scratch instance and artifact root, with the recorded run config, and compares every element
of the lineage tuple with the record. When today's commit or lock differs from the recorded
ones, it runs the recorded commit instead, in a git worktree with an environment built from
that commit's own lock: a past model is judged by its own code, never by today's. Its data is
judged the same way: the run reads the registry commit the version was recorded at, so a tag
moved since then changes nothing, and the report says that it moved.

At the current commit the scratch run executes in this process (an ephemeral instance, a
scratch artifact root): the code is the recorded one, and a second interpreter would only pay
its start-up again. In a worktree it is driven through Dagster's CLI and read back by a short
script run with that environment's interpreter, so the worktree's code never has to know this
module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.events import DagsterEventType

from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.lineage.environment import UNKNOWN, code_state, model_files
from lifecycle_pipeline.lineage.hashing import sha256_bytes
from lifecycle_pipeline.lineage.query import history as materializations
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.lineage.trace import Materialization
from lifecycle_pipeline.partitions import validate_partition_key
from lifecycle_pipeline.resources.registry import PINS_VARIABLE, DataRegistry, RegistryError
from lifecycle_pipeline.settings import Settings

STAGES = ("data_snapshot", "features", "trained_model", "evaluation")
SYNC_MARKER = ".lifecycle-synced-lock"
# 'own' makes every worktree reproduction build the commit's own environment from its lock,
# even when the running one holds exactly that lock (the default, 'auto', then uses it).
ENVIRONMENT_VARIABLE = "LIFECYCLE_REPRODUCE_ENVIRONMENT"
LAST_USED = ".lifecycle-last-used"  # in the worktree's git-ignored .venv: the tree stays clean

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
        return {k: v.value for k, v in meta.items() if k in ("lineage", "dvc/md5", "git/commit")
                or k.startswith("metric/")}
    print(json.dumps({a: newest(a) for a in ("trained_model", "data_snapshot", "evaluation")}))
"""
_MODULE = "import lifecycle_pipeline; print(lifecycle_pipeline.__file__)"


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


@dataclass(frozen=True)
class DataRead:
    """Which registry commit the reproduction read the version's data at, and where its tag
    points now: a moved tag must neither change the verdict nor pass unsaid."""

    tag: str
    registry: str
    recorded_commit: str | None  # git/commit of the recorded data_snapshot; None if untraced
    tag_commit: str | None  # the tag's commit today; None when the tag no longer exists
    read_commit: str | None = None  # what the reproduction's data_snapshot recorded
    read_md5: str | None = None

    @property
    def pinned(self) -> bool:
        return self.recorded_commit is not None and self.tag_commit != self.recorded_commit

    def note(self) -> str:
        """What the printed report says about the data it read: always a line, so the
        terminal names the registry commit as the JSON report does."""
        if self.recorded_commit is None:
            return (
                f"the registry commit {self.tag} was trained on is not traceable in this "
                f"instance; this reproduction read tag {self.tag} as it is now "
                f"({self.tag_commit}), so only data_md5 shows whether that is the same data"
            )
        if not self.pinned:  # said all the same: the printed report names the data it read
            return (
                f"this reproduction read registry commit {self.recorded_commit} of "
                f"{self.registry}, where tag {self.tag} still points (the commit it was "
                "trained on)"
            )
        where = (
            f"now points at {self.tag_commit}"
            if self.tag_commit
            else f"no longer exists in registry {self.registry}"
        )
        read = f"this reproduction read the recorded commit {self.recorded_commit}"
        return f"tag {self.tag} {where}; {read}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pinned": self.pinned}


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
    data: DataRead | None = None
    notes: list[str] = field(default_factory=list)  # said in render() and kept in the JSON
    # "current": the running environment (for a worktree: it holds the commit's uv.lock
    # exactly); "own": the worktree's .venv, synced from that lock.
    environment: str = "current"

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
        data["data"] = self.data.to_dict() if self.data else None
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
            f"in worktree {self.workdir} ("
            + (
                "its own environment, from its uv.lock"
                if self.environment == "own"
                else "in the current environment, which holds its uv.lock exactly"
            )
            + ")"
            if self.method == "worktree"
            else "with the current checkout"
        )
        header = f"reproduction of {self.model} {self.version} (run {self.run_id})"
        header += f" at commit {self.commit[:12]}, {where}"
        table = render_table(("element", "recorded", "reproduced", "same"), rows)
        notes = "".join(f"{note}\n" for note in self.notes)
        return f"{header}\n{notes}{table}\nverdict: {self.verdict}"


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
    data_commit: str | None = None  # the registry commit its data_snapshot read
    data_run_id: str | None = None  # the run of that data_snapshot


def _recorded_snapshot(
    instance: dg.DagsterInstance, model: LoadedDeclaration, trained: Materialization
) -> Materialization | None:
    """The data_snapshot materialization the trained model was built from, followed through
    the recorded ``upstream/`` references; None when the instance no longer holds them."""
    from lifecycle_pipeline.lineage.trace import LineageError, trace

    try:
        return trace(instance, trained).get(model.asset("data_snapshot"))
    except LineageError:
        return None


def _not_trained_by(
    instance: dg.DagsterInstance, model: LoadedDeclaration, version: str, run_id: str
) -> str:
    """Why ``run_id`` cannot be reproduced as ``version``: it trained no model of it (another
    model's run, another version's, or a run that stopped before training); named with what
    the run did materialize, so a wrong run id reads as one, not as a damaged instance."""
    records = instance.get_records_for_run(
        run_id=run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    made = sorted(
        {
            f"{m.asset}@{m.partition}" if m.partition else m.asset
            for m in (Materialization.from_record(r) for r in records)
        }
    )
    trainings = [r.run_id for r in materializations(instance, model.key("trained_model"), version)]
    runs = f"the runs that trained it: {', '.join(trainings)}" if trainings else "none trained it"
    return (
        f"run {run_id} did not train {model.name} {version}: it materialized "
        f"{', '.join(made) if made else 'nothing'}. Pass --run a run that trained {version} "
        f"({runs}), or leave --run out for its newest training."
    )


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
        from lifecycle_pipeline.partitions import RunIdError, validate_run_id

        try:
            validate_run_id(run_id, instance)
        except RunIdError as exc:
            raise ReproduceError(f"{model.name} {version}: {exc}") from None
        try:
            found = in_run(instance, model.key("trained_model"), version, run_id, None)
        except LineageError:
            raise ReproduceError(_not_trained_by(instance, model, version, run_id)) from None
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
    snapshot = _recorded_snapshot(instance, model, found)
    commit = snapshot.metadata.get("git/commit") if snapshot else None
    return RecordedVersion(
        version,
        found.run_id,
        lineage,
        {"ops": ops} if ops else {},
        data_commit=str(commit) if commit else None,
        data_run_id=snapshot.run_id if snapshot else None,
    )


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
    )


_FAILED_OP = re.compile(
    r'executing op "(?P<op>[^"]+)"|STEP_FAILURE - (?:Execution of step )?"?(?P<step>[\w.]+)'
)
_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(?P<kind>\w*(?:Error|Exception)): (?P<message>.+)$")


def run_failure(
    model: LoadedDeclaration, version: str, output: str, folder: Path
) -> ReproduceError:
    """A failed reproduction run as a reproduction failure naming its stage and cause, the
    full output kept in a log file beside the reports (never a bare Dagster traceback)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S%fZ")
    log = folder / f"{model.name}-{version}-failed-{stamp}.log"
    log.write_text(output, encoding="utf-8")
    ops = {model.op(stage): stage for stage in STAGES}
    stage = next(
        (
            ops[name]
            for found in _FAILED_OP.finditer(output)
            if (name := found.group("op") or found.group("step")) in ops
        ),
        None,
    )
    cause = _cause(output)
    where = f"at stage {stage}" if stage else "before any stage ran"
    return ReproduceError(
        f"the reproduction of {version} failed {where}: {cause[:500]}. The run's full output "
        f"is in {log}."
    )


def _cause(output: str) -> str:
    """The exception a failed step raised: the first error line after Dagster's "Error
    occurred while executing op" (the chain below it only explains that one), else the last
    error line that is not Dagster's own summary."""
    lines = [line.strip() for line in output.splitlines()]
    for index, line in enumerate(lines):
        if "Error occurred while executing op" in line:
            for after in lines[index + 1 :]:
                if (found := _ERROR_LINE.match(after)) and not after.startswith("dagster."):
                    return f"{found.group('kind')}: {found.group('message')}"
    errors = [
        m for line in lines if (m := _ERROR_LINE.match(line)) and not line.startswith("Error:")
    ]
    return (
        f"{errors[-1].group('kind')}: {errors[-1].group('message')}" if errors else "no error line"
    )


def _check_declaration_at(
    root: Path, commit: str, model: LoadedDeclaration, lineage: dict[str, Any], version: str
) -> None:
    """Refuse before running when the recorded commit does not hold the declaration the
    version was trained with (records made before untracked model files counted as dirty
    say "clean" for a model whose folder was committed later): the run would otherwise fail
    deep in Dagster, or train another model."""
    path = Path(model.path).resolve()
    if not path.is_relative_to(root.resolve()):
        # A models folder of its own (LIFECYCLE_MODELS_DIR) is read by the reproduction from
        # the same place; the declaration.sha256 element then says whether it still matches.
        return
    relative = path.relative_to(root.resolve()).as_posix()
    shown = subprocess.run(  # bytes: the recorded sha256 is of the file's exact bytes
        ["git", "-C", str(root), "show", f"{commit}:{relative}"], capture_output=True, check=False
    )
    if shown.returncode != 0:
        raise ReproduceError(
            f"commit {commit[:12]}, which trained {version}, holds no {relative}: the model's "
            "folder was not committed when it was trained, so that version cannot be "
            f"reproduced. Train it again from a commit that holds it (`lifecycle --model "
            f"{model.name} materialize {version}`)."
        )
    recorded = str((lineage.get("declaration") or {}).get("sha256", ""))
    found = sha256_bytes(shown.stdout)
    if recorded and found != recorded:
        raise ReproduceError(
            f"{relative} at commit {commit[:12]} (sha256 {found[:12]}) is not the declaration "
            f"{version} was trained with (sha256 {recorded[:12]}): it was edited and not "
            "committed before training, so that version cannot be reproduced. Train it again "
            f"from a committed declaration (`lifecycle --model {model.name} materialize "
            f"{version}`)."
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


def worktree_cache(settings: Settings | None = None) -> Path:
    """Where reproductions keep one worktree per recorded commit."""
    return (settings or Settings.from_env()).home / "reproduce" / "worktrees"


@dataclass(frozen=True)
class Worktree:
    """Where a recorded commit's code runs, and with which interpreter."""

    path: Path
    python: Path
    environment: str  # "current": the running environment serves the commit's lock; "own"
    seconds: float


def _current_environment_serves(path: Path, root: Path) -> bool:
    """Whether the running interpreter's environment holds every package the worktree's
    uv.lock pins, at the pinned version (uv checks, changing nothing; extra packages such as
    the test tools are allowed, the project itself comes from the worktree)."""
    if sys.prefix == sys.base_prefix or not (path / "uv.lock").is_file():
        return False  # not a virtual environment uv can check, or no lock to check against
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {"UV_PYTHON_DOWNLOADS": "never", "UV_PROJECT_ENVIRONMENT": sys.prefix}
    checked = subprocess.run(
        [_uv(root), "sync", "--frozen", "--check", "--inexact", "--no-install-project", "--no-dev"],
        cwd=path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return checked.returncode == 0


def prepare_worktree(root: Path, commit: str, cache: Path) -> Worktree:
    """A worktree at ``commit``, and an environment that holds exactly its uv.lock.

    When the running environment already does (the common case: the code changed since,
    the lock did not), the commit's code runs in it: a new environment would hold the same
    packages, and building one costs its sync plus, since it has no bytecode, compiling
    everything each process imports (a reproduction in a new worktree took 3.5x the original
    materialization that way). Otherwise ``.venv`` is synced from the commit's lock (cached).
    """
    path = cache / commit[:16]
    started = time.perf_counter()
    choice = os.environ.get(ENVIRONMENT_VARIABLE, "auto")
    if choice not in ("auto", "own"):
        raise ReproduceError(
            f"{ENVIRONMENT_VARIABLE}={choice!r}: use 'auto' (the current environment when it "
            "holds the commit's uv.lock exactly) or 'own' (always the commit's own .venv)."
        )
    if not (path / ".git").exists():
        if path.exists():
            shutil.rmtree(path)  # a worktree whose creation was interrupted
        path.parent.mkdir(parents=True, exist_ok=True)
        _git(root, "worktree", "prune")
        added = _git(root, "worktree", "add", "--detach", str(path), commit)
        if added.returncode != 0:
            raise ReproduceError(f"cannot check out {commit} into {path}: {added.stderr.strip()}")
    venv = path / ".venv"  # git-ignored in every commit: it never makes the checkout dirty
    if choice == "auto" and _current_environment_serves(path, root):
        python, environment = Path(sys.executable), "current"
        venv.mkdir(exist_ok=True)  # holds the last-used stamp only
    else:
        python, environment = venv / "bin" / "python", "own"
        lock = (path / "uv.lock").read_bytes() if (path / "uv.lock").exists() else b""
        marker = venv / SYNC_MARKER
        lock_id = sha256_bytes(lock)
        if not (marker.exists() and marker.read_text() == lock_id):
            if venv.is_dir() and not (venv / "pyvenv.cfg").exists():
                shutil.rmtree(venv)  # a stamp-only folder from a run in the current environment
            env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
            env["UV_PYTHON_DOWNLOADS"] = "never"
            # Without bytecode (see ``_materialize``), also under `make`, whose exported
            # UV_COMPILE_BYTECODE (for the project's .venv) made uv compile every installed
            # module here: 14.8 s of figure 4's 22.3 s own-environment reproduction.
            env.pop("UV_COMPILE_BYTECODE", None)
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
    (venv / LAST_USED).write_text(datetime.now(tz=UTC).isoformat(), encoding="utf-8")
    return Worktree(path, python, environment, time.perf_counter() - started)


def _materialize(
    workdir: Path,
    python: Path,
    model: LoadedDeclaration,
    version: str,
    run_config: dict[str, Any],
    scratch: Path,
    pins: dict[str, str] | None = None,
    same_environment: bool = False,
) -> dict[str, Any]:
    """The recorded commit's code materializes the stages in its own process (its code must
    never be imported into this one). In the same environment (``same_environment``: the
    same Dagster), adding the partition and reading the result back happen here, on the
    scratch instance; otherwise in the worktree's interpreter, whose Dagster may differ."""
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
    env.pop(PINS_VARIABLE, None)  # only the pins this reproduction decided on
    # A worktree's own environment is synced without bytecode (compiling all of it would add
    # ~30 s to every new worktree); its interpreters may then cache what they import, so
    # only the first run compiles, and only the modules it imports. Under an inherited
    # PYTHONDONTWRITEBYTECODE every run compiled Dagster, scikit-learn and pandas again
    # (importing the definitions: 5.2 s instead of 2.6 s, three processes per reproduction).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if pins:
        env[PINS_VARIABLE] = json.dumps(pins)

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(python), *args], cwd=workdir, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise run_failure(model, version, done.stdout + done.stderr, scratch.parent)
        return done.stdout

    selection = " or ".join(f"key:{model.asset(stage)}" for stage in STAGES)
    materialize = [
        "-m", "dagster", "asset", "materialize", "-m", "lifecycle_pipeline.definitions",
        "--select", selection, "--partition", version, "--config-json", json.dumps(run_config),
    ]  # fmt: skip
    module = Path(run("-c", _MODULE).strip().splitlines()[-1])
    if not module.resolve().is_relative_to(workdir.resolve()):
        raise ReproduceError(
            f"the reproduction would import lifecycle_pipeline from {module}, not from the "
            f"worktree {workdir}: it would not run the recorded commit's code."
        )
    result: dict[str, Any]
    if same_environment:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions(model.scoped("data_versions"), [version])
        run(*materialize)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            result = _recorded_outputs(instance, model, version)
    else:
        run("-c", _ADD_PARTITION, version, model.scoped("data_versions"))
        run(*materialize)
        read = run("-c", _READ_BACK, version, model.name)
        result = json.loads(read.strip().splitlines()[-1])
    return result


def _recorded_outputs(
    instance: dg.DagsterInstance, model: LoadedDeclaration, version: str
) -> dict[str, Any]:
    """What a reproduction compares, from its scratch instance (as ``_READ_BACK`` prints it)."""

    def newest(stage: str) -> dict[str, Any] | None:
        record = latest(instance, model.key(stage), version)
        if record is None:
            return None
        return {
            k: v
            for k, v in metadata_values(record).items()
            if k in ("lineage", "dvc/md5", "git/commit") or k.startswith("metric/")
        }

    return {s: newest(s) for s in ("trained_model", "data_snapshot", "evaluation")}


def _materialize_here(
    model: LoadedDeclaration,
    version: str,
    run_config: dict[str, Any],
    scratch: Path,
    pins: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The current commit's reproduction, run in this process: the code is the recorded one
    (same commit, clean tree, same lock), so a second interpreter would only start up again
    (three processes, about 5 s here). Isolation stays: an ephemeral instance and a scratch
    artifact root, so nothing reaches the deployment's instance or store."""
    from lifecycle_pipeline.definitions import build_definitions
    from lifecycle_pipeline.demo import QUIET, failure_summary
    from lifecycle_pipeline.resources.artifact_store import ArtifactStore

    before = os.environ.get(PINS_VARIABLE)
    if pins:  # read by the registry when the snapshot reads its data
        os.environ[PINS_VARIABLE] = json.dumps(pins)
    else:
        os.environ.pop(PINS_VARIABLE, None)
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions(model.scoped("data_versions"), [version])
            defs = build_definitions(
                model=model, artifact_store=ArtifactStore(root=str(scratch / "artifacts"))
            )
            result = defs.resolve_job_def(model.scoped("lifecycle")).execute_in_process(
                run_config={**run_config, **QUIET},  # step logs stay in the scratch run
                instance=instance,
                partition_key=version,
                asset_selection=[model.key(stage) for stage in STAGES],
                raise_on_error=False,
            )
            if not result.success:
                raise ReproduceError(
                    f"the reproduction run of {version} failed:\n{failure_summary(result)}"
                )
            return _recorded_outputs(instance, model, version)
    finally:
        if before is None:
            os.environ.pop(PINS_VARIABLE, None)
        else:
            os.environ[PINS_VARIABLE] = before


REGISTRY_SOURCE = "lifecycle_pipeline/resources/registry.py"


def _data_read(registry: DataRegistry, recorded: RecordedVersion) -> DataRead:
    """Where the version's tag points now, refusing when its recorded commit is gone."""
    version, url = recorded.version, registry.resolved_url()
    try:
        now = registry.commit_of(version)
        kept = recorded.data_commit in (None, now) or bool(
            registry.commit_of(str(recorded.data_commit))
        )
    except RegistryError as exc:  # one refusal type for the CLI and the reproduce job
        raise ReproduceError(f"{version}: the data registry cannot be read: {exc}") from exc
    data = DataRead(version, url, recorded.data_commit, now)
    if not kept:
        where = f"tag {version} now points at {now}" if now else f"tag {version} is gone"
        raise ReproduceError(
            f"{version} was trained on registry commit {recorded.data_commit} of {url} "
            f"(git/commit of its data_snapshot, run {recorded.data_run_id}), and the registry "
            f"no longer holds that commit ({where}); reproducing from other data would prove "
            "nothing, so nothing was run. Restore it from a clone or backup that still has it: "
            f"`git -C {url} fetch <that clone> {recorded.data_commit}` and "
            f"`git -C {url} tag -f {version} {recorded.data_commit}`; its data must be in the "
            "registry's DVC cache or remote (`dvc push` from that clone)."
        )
    return data


def _honours_pins(root: Path, commit: str) -> bool:
    """Whether ``commit``'s code reads LIFECYCLE_REGISTRY_PINS (older code reads by tag only)."""
    source = _git(root, "show", f"{commit}:{REGISTRY_SOURCE}")
    return source.returncode == 0 and f'"{PINS_VARIABLE}"' in source.stdout


def _refuse_unpinnable(data: DataRead, version: str, commit: str) -> ReproduceError:
    where = (
        f"now points at {data.tag_commit}"
        if data.tag_commit
        else f"no longer exists in registry {data.registry}"
    )
    return ReproduceError(
        f"tag {version} of registry {data.registry} {where}, but {version} was trained on "
        f"registry commit {data.recorded_commit}; commit {commit[:12]} that trained it reads "
        f"data by tag only (its {REGISTRY_SOURCE} predates {PINS_VARIABLE}), so a reproduction "
        "with its code would read other data. Put the tag back for the reproduction: "
        f"`git -C {data.registry} tag -f {version} {data.recorded_commit}` (data_snapshot "
        f"refuses the moved tag anyway), then run `lifecycle reproduce {version}` again."
    )


def _checked(data: DataRead, snapshot: dict[str, Any] | None, recorded_md5: str) -> DataRead:
    """What the reproduction read, refused unless it is the recorded commit and md5."""
    snapshot = snapshot or {}
    read = replace(data, read_commit=snapshot.get("git/commit"), read_md5=snapshot.get("dvc/md5"))
    if data.recorded_commit is None:
        return read  # nothing recorded to hold it to; data_md5 still compares the bytes
    if (read.read_commit, read.read_md5) != (data.recorded_commit, recorded_md5):
        raise ReproduceError(
            f"the reproduction of {data.tag} read registry commit {read.read_commit} (md5 "
            f"{read.read_md5}), but the version was trained on commit {data.recorded_commit} "
            f"(md5 {recorded_md5}) of {data.registry}, so there is no verdict. If the tag moved "
            f"during the run, run `lifecycle reproduce {data.tag}` again; otherwise this code "
            f"ignores {PINS_VARIABLE}: put the tag back for the reproduction (`git -C "
            f"{data.registry} tag -f {data.tag} {data.recorded_commit}`)."
        )
    return read


def reproduce(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration,
    version: str,
    run_id: str | None = None,
) -> ReproductionReport:
    """Reproduce ``version`` and compare it with its record.

    ``model`` may be loaded without its estimator checks (``estimator_checks=False``): a
    worktree reproduction reads only its name, asset keys and registry from it (the recorded
    commit validates its own declaration), and one at the current commit validates it fully
    before running it here."""
    recorded = recorded_version(instance, model, version, run_id)
    code = recorded.lineage["code"]
    commit = str(code["commit"])
    if commit == UNKNOWN:
        raise ReproduceError(
            f"{version} run {recorded.run_id} was trained outside a git checkout (commit "
            "unknown): no commit holds its code, so it cannot be reproduced."
        )
    uncommitted = [str(path) for path in code.get("uncommitted") or ()]
    if code["dirty"] and uncommitted:
        raise ReproduceError(
            f"{version} run {recorded.run_id} was trained while {', '.join(uncommitted)} "
            f"{'was' if len(uncommitted) == 1 else 'were'} not committed as used: commit "
            f"{commit[:12]} does not hold this model as trained, so it cannot be reproduced. "
            "Commit the model's files, then train this data version again "
            f"(`lifecycle --model {model.name} materialize {version}`): that version is "
            "reproducible."
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
    _check_declaration_at(root, commit, model, recorded.lineage, version)
    data = _data_read(DataRegistry.for_model(model), recorded)
    pins = {version: str(data.recorded_commit)} if data.pinned else {}
    today = code_state(root, model_files(model))
    same = today.commit == commit and not today.dirty and today.lock_hash == code["lock_hash"]
    seconds: dict[str, float] = {}
    if same:
        # The run builds the estimator in this process, so it must have passed every check (a
        # caller may have loaded the declaration without its estimator checks).
        model = model.estimator_validated()
        method, workdir, python, environment = "current", root, Path(sys.executable), "current"
    else:
        if pins and not _honours_pins(root, commit):
            raise _refuse_unpinnable(data, version, commit)
        method = "worktree"
        tree = prepare_worktree(root, commit, worktree_cache(settings))
        workdir, python, environment = tree.path, tree.python, tree.environment
        seconds["environment"] = tree.seconds
    scratch_parent = settings.home / "reproduce"
    scratch_parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scratch-", dir=scratch_parent) as scratch:
        if method == "current":
            found = _materialize_here(model, version, recorded.run_config, Path(scratch), pins)
        else:
            found = _materialize(
                workdir,
                python,
                model,
                version,
                recorded.run_config,
                Path(scratch),
                pins,
                same_environment=environment == "current",
            )
    seconds["materialize"] = time.perf_counter() - started
    data = _checked(data, found.get("data_snapshot"), str(recorded.lineage["data_md5"]))
    note = data.note()
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
        data=data,
        notes=[note] if note else [],
        environment=environment,
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


def record_reproduction(report: ReproductionReport, log: Any, output: Path | None = None) -> Path:
    """Save the report (to ``output`` or the default folder) and append its audit record: what
    the CLI and the reproduce job both leave behind, so either is the same evidence."""
    path = save_report(report, output.parent if output else None)
    if output:
        path = path.rename(output)
    log.append("reproduction", {**report.to_dict(), "report": str(path)}, version=report.version)
    return path
