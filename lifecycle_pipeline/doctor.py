"""`lifecycle doctor`: is this instance, its artifacts, its audit logs and its registry whole?

A damaged Dagster instance otherwise surfaces as ``database disk image is malformed`` from
deep inside SQLAlchemy, naming no file. The doctor looks at every piece of evidence the
lifecycle rests on and prints one line per problem: which file (or tag) and the command that
fixes it. It opens SQLite files read-only and immutable, so looking creates nothing, not even
a ``-wal`` or ``-shm`` file, and it never opens the instance through Dagster while a storage
file is damaged or missing (Dagster would create a fresh empty one in its place).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from lifecycle_pipeline.errors import LifecycleError

if TYPE_CHECKING:
    import dagster as dg

    from lifecycle_pipeline.declaration import LoadedDeclaration
    from lifecycle_pipeline.lineage.trace import Materialization

INDEX_SHARD = "index"
REBUILD = "lifecycle instance rebuild"
STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")


class InstanceDamagedError(LifecycleError, RuntimeError):
    """A file of the Dagster instance's storage is damaged or missing."""


class UnsupportedStorageError(LifecycleError, RuntimeError):
    """The instance keeps its storage somewhere the doctor cannot open (PostgreSQL, MySQL)."""


@dataclass(frozen=True)
class StorageLayout:
    """Where a SQLite-backed instance keeps its storage: Dagster's default layout under
    DAGSTER_HOME (or under ``storage: sqlite: base_dir``)."""

    home: Path
    base: Path

    @classmethod
    def of(cls, home: Path) -> StorageLayout:
        import yaml

        config_path = home / "dagster.yaml"
        config: dict[str, Any] = {}
        if config_path.exists():
            config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        configured = {k: config[k] for k in STORAGE_KEYS if k in config}
        storage = configured.get("storage")
        if configured and not (
            set(configured) == {"storage"}
            and isinstance(storage, dict)
            and set(storage) == {"sqlite"}
        ):
            kinds = ", ".join(
                f"{k}: {', '.join(v) if isinstance(v, dict) else v}" for k, v in configured.items()
            )
            raise UnsupportedStorageError(
                f"{config_path} configures {kinds}; the doctor and `{REBUILD}` handle the default "
                "SQLite storage only. Check and restore a database server with its own tools "
                "(e.g. pg_dump / pg_restore for postgres)."
            )
        base = home
        if storage:
            base = Path(str((storage["sqlite"] or {}).get("base_dir") or home))
        return cls(home=home, base=base)

    @property
    def history(self) -> Path:
        return self.base / "history"

    @property
    def runs_db(self) -> Path:
        return self.history / "runs.db"

    @property
    def event_dir(self) -> Path:
        return self.history / "runs"

    @property
    def index_db(self) -> Path:
        return self.event_dir / f"{INDEX_SHARD}.db"

    @property
    def schedules_db(self) -> Path:
        return self.base / "schedules" / "schedules.db"

    def shards(self) -> list[Path]:
        """Each run's event log, and the run-less one (``.db``: promotions, rollbacks)."""
        if not self.event_dir.is_dir():
            return []
        return sorted(p for p in self.event_dir.glob("*.db") if p.name != f"{INDEX_SHARD}.db")

    def files(self) -> list[Path]:
        return [self.runs_db, self.index_db, *self.shards(), self.schedules_db]

    def describe(self, path: Path) -> str:
        names = {
            self.runs_db: "run storage",
            self.index_db: "event index (every asset event, dynamic partitions)",
            self.schedules_db: "schedule and sensor storage",
        }
        if path in names:
            return names[path]
        run_id = run_of(path)
        return f"event log of run {run_id}" if run_id else "run-less event log (promotions)"


def run_of(shard: Path) -> str:
    """The run whose events a shard holds; "" for the run-less shard ``.db``."""
    return "" if shard.name == ".db" else shard.stem


