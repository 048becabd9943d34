"""The on-call and audit commands of `lifecycle`: reproduce, replay, promote, rollback, status,
history and audit. Each prints what it decided and why; the exit status says it too."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle_pipeline.settings import Settings

if TYPE_CHECKING:
    import dagster as dg

    from lifecycle_pipeline.declaration import LoadedDeclaration
    from lifecycle_pipeline.lineage.audit import AuditLog
    from lifecycle_pipeline.resources.keys import Keyring


def _model() -> LoadedDeclaration:
    """The model this command works on (``--model``, or the only one declared)."""
    from lifecycle_pipeline.declaration import current_declaration

    return current_declaration()


def _reproduced_model() -> LoadedDeclaration:
    """The model `reproduce` works on, validated except for its estimator (importing the
    estimator's library is most of this process's own start-up).

    Only the name, asset keys and registry settings are read here: a reproduction in a
    worktree validates and runs the recorded commit's own declaration, in its own process, and
    one at the current commit validates the estimator before building it
    (``LoadedDeclaration.estimator_validated``). So an on-call engineer can reproduce an old
    version even when today's estimator declaration does not load; a structural error (YAML,
    fields, gates, slices, drift, the name) still refuses, with the same message."""
    from lifecycle_pipeline.declaration import current_declaration

    return current_declaration(estimator_checks=False)


def _model_name() -> str:
    """The chosen model's name, for commands that read only its audit log and the instance
    (status, history): its declaration must be valid, but one validated before with the same
    bytes, code and environment is not validated again (``valid_model_names``)."""
    from lifecycle_pipeline.declaration import (
        DECLARATION_FILE,
        declaration_path,
        models_dir,
        valid_model_names,
    )

    path = declaration_path()
    if path.name != DECLARATION_FILE or path.parent.parent.resolve() != models_dir().resolve():
        return _model().name  # a declaration named by its path, outside the models folder
    _, broken = valid_model_names(only=path.parent.name)
    if broken:
        raise next(iter(broken.values()))
    return path.parent.name


def _log(model: LoadedDeclaration | str) -> AuditLog:
    from lifecycle_pipeline.lineage.audit import AuditLog

    return AuditLog.for_model(model if isinstance(model, str) else model.name)


def _chosen() -> bool:
    """Whether a model was named (``--model`` / ``$LIFECYCLE_MODEL``)."""
    import os

    return bool(os.environ.get("LIFECYCLE_MODEL"))


@contextmanager
def _instance() -> Iterator[dg.DagsterInstance]:
    """The instance; a SQLite error from a damaged file comes out naming that file."""
    import dagster as dg

    from lifecycle_pipeline.demo import prepare_environment
    from lifecycle_pipeline.doctor import naming_damage

    prepare_environment(Settings.from_env())
    with naming_damage(), dg.DagsterInstance.get() as instance:
        yield instance


def _public_key(args: argparse.Namespace) -> Keyring:
    """``--public-key`` trusted alone, else the deployment's trusted keys (its keyring)."""
    from lifecycle_pipeline.resources.signing import trusted_keys

    return trusted_keys(args.public_key)


