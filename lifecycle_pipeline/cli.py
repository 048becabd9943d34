"""The `lifecycle` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle_pipeline.errors import EXIT_CODES_HELP, ExitCode, SettingError
from lifecycle_pipeline.settings import Settings

if TYPE_CHECKING:
    import dagster as dg

    from lifecycle_pipeline.monitoring.drift import DriftSummary
    from lifecycle_pipeline.resources.keys import Keyring
    from lifecycle_pipeline.resources.registry import DataRegistry


def _demo(args: argparse.Namespace) -> int:
    import dagster as dg

    from lifecycle_pipeline.demo import run_demo

    # Output(data_version=...) is marked beta; it is used on purpose for lineage.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    if not args.verbose:
        logging.getLogger("dagster").setLevel(logging.WARNING)
    if args.model is None:  # every declared model, each in its own process, one instance
        return _demo_every_model(args)
    print(f"== model {args.model} ==")
    rows = run_demo(Settings.from_env())
    return 0 if rows and all(r.verdict == "PASS" for r in rows) else 1


def _demo_every_model(args: argparse.Namespace) -> int:
    """Each model in a process of its own (memory is returned between models), all into the
    one Dagster instance that `make ui` then shows."""
    import subprocess

    from lifecycle_pipeline.declaration import declared_models

    worst = 0
    for name in declared_models():
        command = [sys.executable, "-m", "lifecycle_pipeline.cli", "--model", name, "demo"]
        done = subprocess.run(
            [*command, *(["--verbose"] if args.verbose else [])], env=dict(os.environ), check=False
        )
        worst = max(worst, done.returncode)
    return worst


def _summary(args: argparse.Namespace) -> int:
    import dagster as dg

    from lifecycle_pipeline.declaration import current_declaration, load_every_model
    from lifecycle_pipeline.demo import drift_table, gated_metrics, prepare_environment
    from lifecycle_pipeline.lineage.query import format_table, summarize

    prepare_environment(Settings.from_env())
    models = [current_declaration()] if args.model else load_every_model()[0]
    with dg.DagsterInstance.get() as instance:
        for model in models:
            versions = instance.get_dynamic_partitions(model.scoped("data_versions"))
            rows = [
                row for v in versions if (row := summarize(instance, model.name, v)) is not None
            ]
            batches = instance.get_dynamic_partitions(model.scoped("production_batches"))
            drift = drift_table(instance, model, list(batches)) if batches else ""
            print(f"== {model.name} ==")
            print(
                format_table(rows, gated_metrics(model))
                if rows
                else "No materialized data versions yet: run `make demo`."
            )
            if drift:
                print(f"\n{drift}")
            print()
    return 0


def _registry(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lifecycle_pipeline.registry_demo import build_demo_registry

    settings = Settings.from_env()
    tags = build_demo_registry(
        settings.sample_data_dir, Path(settings.registry_url), Path(settings.registry_remote_url)
    )
    for tag, md5 in tags.items():
        print(f"{tag}\t{md5}")
    return 0


def _public_key(args: argparse.Namespace) -> Keyring:
    """``--public-key`` trusted alone, else the deployment's trusted keys (its keyring)."""
    from lifecycle_pipeline.resources.signing import trusted_keys

    return trusted_keys(args.public_key)


def _package_path(reference: str) -> Path:
    """A package folder or archive path, or a data version meaning its latest package."""
    path = Path(reference)
    if path.exists():
        return path
    import dagster as dg

    from lifecycle_pipeline.declaration import current_declaration
    from lifecycle_pipeline.demo import prepare_environment
    from lifecycle_pipeline.lineage.query import latest, metadata_values

    _version(reference)
    model = current_declaration()
    prepare_environment(Settings.from_env())
    with dg.DagsterInstance.get() as instance:
        record = latest(instance, model.key("deployment_package"), reference)
    if record is None:
        raise SettingError(_NO_PACKAGE.format(reference=reference))
    return Path(str(metadata_values(record)["artifact/uri"]))


_NO_PACKAGE = (
    "{reference!r} is neither a package path nor a data version with a deployment_package "
    "materialization in this instance."
)


def _version(reference: str) -> str:
    from lifecycle_pipeline.partitions import validate_partition_key

    return validate_partition_key(reference)


def _verify(args: argparse.Namespace) -> int:
    """A path is verified as given; a data version as the artifact store holds its package."""
    from lifecycle_pipeline.package.verify import verify_package, verify_stored_package

    if Path(args.package).exists():
        report = verify_package(Path(args.package), _public_key(args))
    else:
        import dagster as dg

        from lifecycle_pipeline.declaration import current_declaration
        from lifecycle_pipeline.demo import prepare_environment
        from lifecycle_pipeline.resources.artifact_store import (
            ArtifactStore,
            recorded_materialization,
        )

        model = current_declaration()
        prepare_environment(Settings.from_env())
        with dg.DagsterInstance.get() as instance:
            record = recorded_materialization(
                instance, model.key("deployment_package"), _version(args.package), None
            )
        if record is None:
            raise SettingError(_NO_PACKAGE.format(reference=args.package))
        report = verify_stored_package(ArtifactStore(), record, _public_key(args))
    print(report.render(), file=sys.stdout if report.ok else sys.stderr)
    return ExitCode.OK if report.ok else ExitCode.NEGATIVE