def _uri(path: Path, wal: bool) -> str:
    """Read-only; immutable unless a write-ahead log is there to be read (an instance in use,
    or a crashed writer): an immutable open creates no ``-shm``/``-wal`` file."""
    mode = "mode=ro" if wal else "immutable=1"
    return f"file:{quote(str(path))}?{mode}"


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that cannot change ``path`` and creates nothing beside it."""
    wal = Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
    with closing(sqlite3.connect(_uri(path, wal), uri=True)) as connection:
        yield connection


def sqlite_problem(path: Path) -> str | None:
    """None when ``path`` is a whole SQLite database, else what is wrong with it."""
    if not path.exists():
        return "missing"
    if path.stat().st_size == 0:
        return "empty (0 bytes)"
    try:
        with read_only(path) as connection:
            rows = connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    found = [str(row[0]) for row in rows]
    return None if found == ["ok"] else "; ".join(found[:3])


def damaged_files(layout: StorageLayout) -> dict[Path, str]:
    """Every storage file that is damaged, or missing while the instance has history."""
    found: dict[Path, str] = {}
    if not layout.history.is_dir():
        return found  # nothing has run yet: Dagster creates the files on first use
    for path in layout.files():
        problem = sqlite_problem(path)
        if problem == "missing" and path == layout.schedules_db:
            continue  # created on first use, holds no lineage
        if problem is not None:
            found[path] = problem
    return found


def _database_error(exc: BaseException) -> BaseException | None:
    """The sqlite3 error in ``exc``'s chain (SQLAlchemy wraps it as ``.orig``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.DatabaseError):
            return current
        orig = getattr(current, "orig", None)
        if isinstance(orig, sqlite3.DatabaseError):
            return orig
        current = current.__cause__ or current.__context__
    return None


def as_damage(exc: BaseException, home: Path | None = None) -> InstanceDamagedError | None:
    """``exc`` said in terms of the instance's files, when a damaged file is behind it.

    Called where an error reaches the user: the instance's files are probed then (read-only),
    so the message names what is damaged instead of echoing SQLite's ``database disk image is
    malformed``. A locked or busy database is not damage and is left alone.
    """
    if isinstance(exc, InstanceDamagedError):
        return exc
    cause = _database_error(exc)
    if cause is None:
        return None
    import os

    where = home or Path(os.environ.get("DAGSTER_HOME", "."))
    try:
        layout = StorageLayout.of(where)
    except UnsupportedStorageError:
        return None
    damaged = damaged_files(layout)
    if not damaged:
        return None
    files = "; ".join(f"{path} ({layout.describe(path)}): {what}" for path, what in damaged.items())
    return InstanceDamagedError(
        f"the Dagster instance at {where} is damaged ({cause}): {files}. Run `lifecycle doctor` "
        f"to see every problem, then `{REBUILD}` to rebuild the instance from what survives "
        "(the damaged files are kept aside, never deleted)."
    )


@contextmanager
def naming_damage() -> Iterator[None]:
    """Re-raise a SQLite error from a damaged instance as one naming the damaged file."""
    try:
        yield
    except Exception as exc:
        damage = as_damage(exc)
        if damage is None or damage is exc:
            raise
        raise damage from exc


@dataclass(frozen=True)
class Problem:
    """One thing wrong, where it is, and what fixes it."""

    where: str
    what: str
    fix: str

    def line(self) -> str:
        return f"{self.where}: {self.what}; fix: {self.fix}"

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "what": self.what, "fix": self.fix}


@dataclass
class DoctorReport:
    checked: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # not problems, never to go unsaid

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n

    def render(self) -> str:
        checked = ", ".join(f"{n} {what}" for what, n in self.checked.items()) or "nothing"
        lines = [p.line() for p in self.problems]
        lines += [f"not checked: {reason}" for reason in self.skipped]
        lines += self.notices
        verdict = "no problems found" if self.ok else f"{len(self.problems)} problem(s) found"
        return "\n".join([*lines, f"{verdict}; checked {checked}"])

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "checked": self.checked,
                "problems": [p.to_dict() for p in self.problems],
                "skipped": self.skipped,
                "notices": self.notices,
            },
            indent=2,
        )


def check_storage(layout: StorageLayout, report: DoctorReport) -> bool:
    """Every SQLite file whole, and every started run with its event log; True if usable."""
    damaged = damaged_files(layout)
    report.count("SQLite file(s)", sum(1 for p in layout.files() if p.exists()))
    for path, what in damaged.items():
        report.problems.append(Problem(str(path), f"{layout.describe(path)}: {what}", REBUILD))
    if layout.runs_db not in damaged and layout.runs_db.exists():
        with read_only(layout.runs_db) as connection:
            rows = connection.execute("SELECT run_id, status FROM runs").fetchall()
        logged = {p.stem for p in layout.shards()}
        for run_id, status in rows:
            if status not in ("NOT_STARTED", "QUEUED", "STARTING") and run_id not in logged:
                path = layout.event_dir / f"{run_id}.db"
                report.problems.append(
                    Problem(str(path), f"event log of {status} run {run_id}: missing", REBUILD)
                )
    if not damaged and layout.index_db.exists():
        check_index(layout, report)
    return not any(p in damaged for p in (layout.runs_db, layout.index_db))


