"""The `lifecycle` command."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from lifecycle_pipeline.settings import Settings


def _demo(args: argparse.Namespace) -> int:
    import dagster as dg

    from lifecycle_pipeline.demo import run_demo

    # Output(data_version=...) is marked beta; it is used on purpose for lineage.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    if not args.verbose:
        logging.getLogger("dagster").setLevel(logging.WARNING)
    rows = run_demo(Settings.from_env())
    return 0 if rows and all(r.verdict == "PASS" for r in rows) else 1


def _summary(args: argparse.Namespace) -> int:
    import dagster as dg

    from lifecycle_pipeline.demo import prepare_environment
    from lifecycle_pipeline.lineage.query import format_table, summarize

    prepare_environment(Settings.from_env())
    with dg.DagsterInstance.get() as instance:
        versions = instance.get_dynamic_partitions("data_versions")
        rows = [row for v in versions if (row := summarize(instance, v)) is not None]
    print(format_table(rows) if rows else "No materialized data versions yet: run `make demo`.")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lifecycle", description="Run and inspect the model lifecycle."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="Build the demo registry and materialize every data version."
    )
    demo.add_argument("--verbose", action="store_true", help="Show Dagster's step logs.")
    demo.set_defaults(handler=_demo)
    commands.add_parser(
        "summary", help="Print the recorded versions, metrics and gates."
    ).set_defaults(handler=_summary)
    commands.add_parser("registry", help="Build (or check) the demo data registry.").set_defaults(
        handler=_registry
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except Exception as exc:  # the CLI's boundary: one readable line, details with --verbose
        if getattr(args, "verbose", False):
            raise
        print(f"lifecycle {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