def _reproduce(args: argparse.Namespace) -> int:
    from lifecycle_pipeline import worktrees
    from lifecycle_pipeline.reproduce import ReproduceError, record_reproduction, reproduce

    if (args.keep is not None or args.older_than) and not args.prune:
        raise ReproduceError("--keep and --older-than say what --prune spares; add --prune.")
    if args.list_worktrees or args.prune:
        if args.version or args.run or args.output:
            raise ReproduceError(
                "--list-worktrees and --prune manage every reproduction worktree and take no "
                "version, --run or --output; run them on their own."
            )
        if args.list_worktrees:
            cache, root = worktrees.worktree_cache(), Settings.from_env().project_root
            trees = worktrees.list_worktrees(cache)
            stale = worktrees.stale_worktree_entries(root, cache)
            print(worktrees.render_worktrees(trees, stale, cache))
            return 0
        age = worktrees.parse_age(args.older_than) if args.older_than else None
        root = Settings.from_env().project_root
        pruned = worktrees.prune_worktrees(root, None, args.keep, age)
        print(pruned.render())
        if pruned.failed:
            raise ReproduceError(
                f"{len(pruned.failed)} worktrees were not removed (NOT removed, above): unlock "
                "a locked one (`git worktree unlock PATH`) and run --prune again."
            )
        return 0
    if not args.version:
        raise ReproduceError(
            "name the data version to reproduce (`lifecycle reproduce data-v1`), or pass "
            "--list-worktrees or --prune to manage the reproduction worktrees."
        )
    model = _reproduced_model()
    with _instance() as instance:
        report = reproduce(instance, model, args.version, args.run)
    path = record_reproduction(report, _log(model), Path(args.output) if args.output else None)
    print(report.render())
    print(f"report: {path}")
    return 0 if report.identical else 1


def score(package: Path, rows: Path, out_of_range: str | None = None) -> tuple[Any, list[str]]:
    """Predictions from the package's own entry point (the code production runs), warnings.

    ``out_of_range`` None applies the package's declared policy.
    """
    import importlib.util
    import warnings

    from lifecycle_pipeline.package.runtime import InputError, PackageError

    spec = importlib.util.spec_from_file_location(
        "lifecycle_package_predict", package / "predict.py"
    )
    if spec is None or spec.loader is None:
        raise PackageError(f"{package / 'predict.py'}: cannot be loaded")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    import inspect
    import json

    try:
        if "schema" in inspect.signature(entry.read_table).parameters:  # format 2 and later
            schema = json.loads((package / "input_schema.json").read_text(encoding="utf-8"))
            frame = entry.read_table(rows, schema)  # categoricals as text, as production reads
        else:
            frame = entry.read_table(rows)
        # No policy given: the package's own default, which is what production applied.
        policy = () if out_of_range is None else (out_of_range,)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", entry.OutOfRangeWarning)
            predictions = entry.predict(package, frame, *policy)
    except entry.InputError as exc:  # the package's own class: re-raised as ours, same message
        raise InputError(str(exc)) from None
    return predictions, [str(w.message) for w in caught]