GOVERNANCE_EVENTS = ("ASSET_MATERIALIZATION", "ASSET_OBSERVATION")


def _governance_rows(path: Path) -> dict[str, str]:
    """The ``production_model`` events (promotions, rollbacks) a SQLite event log holds:
    serialized event -> its run id ("" for a run-less event)."""
    from lifecycle_pipeline.audit_anchor import PRODUCTION_ASSET

    marks = ", ".join("?" for _ in GOVERNANCE_EVENTS)
    with read_only(path) as connection:
        rows = connection.execute(
            f"SELECT run_id, event FROM event_logs WHERE dagster_event_type IN ({marks}) "
            "AND asset_key LIKE ?",
            (*GOVERNANCE_EVENTS, f'%"{PRODUCTION_ASSET}"]'),
        ).fetchall()
    return {str(event): str(run_id or "") for run_id, event in rows}


def _describe_event(event: str) -> str:
    """One governance event in words: its model, action, version and audit record."""
    from dagster._core.events.log import EventLogEntry
    from dagster._serdes import deserialize_value

    entry = deserialize_value(event, EventLogEntry)
    dagster_event = entry.dagster_event
    key = dagster_event.asset_key if dagster_event else None
    data = dagster_event.event_specific_data if dagster_event else None
    found = getattr(data, "materialization", None) or getattr(data, "asset_observation", None)
    meta = {k: getattr(v, "value", v) for k, v in (getattr(found, "metadata", None) or {}).items()}
    model = key.path[0] if key else "?"
    seq = meta.get("audit/seq")
    return f"the {meta.get('action', 'governance event')} of {model} {meta.get('version', '?')}" + (
        f" (audit record {seq})" if seq is not None else ""
    )


def check_index(layout: StorageLayout, report: DoctorReport) -> None:
    """Every promotion and rollback event in a run's own event log (the run-less ``.db`` for
    those `promote` and `rollback` report) is in the instance-wide index, and back.

    Dagster answers asset queries (the UI, `fetch_materializations`, the log's anchoring)
    from the index alone; an event missing there is invisible to every check that asks
    Dagster, while the per-run file still shows it in the run's own view, and an event only
    in the index has lost its own record. Read from the files, read-only."""
    indexed = _governance_rows(layout.index_db)
    stored: dict[str, Path] = {}
    for shard in layout.shards():
        for event in _governance_rows(shard):
            stored.setdefault(event, shard)
    report.count("governance event(s)", len(stored))
    for event, shard in stored.items():
        if event not in indexed:
            report.problems.append(
                Problem(
                    str(layout.index_db),
                    f"{_describe_event(event)} is in {shard} ({layout.describe(shard)}) but "
                    "missing from the event index, so the instance's queries and the audit "
                    "log's anchoring do not see it",
                    REBUILD,
                )
            )
    for event, run_id in indexed.items():
        if event not in stored:
            shard = layout.event_dir / f"{run_id}.db"
            report.problems.append(
                Problem(
                    str(shard),
                    f"{_describe_event(event)} is in the event index but missing from "
                    f"{layout.describe(shard)}",
                    REBUILD,
                )
            )


def _materializations(instance: dg.DagsterInstance, key: dg.AssetKey) -> Iterator[Any]:
    import dagster as dg

    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor
        )
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor


def _name(model: LoadedDeclaration | str) -> str:
    """A model's name: a model that is not loaded is checked by its name alone."""
    return model if isinstance(model, str) else model.name


def recorded_in_instance(
    instance: dg.DagsterInstance, model: LoadedDeclaration | str
) -> list[Materialization]:
    """Every materialization of the model's assets, oldest first."""
    from lifecycle_pipeline.lineage.trace import Materialization

    found = [
        Materialization.from_record(record)
        for key in instance.get_asset_keys(prefix=[_name(model)])
        for record in _materializations(instance, key)
    ]
    return sorted(found, key=lambda m: m.storage_id)