def _predict(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.cli_governance import score
    from lifecycle_pipeline.package.runtime import InputError
    from lifecycle_pipeline.package.verify import opened, verify_package

    package = _package_path(args.package)
    report = verify_package(package, _public_key(args))
    if not report.ok:
        print(report.render(), file=sys.stderr)
        return ExitCode.NEGATIVE
    with opened(package) as folder:
        # Scored by the package's own entry point: the code production runs.
        try:
            predictions, warned = score(folder, Path(args.input), args.out_of_range)
        except InputError as exc:
            print(f"{args.input}: invalid input: {exc}", file=sys.stderr)
            return ExitCode.REFUSED
    for message in warned:
        print(f"warning: {message}", file=sys.stderr)
    if args.output:
        from lifecycle_pipeline.package.runtime import write_table

        write_table(predictions, Path(args.output))
        print(f"{len(predictions)} prediction(s) written to {args.output}")
    else:
        predictions.to_csv(sys.stdout, float_format="%.17g", index_label="row")
    return 0


def _drift(args: argparse.Namespace) -> int:
    """A registry batch is materialized (and recorded); a file is checked ad hoc."""
    import dagster as dg

    from lifecycle_pipeline.demo import (
        QUIET,
        add_missing_partitions,
        failed_on_input,
        failure_summary,
        prepare_environment,
    )

    if args.batch is None:
        raise SettingError(
            "lifecycle drift: give --batch BATCH (a registry tag or a local file) to check a "
            "batch, or the action `calibrate` to calibrate the thresholds."
        )
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    prepare_environment(Settings.from_env())
    path = Path(args.batch)
    with dg.DagsterInstance.get() as instance:
        if path.exists():
            summary, location = _adhoc_drift(instance, path, args.version)
            print(summary.describe())
            print(f"report: {location}/report.html (ad hoc: not recorded in the Dagster instance)")
            return 0
        from lifecycle_pipeline.declaration import current_declaration
        from lifecycle_pipeline.definitions import build_definitions
        from lifecycle_pipeline.lineage.query import latest, metadata_values
        from lifecycle_pipeline.partitions import validate_partition_key

        model = current_declaration()
        batch = validate_partition_key(args.batch)
        registry = current_registry()
        registry.resolve(batch, registry.batch_path.format(key=batch))  # fails clearly if absent
        add_missing_partitions(instance, [batch], model.scoped("production_batches"))
        config: dict[str, object] = dict(QUIET)
        if args.version:
            reference = {"config": {"reference_version": args.version}}
            config["ops"] = {model.op("drift_monitor"): reference}
        job = build_definitions(model=model).resolve_job_def(model.scoped("drift"))
        result = job.execute_in_process(
            partition_key=batch, instance=instance, run_config=config, raise_on_error=False
        )
        if not result.success:
            print(f"drift monitor failed for {batch}:\n{failure_summary(result)}", file=sys.stderr)
            return ExitCode.REFUSED if failed_on_input(result) else ExitCode.INTERNAL
        meta = metadata_values(latest(instance, model.key("drift_monitor"), batch))
    check = [e for e in result.get_asset_check_evaluations() if e.check_name == "drift_share"]
    print(check[0].description if check else meta["drift/verdict"])
    print(f"report: {meta['artifact/entry']}")
    return 0


def _materialize(args: argparse.Namespace) -> int:
    """A data version by hand, without the UI or Python: the sensor's two steps (add the
    registry tag as a partition, run the model's lifecycle job for it) in this process."""
    import dagster as dg

    from lifecycle_pipeline.declaration import current_declaration
    from lifecycle_pipeline.definitions import build_definitions
    from lifecycle_pipeline.demo import (
        add_missing_partitions,
        failed_on_gates,
        failed_on_input,
        failure_summary,
        materialize_version,
        prepare_environment,
    )

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    if not args.verbose:
        logging.getLogger("dagster").setLevel(logging.WARNING)
    model = current_declaration()
    version = _version(args.version)
    registry = current_registry()
    versions = registry.versions()
    if version not in versions:
        raise SettingError(
            f"{version!r} is not a data version of model {model.name}: no tag of that name "
            f"matches data.versions {registry.version_pattern!r} in registry "
            f"{registry.resolved_url()!r} (tags that match: {', '.join(versions) or 'none'}). "
            f"Publish it first (dvc add, git commit, git tag {version}), or check the name."
        )
    prepare_environment(Settings.from_env())
    with dg.DagsterInstance.get() as instance:
        added = add_missing_partitions(instance, [version], model.scoped("data_versions"))
        print(f"{model.name}: partition {version} {'added' if added else 'already known'}")
        defs = build_definitions(model=model)
        reason = f"by hand: lifecycle materialize {version}"
        result = materialize_version(instance, defs, model, version, reason)
    if not result.success:
        print(
            f"{model.name} {version}: FAILED (run {result.run_id})\n{failure_summary(result)}",
            file=sys.stderr,
        )
        if failed_on_gates(result):  # judged and found wanting: a verdict, like `verify`'s
            return ExitCode.NEGATIVE
        return ExitCode.REFUSED if failed_on_input(result) else ExitCode.INTERNAL
    print(f"{model.name} {version}: success (run {result.run_id})")
    print(
        f"next: lifecycle summary --model {model.name}   (metrics and gate verdicts)\n"
        f"      lifecycle promote {version} --model {model.name} --approver NAME --reason TEXT"
    )
    return ExitCode.OK


def current_registry() -> DataRegistry:
    """The registry this process's declared model reads (never the bare defaults)."""
    from lifecycle_pipeline.declaration import current_declaration
    from lifecycle_pipeline.resources.registry import DataRegistry

    return DataRegistry.for_model(current_declaration())


def _adhoc_drift(
    instance: dg.DagsterInstance, path: Path, version: str | None
) -> tuple[DriftSummary, str]:
    import hashlib

    from lifecycle_pipeline.assets.monitoring import judge_batch, load_stage, reference_version
    from lifecycle_pipeline.declaration import current_declaration
    from lifecycle_pipeline.lineage.records import FileTree
    from lifecycle_pipeline.resources.artifact_store import ArtifactStore

    raw = path.read_bytes()
    md5 = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    store, registry, declaration = ArtifactStore(), current_registry(), current_declaration()
    chosen = reference_version(instance, declaration, registry, version)
    features, _ = load_stage(instance, store, declaration.key("features"), chosen)
    model, _ = load_stage(instance, store, declaration.key("trained_model"), chosen)
    key = f"adhoc-{md5[:12]}"
    summary, files = judge_batch(
        declaration, raw, features, model, batch_key=key, reference_version=chosen,
        source=str(path), batch_md5=md5,
    )  # fmt: skip
    # Kept apart from drift_monitor's folder, which holds only recorded materializations.
    folder, _, _ = store.write_tree(
        f"{declaration.name}/drift_adhoc", key, FileTree("drift_report", files, "report.html")
    )
    return summary, folder


def _build_info(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.lineage.environment import write_build_info

    print(write_build_info(Settings.from_env().project_root, args.commit))
    return 0


_MODEL_HELP = (
    "the model to work on: a folder name under models/ (default: $LIFECYCLE_MODEL, else the "
    "only model declared; status, history, summary, check and demo without it cover every model)"
)


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser that also takes ``--model``: people write it after the command
    (`lifecycle check --model loans`) as often as before it. Its default is SUPPRESS so that a
    command line without it keeps the value given before the subcommand. Nested subcommands
    (``contract infer``, ``instance rebuild``) get it too: argparse makes them with the class
    of the parser they belong to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--model", default=argparse.SUPPRESS, help=_MODEL_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lifecycle",
        description="Run and inspect the model lifecycle.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help=_MODEL_HELP)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_CommandParser)
    demo = commands.add_parser(
        "demo", help="Build the demo registry and materialize every data version."
    )
    demo.add_argument("--verbose", action="store_true", help="Show Dagster's step logs.")
    demo.set_defaults(handler=_demo)
    commands.add_parser(
        "summary",
        help="Print the recorded versions, metrics and gates (every model without --model).",
    ).set_defaults(handler=_summary)
    commands.add_parser("registry", help="Build (or check) the demo data registry.").set_defaults(
        handler=_registry
    )
    verify = commands.add_parser("verify", help="Verify a deployment package (folder or .zip).")
    verify.add_argument("package", help="package folder or archive, or a data version (its latest)")
    verify.add_argument("--public-key", help="trusted PEM public key (default: the configured one)")
    verify.set_defaults(handler=_verify)
    predict = commands.add_parser(
        "predict", help="Validate input rows and score them with a package."
    )
    predict.add_argument(
        "package", help="package folder or archive, or a data version (its latest)"
    )
    predict.add_argument("input", help="CSV or Parquet with the package's input columns")
    predict.add_argument("--output", help="CSV or Parquet file (default: CSV on stdout)")
    predict.add_argument(
        "--out-of-range",
        choices=["flag", "reject"],
        default=None,
        help="values outside the training range but inside the declared domain: flag them in "
        "the output or reject the rows (default: the policy the package declares)",
    )
    predict.add_argument(
        "--public-key", help="trusted PEM public key (default: the configured one)"
    )
    predict.set_defaults(handler=_predict)
    drift = commands.add_parser(
        "drift",
        help="Check a production batch for drift (--batch), or calibrate the thresholds.",
        usage="lifecycle drift --batch BATCH [--version VERSION]\n"
        "       lifecycle drift calibrate [--batch-size N] [--false-alarm-rate R] "
        "[--data FILE | --version VERSION] ...",
    )
    drift.add_argument(
        "--batch",
        help="a batch tag in the registry, or a local file in the declared data format "
        "(required unless the action is calibrate)",
    )
    drift.add_argument("--version", help="reference data version (default: newest with a model)")
    drift.set_defaults(handler=_drift)
    from lifecycle_pipeline import cli_drift

    cli_drift.register(drift)
    materialize = commands.add_parser(
        "materialize",
        help="Add a registry tag as a data version (partition) and run the model's lifecycle "
        "job for it.",
    )
    materialize.add_argument("version", help="a tag matching the declaration's data.versions")
    materialize.add_argument("--verbose", action="store_true", help="Show Dagster's step logs.")
    materialize.set_defaults(handler=_materialize)
    info = commands.add_parser(
        "build-info", help="Record the commit an image is built from (container builds)."
    )
    info.add_argument("--commit", required=True, help="full commit id of the clean checkout")
    info.set_defaults(handler=_build_info)
    from lifecycle_pipeline import cli_governance, cli_keys, cli_model, cli_oncall

    cli_governance.register(commands)
    cli_keys.register(commands)
    cli_model.register(commands)
    cli_oncall.register(commands)
    return parser


def _refusal(exc: BaseException) -> bool:
    """Errors the user can act on. The package runtime's own classes are separate on purpose:
    predict.py ships without this library, so they cannot derive from LifecycleError."""
    from lifecycle_pipeline.errors import LifecycleError
    from lifecycle_pipeline.package.runtime import InputError, PackageError

    return isinstance(exc, LifecycleError | InputError | PackageError)


# Options that are folders, not files, where the command writes.
_FOLDER_OUTPUTS = {("audit", "export"), ("audit", "checkpoint")}


def validate_arguments(args: argparse.Namespace) -> None:
    """Every identifier and path the user gave, checked before the command opens or creates
    anything: a crafted run id or version never becomes a file name, a missing input is named
    before minutes of work, and an output that cannot be written fails first, not last."""
    from lifecycle_pipeline.partitions import (
        existing_file,
        validate_partition_key,
        validate_run_id,
        writable_target,
    )

    given = vars(args)
    for name in ("version", "to"):
        if given.get(name):
            validate_partition_key(given[name])
    for name in ("run", "run_id"):
        if given.get(name):
            validate_run_id(given[name])
    for run_id in given.get("run_ids") or []:
        validate_run_id(run_id)
    if given.get("public_key"):
        existing_file(given["public_key"], "--public-key")
    for checkpoint in given.get("checkpoint") or []:
        existing_file(checkpoint, "--checkpoint")
    if given.get("data"):
        existing_file(given["data"], "--data")
    if args.command == "check" and given.get("batch"):
        existing_file(given["batch"], "--batch")
    if args.command in ("replay", "predict") and given.get("input"):
        existing_file(given["input"], "input" if args.command == "predict" else "--input")
    if given.get("output"):
        action = given.get("action")
        folder = (args.command, action) in _FOLDER_OUTPUTS
        writable_target(given["output"], "--output", folder=folder)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # argparse exits 2 on a malformed command line
    chosen = os.environ.get("LIFECYCLE_MODEL")
    try:
        from lifecycle_pipeline.cli_model import select_model

        validate_arguments(args)
        select_model(args.model)
        return int(args.handler(args))
    except Exception as exc:  # the CLI's boundary: a refusal is one line, a defect a traceback
        if getattr(args, "verbose", False):
            raise
        from lifecycle_pipeline.doctor import as_damage

        exc = as_damage(exc) or exc  # a damaged instance file is named, not a traceback
        if _refusal(exc):
            print(f"lifecycle {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return ExitCode.REFUSED
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(
            f"lifecycle {args.command}: internal error ({type(exc).__name__}: {exc}); this is "
            "a defect, not a problem with your input: please report it with the traceback above.",
            file=sys.stderr,
        )
        return ExitCode.INTERNAL
    finally:  # an in-process caller (a test, a notebook) keeps the model it had chosen
        if chosen is None:
            os.environ.pop("LIFECYCLE_MODEL", None)
        else:
            os.environ["LIFECYCLE_MODEL"] = chosen


if __name__ == "__main__":
    sys.exit(main())