def _replay(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.audit_anchor import require_anchored
    from lifecycle_pipeline.package.runtime import InputError, load_manifest
    from lifecycle_pipeline.package.verify import opened
    from lifecycle_pipeline.replay import replay_package

    model = _model()
    log = _log(model)
    given = Path(args.package) if args.package else None
    if given is not None and not given.exists():  # named before the instance is opened
        from lifecycle_pipeline.partitions import PathArgumentError

        raise PathArgumentError(
            f"--package {args.package!r} does not exist; give a package folder or its .zip."
        )
    with _instance() as instance:
        # Which package served is read from the log: never from one that does not verify
        # (a log cut short would call the served package "never promoted"), and nothing is
        # appended to it.
        require_anchored(instance, model, log, f"replay of {args.version}")
        chosen = replay_package(
            instance, model, log, args.version, _public_key(args), args.run, given, args.unrecorded
        )
    package, sha, origin = chosen.path, chosen.sha256, chosen.origin
    if not chosen.report.ok:
        print(chosen.report.render(), file=sys.stderr)
        print(f"replay refused: {package} ({origin}) does not verify.", file=sys.stderr)
        return 1
    rows = Path(args.input)
    with opened(package) as folder:
        manifest = load_manifest(folder)
        try:
            predictions, warned = score(folder, rows)
        except InputError as exc:
            print(f"{rows}: invalid input: {exc}", file=sys.stderr)
            return 2
    lineage = manifest["lineage"]
    digest = hashlib.sha256(rows.read_bytes()).hexdigest()
    log.append(
        "replay",
        {
            **chosen.to_dict(),  # which package: sha256, the run that made it, how it was chosen
            "input_sha256": digest,
            "rows": len(predictions),
            # A few rows are one decision under investigation; a bulk replay keeps its digest.
            "predictions": predictions.to_dict(orient="list") if len(predictions) <= 100 else None,
            "predictions_sha256": hashlib.sha256(
                predictions.to_csv(float_format="%.17g").encode()
            ).hexdigest(),
        },
        version=args.version,
    )
    for message in warned:
        print(f"warning: {message}", file=sys.stderr)
    predictions.to_csv(sys.stdout, float_format="%.17g", index_label="row")
    print(f"package   {package} (verified)")
    print(f"sha256    {sha} ({origin})")
    print(
        f"made by   run {chosen.run_id}"
        if chosen.run_id
        else "made by   UNRECORDED: no run of this instance made this package"
    )
    print(f"model     fingerprint {manifest['model']['fingerprint']}")
    print(f"data      md5 {lineage['data_md5']}")
    print(f"code      commit {lineage['code']['commit']} (dirty: {lineage['code']['dirty']})")
    print(f"config    {lineage['config_hash']}")
    return 0


def _governance_change(args: argparse.Namespace) -> int:
    """Exit 0: the change is in force in all three stores; 2: refused, nothing in force."""
    from lifecycle_pipeline import governance
    from lifecycle_pipeline.governance_commit import settle

    action = "promotion" if args.command == "promote" else "rollback"
    governance.check_approval(action, args.approver, args.reason)  # before anything is opened
    model = _model()
    log = _log(model)
    # Before the key and the package are consulted: a broken log is the reason to report.
    log.require_intact(f"promotion of {args.version}" if args.command == "promote" else "rollback")
    with _instance() as instance:
        # An earlier promotion or rollback a crash left unfinished is settled first, and said.
        for done in settle(instance, model, log):
            print(f"{model.name}: {done}")
        if args.command == "promote":
            change = governance.promote(
                instance, model, log, args.version, args.approver, args.reason, _public_key(args)
            )
        else:
            change = governance.rollback(
                instance, model, log, args.approver, args.reason, _public_key(args), to=args.to
            )
    print(f"{model.name}: {change.describe()}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.audit_anchor import require_anchored
    from lifecycle_pipeline.governance_log import status_lines

    if not _chosen():
        return _status_of_every_model()
    name, why = _chosen_name()
    log = _log(name)
    with _unverified_named(name, why), _instance() as instance:
        require_anchored(instance, name, log, "status")  # a cut log names the wrong version
    print(f"model     {name}")
    print("\n".join(status_lines(log)))
    _print_key_notice()
    return _unverified(name, why)


def _chosen_name() -> tuple[str, str | None]:
    """The model ``--model`` names, and why it is not verified when its declaration does not
    load (or no folder declares its log): such a model is still answered from its log, if the
    log verifies, and reported as not verified (exit 1) instead of refused as unknown."""
    from lifecycle_pipeline.declaration import DeclarationError

    try:
        return _model_name(), None
    except DeclarationError as exc:
        [(name, why)] = _unloaded_or(exc).items()
        return name, why


def _unloaded_or(exc: Exception) -> dict[str, str]:
    """``{name: why}`` for the chosen model when it is on disk but does not load; ``exc`` (its
    declaration error) when no model folder or audit log of that name exists."""
    import os

    from lifecycle_pipeline.coverage import chosen_unloaded

    unloaded = chosen_unloaded(os.environ.get("LIFECYCLE_MODEL", ""))
    if not unloaded:
        raise exc
    return unloaded


@contextmanager
def _unverified_named(name: str, why: str | None) -> Iterator[None]:
    """A refusal of a model that is not loaded also says that it is not loaded."""
    try:
        yield
    except Exception:
        _unverified(name, why)
        raise


def _unverified(name: str, why: str | None) -> int:
    """Exit 0 for a loaded model; for one that is not loaded, say so on stderr: exit 1."""
    from lifecycle_pipeline.coverage import not_verified

    if why is None:
        return 0
    print(f"\n{not_verified(name, why)}", file=sys.stderr)
    return 1


def _print_key_notice() -> None:
    """Development keys named on stderr: said every time, without changing the table or lines
    that scripts read from stdout."""
    from lifecycle_pipeline.resources.signing import development_keys_notice

    notice = development_keys_notice()
    if notice:
        print(f"keys      {notice}", file=sys.stderr)


def _status_of_every_model() -> int:
    """One row per model on disk (a model folder, or an audit log no folder declares); a model
    that is not loaded, or whose audit log does not verify, is a row saying so, its problem
    printed in full below the table (its log still held against its evidence), and the exit
    status is 1."""
    from datetime import UTC, datetime

    from lifecycle_pipeline.audit_anchor import verify_anchored
    from lifecycle_pipeline.coverage import not_verified, unloaded_models
    from lifecycle_pipeline.declaration import valid_model_names
    from lifecycle_pipeline.governance_log import serving_at
    from lifecycle_pipeline.lineage.audit import AuditLog
    from lifecycle_pipeline.lineage.query import render_table

    names, broken = valid_model_names()
    rows: dict[str, tuple[str, ...]] = {}
    problems: list[str] = []
    unloaded = unloaded_models(broken, names)
    for name, why in unloaded.items():
        shown = "BROKEN DECLARATION (not loaded)" if name in broken else "NOT DECLARED (log only)"
        rows[name] = (name, shown, "-", "-", "-")
        problems.append(not_verified(name, why))
    now = datetime.now(tz=UTC)
    with _instance() as instance:
        for name in unloaded:  # not loaded, but its log is still held against its evidence
            report = verify_anchored(instance, name, AuditLog.for_model(name))
            if not report.ok:
                problems.append(f"{name}: {report.render()}")
        for name in names:
            log = AuditLog.for_model(name)
            report = verify_anchored(instance, name, log)
            if not report.ok:
                rows[name] = (name, "AUDIT LOG DOES NOT VERIFY", "-", "-", "-")
                problems.append(report.render())
                continue
            current = serving_at(log, now)
            rows[name] = (
                (name, "-", "-", "-", "-")
                if current is None
                else (
                    name,
                    current.version,
                    current.time.isoformat(timespec="seconds"),
                    current.approver,
                    current.package_sha256[:12],
                )
            )
    if not rows:
        print("no models declared: `lifecycle new-model NAME --data FILE` declares one")
        return 0
    header = ("model", "serving", "since", "approved by", "package")
    print(render_table(header, [rows[name] for name in sorted(rows)]))
    _print_key_notice()
    for problem in problems:
        print(f"\n{problem}", file=sys.stderr)
    return 1 if problems else 0


def _history(args: argparse.Namespace) -> int:
    """Promotions and rollbacks (or who served at ``--at``), answered only from logs that
    verify against their evidence.

    With ``--model`` a log that does not verify refuses the command (exit 2), naming the
    problem and its fix. Without it every model on disk is covered: the others are answered,
    and each model whose log does not verify, or that is not loaded, is reported as not
    verified on stderr (exit 1) instead of being left out without a word.
    """
    from lifecycle_pipeline.audit_anchor import refusal, require_anchored, verify_anchored
    from lifecycle_pipeline.coverage import not_verified, unloaded_models
    from lifecycle_pipeline.declaration import valid_model_names
    from lifecycle_pipeline.governance_log import parse_time

    when = parse_time(args.at) if args.at else None  # a malformed time, before any file
    several = not _chosen()
    answered: list[str] = []
    unverified: list[str] = []
    if several:
        valid, broken = valid_model_names()
        unloaded = unloaded_models(broken, valid)
        with _instance() as instance:
            for name in sorted([*valid, *unloaded]):
                report = verify_anchored(instance, name, _log(name))
                if name in unloaded:  # answered from its log if that verifies, yet not verified
                    unverified.append(not_verified(name, unloaded[name]))
                if not report.ok:
                    unverified.append(refusal(f"history of {name}", name, _log(name), report))
                    continue
                answered.append(name)
    else:
        name, why = _chosen_name()
        with _unverified_named(name, why), _instance() as instance:
            require_anchored(instance, name, _log(name), "history")
        answered.append(name)
        if why is not None:
            unverified.append(not_verified(name, why))
    code = _answer_history(args, when, answered, several)
    for problem in unverified:
        print(f"\n{problem}", file=sys.stderr)
    return 1 if unverified else code


def _answer_history(
    args: argparse.Namespace, when: datetime | None, names: list[str], several: bool
) -> int:
    """Print the history of ``names``, whose logs were verified against their evidence."""
    from lifecycle_pipeline.governance_log import history, serving_at, to_json

    if when is not None:
        found = 0
        for name in names:
            change = serving_at(_log(name), when)
            if change is not None:
                found += 1
                print(f"{name}: at {when.isoformat()}: {change.describe()}")
        if not found:
            print(f"nothing was serving at {when.isoformat()}")
            return 1
        return 0
    changes = sorted(
        ((name, c) for name in names for c in history(_log(name))),
        key=lambda pair: pair[1].time,
    )
    if args.json:
        print(to_json([c for _, c in changes], [name for name, _ in changes]))
    else:
        lines = [f"{name}: {c.describe()}" if several else c.describe() for name, c in changes]
        print("\n".join(lines) or "no promotions yet")
    return 0


def _audit(args: argparse.Namespace) -> int:
    if args.action == "verify":
        from lifecycle_pipeline.coverage import unloaded_models
        from lifecycle_pipeline.declaration import load_every_model

        unloaded: dict[str, str] = {}
        if _chosen():
            models, unloaded = _chosen_model()
        else:
            models, broken = load_every_model()
            unloaded = unloaded_models(broken, [m.name for m in models])
        given = [Path(p) for p in args.checkpoint or []]
        if given and len(models) + len(unloaded) != 1:
            from lifecycle_pipeline.errors import SettingError

            raise SettingError("--checkpoint witnesses one model's log: name it with --model")
        key = Path(args.public_key) if args.public_key else None
        codes = [_verify_log(model.name, given, key) for model in models]
        codes += [_verify_log(name, given, key, why) for name, why in unloaded.items()]
        return max(codes, default=0)
    model = _model()
    log = _log(model)
    if args.action == "checkpoint":
        from lifecycle_pipeline.audit_checkpoint import write_checkpoint

        with _instance() as instance:  # only a log that agrees with its evidence is vouched for
            from lifecycle_pipeline.audit_anchor import require_anchored

            require_anchored(instance, model, log, "checkpoint")
        print(write_checkpoint(log, Path(args.output) if args.output else None))
        return 0
    if args.action == "sync":
        from lifecycle_pipeline.governance import sync_runs

        with _instance() as instance:
            print(f"{sync_runs(instance, model.name, log)} run(s) added to {log.path}")
        return 0
    if args.action == "recover":
        return _recover(model, log)
    from lifecycle_pipeline.audit_export import export

    if not args.version:
        print("lifecycle audit export: --version is required", file=sys.stderr)
        return 2
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    output = Path(
        args.output or Settings.from_env().home / "exports" / f"{model.name}-{args.version}-{stamp}"
    )
    with _instance() as instance:
        page = export(instance, model, log, args.version, output)
    print(json.dumps({"bundle": str(output), "html": str(page)}))
    return 0


def _chosen_model() -> tuple[list[LoadedDeclaration], dict[str, str]]:
    """The model ``--model`` names, loaded; or, when it is on disk but does not load, no
    model and its name with why (verified as far as its log allows, reported not verified)."""
    from lifecycle_pipeline.declaration import DeclarationError

    try:
        return [_model()], {}
    except DeclarationError as exc:
        return [], _unloaded_or(exc)


def _recover(model: LoadedDeclaration, log: AuditLog) -> int:
    """A torn last record moved aside, then any promotion or rollback a crash left unfinished
    completed or withdrawn (``governance_commit``); each step said, with its record."""
    from lifecycle_pipeline.governance_commit import settle
    from lifecycle_pipeline.lineage.audit import AuditError

    done: list[str] = []
    report = log.verify()
    if any(": torn (no line end)" in problem for problem in report.problems):
        record = log.recover_torn()
        done.append(
            f"torn record moved to {record.data['kept_at']} ({record.data['torn_bytes']} bytes, "
            f"sha256 {record.data['torn_sha256']}); recorded as record {record.seq}"
        )
    elif not report.ok:
        log.recover_torn()  # refuses, naming the problems a crash does not cause
    with _instance() as instance:
        done += settle(instance, model, log)
        if not done:
            from lifecycle_pipeline.audit_anchor import verify_anchored

            report = verify_anchored(instance, model, log)
            if not report.ok:
                raise AuditError(
                    "refusing to recover: the log disagrees with its evidence, which a crash "
                    f"does not cause:\n{report.render()}"
                )
    if not done:
        raise AuditError(
            f"{log.path}: no torn record and no unfinished promotion or rollback to recover; "
            "nothing was changed"
        )
    print("\n".join(done))
    return 0


def _verify_log(
    model: str, checkpoints: list[Path], public_key: Path | None, unloaded: str | None = None
) -> int:
    """Verify one model's log against its evidence; ``unloaded`` says why the model itself is
    not loaded: its log is still verified as far as it can be, and the model is reported as
    not verified (exit 1), never skipped."""
    from lifecycle_pipeline.audit_anchor import verify_anchored
    from lifecycle_pipeline.audit_checkpoint import checkpoint_problems
    from lifecycle_pipeline.coverage import not_verified

    log = _log(model)
    try:
        with _instance() as instance:  # the log, the instance's copy of its changes, and
            report = verify_anchored(instance, model, log, checkpoints, public_key)  # witnesses
    except Exception as exc:  # a damaged instance must not hide what the log says
        report = log.verify()
        report.problems += checkpoint_problems(log, checkpoints, public_key)
        report.problems.append(
            f"the Dagster instance cannot be opened ({type(exc).__name__}: {exc}), so the "
            "log was not compared with the instance's copy of its governance changes"
        )
    if unloaded is not None:
        report.problems.insert(0, not_verified(model, unloaded))
    print(f"{model}: {report.render()}", file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def _runs(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.errors import SettingError
    from lifecycle_pipeline.recovery import recover

    if not args.run_ids and not args.all:
        raise SettingError("name the run ids to recover, or pass --all (SQLite instance only)")
    with _instance() as instance:
        outcome = recover(instance, args.run_ids or None)
    for run_id, done in outcome:
        print(f"{run_id}: {done}")
    if not outcome:
        print("no started runs in this instance")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.recovery import resume

    with _instance() as instance:
        result = resume(instance, args.run_id)
    print(f"run {result.run_id} re-executed {args.run_id} from its failure: "
          f"{'SUCCESS' if result.success else 'FAILURE'}")  # fmt: skip
    return 0 if result.success else 1


def register(commands: Any) -> None:
    """Add the on-call and governance subcommands to the `lifecycle` parser."""
    key_help = "trusted PEM public key (default: the configured one)"
    reproduce = commands.add_parser(
        "reproduce", help="Re-materialize a recorded version and compare its lineage tuple."
    )
    reproduce.add_argument("version", nargs="?", help="data version (partition key)")
    reproduce.add_argument("--run", help="the run that trained it (default: the newest)")
    reproduce.add_argument("--output", help="report JSON path (default: .lifecycle/reproductions)")
    worktrees = reproduce.add_mutually_exclusive_group()
    worktrees.add_argument(
        "--list-worktrees", action="store_true",
        help="list the worktrees of past commits: size on disk, last use",
    )  # fmt: skip
    worktrees.add_argument(
        "--prune", action="store_true", help="remove worktrees (all, or as --keep/--older-than say)"
    )
    reproduce.add_argument("--keep", type=int, metavar="N", help="--prune spares the N last used")
    reproduce.add_argument(
        "--older-than", metavar="AGE", help="--prune removes only those unused for AGE (7d, 12h)"
    )
    reproduce.set_defaults(handler=_reproduce)

    replay = commands.add_parser(
        "replay", help="Predict with a version's exact, verified package (one past decision)."
    )
    replay.add_argument("version", help="data version (partition key)")
    replay.add_argument("--input", required=True, help="CSV or Parquet rows to replay")
    replay.add_argument("--public-key", help=key_help)
    which = replay.add_mutually_exclusive_group()
    which.add_argument("--run", help="the package made in this run (default: the one that "
                       "served the version last, else its newest)")  # fmt: skip
    which.add_argument("--package", help="a package folder or .zip; it must verify and be "
                       "recorded in this instance for the version")  # fmt: skip
    replay.add_argument("--unrecorded", action="store_true", help="with --package: replay a "
                        "verified package this instance never recorded (said in the audit "
                        "record)")  # fmt: skip
    replay.set_defaults(handler=_replay)

    for name, text in (("promote", "Promote a version to production."),
                       ("rollback", "Roll production back.")):  # fmt: skip
        change = commands.add_parser(name, help=text)
        if name == "promote":
            change.add_argument("version", help="data version (partition key)")
        else:
            change.add_argument("--to", help="version to restore (default: the previous one)")
        change.add_argument("--approver", required=True, help="who approves (name or id)")
        change.add_argument("--reason", required=True, help="why, in words an auditor reads")
        change.add_argument("--public-key", help=key_help)
        change.set_defaults(handler=_governance_change)

    commands.add_parser(
        "status",
        help="Which version serves, since when, approved by whom (every model without --model).",
    ).set_defaults(handler=_status)
    history = commands.add_parser("history", help="Promotions and rollbacks, or who served at T.")
    history.add_argument("--at", help="ISO 8601 time: which version was serving then")
    history.add_argument("--json", action="store_true", help="machine-readable output")
    history.set_defaults(handler=_history)

    audit = commands.add_parser(
        "audit", help="Verify, sync, checkpoint, export or recover the audit trail."
    )
    audit.add_argument("action", choices=["verify", "sync", "checkpoint", "export", "recover"])
    audit.add_argument("--version", help="export: the data version to bundle")
    audit.add_argument(
        "--output",
        help="export: a new folder (default: .lifecycle/exports); checkpoint: the folder to "
        "write it to (default: checkpoints/<model> beside the log)",
    )
    audit.add_argument(
        "--checkpoint",
        action="append",
        help="verify: also hold the log against this signed checkpoint (e.g. one kept in your "
        "own store); repeatable",
    )
    audit.add_argument("--public-key", help="verify: the key checkpoints are signed with")
    audit.set_defaults(handler=_audit)

    runs = commands.add_parser("runs", help="Mark runs whose worker process died as failed.")
    runs.add_argument("action", choices=["recover"])
    runs.add_argument("run_ids", nargs="*", help="the runs to check (default with --all)")
    runs.add_argument("--all", action="store_true", help="every started run (SQLite only)")
    runs.set_defaults(handler=_runs)
    resume = commands.add_parser(
        "resume", help="Re-execute a failed (or dead-worker) run from its failure."
    )
    resume.add_argument("run_id")
    resume.set_defaults(handler=_resume)