def recorded_in_log(model: LoadedDeclaration | str, report: DoctorReport) -> list[Materialization]:
    """Every materialization the model's audit log holds, oldest first (the evidence left
    when the instance cannot be read); a log that does not verify is reported instead."""
    from lifecycle_pipeline.lineage.audit import AuditLog
    from lifecycle_pipeline.lineage.trace import Materialization

    log = AuditLog.for_model(_name(model))
    if not log.path.exists():
        return []
    verified = log.verify()
    report.count("audit log(s)")
    report.count("audit record(s)", verified.records)
    _log_problems(model, log.path, verified.problems, report)
    if not verified.ok:
        return []
    return [
        Materialization(
            asset=str(made["asset"]),
            partition=made.get("partition"),
            run_id=str(record.data["run_id"]),
            storage_id=int(made.get("storage_id") or 0),
            timestamp=record.when.timestamp(),
            metadata=dict(made.get("metadata") or {}),
        )
        for record in log.records(verify=False)
        if record.kind == "run"
        for made in record.data.get("materializations", [])
    ]


def _verify_artifact(made: Materialization) -> None:
    """The artifact store's own checks: a file against its digest; a folder file by file,
    and its zip against the folder."""
    from lifecycle_pipeline.lineage.records import ArtifactRef
    from lifecycle_pipeline.resources import codecs
    from lifecycle_pipeline.resources.artifact_store import (
        ARCHIVE_KEY,
        FILES_KEY,
        KIND_KEY,
        SHA_KEY,
        URI_KEY,
        ArtifactIntegrityError,
        ArtifactStore,
    )

    meta = made.metadata
    ref = ArtifactRef(
        made.asset, made.partition, str(meta[URI_KEY]), str(meta[SHA_KEY]), made.run_id
    )
    store = ArtifactStore()
    if KIND_KEY not in meta:
        store.read(ref)
        return
    tree = store.read_tree(ref, str(meta[KIND_KEY]), dict(meta[FILES_KEY]))
    if ARCHIVE_KEY in meta:
        from upath import UPath

        archive = UPath(str(meta[ARCHIVE_KEY]))  # s3://... stays a URI (Path makes it s3:/)
        if not archive.is_file():
            raise ArtifactIntegrityError(f"Artifact archive {archive} is missing")
        if archive.read_bytes() != codecs.tree_archive(tree.files):
            raise ArtifactIntegrityError(
                f"Artifact archive {archive} does not hold the recorded folder {ref.uri}"
            )


def check_artifacts(made: list[Materialization], report: DoctorReport) -> None:
    """Every recorded artifact is there with the bytes its materialization recorded."""
    from lifecycle_pipeline.resources.artifact_store import (
        SHA_KEY,
        URI_KEY,
        ArtifactIntegrityError,
    )

    seen: set[tuple[str, str]] = set()
    for one in made:
        if URI_KEY not in one.metadata or SHA_KEY not in one.metadata:
            continue
        identity = (str(one.metadata[URI_KEY]), str(one.metadata[SHA_KEY]))
        if identity in seen:
            continue
        seen.add(identity)
        report.count("artifact(s)")
        try:
            _verify_artifact(one)
        except ArtifactIntegrityError as exc:
            uri = identity[0]
            what = str(exc).split(";")[0].split(". ")[0]
            for prefix in (f"Artifact {uri} ", f"Artifact folder {uri} "):
                what = what.removeprefix(prefix)
            report.problems.append(
                Problem(
                    uri,
                    f"{what} (recorded by {one.asset}@{one.partition} in run {one.run_id})",
                    "restore it from a backup, or re-materialize: `dagster asset materialize "
                    f"-m lifecycle_pipeline.definitions --select '{one.asset}' --partition "
                    f"{one.partition}`",
                )
            )


def _log_problems(
    model: LoadedDeclaration | str, path: Path, problems: list[str], report: DoctorReport
) -> None:
    from lifecycle_pipeline.audit_anchor import resolution

    for problem in problems:
        report.problems.append(Problem(str(path), problem, resolution(model, path, problem)))


def check_audit(
    instance: dg.DagsterInstance, model: LoadedDeclaration | str, report: DoctorReport
) -> None:
    """The model's audit log verifies, agrees with the instance's copy of its governance
    changes, and every run it holds is still in the instance."""
    from lifecycle_pipeline.audit_anchor import verify_anchored
    from lifecycle_pipeline.lineage.audit import AuditLog

    log = AuditLog.for_model(_name(model))
    if not log.path.exists():
        return
    verified = verify_anchored(instance, model, log)
    report.count("audit log(s)")
    report.count("audit record(s)", verified.records)
    _log_problems(model, log.path, verified.problems, report)
    if log.verify().ok:
        known = set(instance.get_run_ids())
        for record in log.records():
            run_id = record.data.get("run_id")
            if record.kind == "run" and run_id and run_id not in known:
                report.problems.append(
                    Problem(
                        str(log.path),
                        f"record {record.seq}: run {run_id} is in the log but not in the instance",
                        REBUILD,
                    )
                )


def check_registry(
    model: LoadedDeclaration, made: list[Materialization], report: DoctorReport
) -> None:
    """Each data version's tag still resolves to the bytes it was first materialized from
    (the run would refuse it; the doctor says so before anyone runs)."""
    from lifecycle_pipeline.errors import LifecycleError
    from lifecycle_pipeline.resources.registry import DataRegistry

    registry = DataRegistry.for_model(model)
    first: dict[str, Materialization] = {}
    for one in made:  # oldest first
        if one.asset == model.asset("data_snapshot") and one.partition:
            first.setdefault(one.partition, one)
    url = registry.resolved_url()
    for version, snapshot in first.items():
        md5, commit = str(snapshot.metadata["dvc/md5"]), str(snapshot.metadata["git/commit"])
        where = f"tag {version} in {url}"
        fix = (
            f"`git -C {url} tag -f {version} {commit}` (or publish the new data under a new "
            "version name)"
        )
        report.count("data-version tag(s)")
        try:
            now = registry.resolve(version)
        except LifecycleError as exc:
            report.problems.append(Problem(where, f"does not resolve: {exc}", fix))
            continue
        if (now.md5, now.commit) != (md5, commit):
            report.problems.append(
                Problem(
                    where,
                    f"now resolves to md5 {now.md5} (commit {now.commit[:12]}), but was first "
                    f"materialized from md5 {md5} (commit {commit[:12]}, run {snapshot.run_id})",
                    fix,
                )
            )


def check_unloaded(unloaded: Mapping[str, str], report: DoctorReport) -> None:
    """Each model on disk that is not loaded is a problem of its own: its log is checked by
    name below, but the model is not verified, and saying nothing would read as healthy."""
    from lifecycle_pipeline.coverage import not_loaded_fix
    from lifecycle_pipeline.declaration import DECLARATION_FILE, models_dir

    for name, why in unloaded.items():
        report.count("model(s) not loaded")
        where = str(models_dir() / name / DECLARATION_FILE)
        report.problems.append(
            Problem(where, f"model {name} is not verified: {why}", not_loaded_fix(name))
        )
        report.skipped.append(f"the registry tags of {name}: its declaration is not loaded")


def diagnose(
    home: Path, models: list[LoadedDeclaration], unloaded: Mapping[str, str] | None = None
) -> DoctorReport:
    """Every check, for ``models`` and (by name, as far as that goes) for the models on disk
    that are not loaded (``unloaded``: name -> why). The instance is opened only when its
    storage is whole; otherwise artifacts and tags are checked against the audit logs' run
    records."""

    from lifecycle_pipeline.resources.signing import development_keys_notice

    report = DoctorReport()
    notice = development_keys_notice()
    report.notices += [notice] if notice else []
    unloaded = dict(unloaded or {})
    check_unloaded(unloaded, report)
    try:
        layout = StorageLayout.of(home)
    except UnsupportedStorageError as exc:  # a database server: its own tools check its files
        report.skipped.append(f"the storage files: {exc}")
        return _with_instance(home, models, unloaded, report)
    if not layout.history.is_dir():  # opening it would create the storage
        report.skipped.append(f"everything: {layout.history} does not exist, nothing ran yet")
        return report
    if not check_storage(layout, report):
        report.skipped.append(
            "the audit logs against the instance, whose storage is damaged (artifacts and "
            f"registry tags were checked against the audit logs instead); run `{REBUILD}`, "
            "then `lifecycle doctor` again"
        )
        every: list[LoadedDeclaration | str] = [*models, *unloaded]
        for model in every:
            made = recorded_in_log(model, report)
            check_artifacts(made, report)
            if not isinstance(model, str):
                check_registry(model, made, report)
        return report
    return _with_instance(home, models, unloaded, report)


def _with_instance(
    home: Path, models: list[LoadedDeclaration], unloaded: Mapping[str, str], report: DoctorReport
) -> DoctorReport:
    """The checks that need the instance's answers: its artifacts, its copy of each log's
    governance changes, and each version's first data snapshot."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        every: list[LoadedDeclaration | str] = [*models, *unloaded]
        for model in every:
            made = recorded_in_instance(instance, model)
            check_artifacts(made, report)
            check_audit(instance, model, report)
            if not isinstance(model, str):
                check_registry(model, made, report)
    return report
