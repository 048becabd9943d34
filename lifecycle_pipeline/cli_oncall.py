"""The instance-care commands of `lifecycle`: doctor and instance rebuild."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle_pipeline.settings import Settings

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import LoadedDeclaration


def _home() -> Path:
    """DAGSTER_HOME as every other command resolves it, but never created: looking at an
    instance must not make one."""
    from lifecycle_pipeline.errors import SettingError

    home = Path(os.environ.get("DAGSTER_HOME") or Settings.from_env().dagster_home)
    if not home.is_dir():
        raise SettingError(
            f"no Dagster instance at {home} (DAGSTER_HOME); set DAGSTER_HOME to the instance's "
            "folder"
        )
    return home


def _models() -> list[LoadedDeclaration]:
    """The model named by ``--model``, else every declared model that loads."""
    from lifecycle_pipeline.declaration import current_declaration, load_every_model

    if os.environ.get("LIFECYCLE_MODEL"):
        return [current_declaration()]
    return load_every_model()[0]


def _unloaded(models: list[LoadedDeclaration]) -> dict[str, str]:
    """Without ``--model``: each model on disk that is not loaded (a declaration that does not
    load, a log no folder declares) and why; the doctor covers them too, never skips them."""
    from lifecycle_pipeline.coverage import unloaded_models
    from lifecycle_pipeline.declaration import valid_model_names

    if os.environ.get("LIFECYCLE_MODEL"):
        return {}
    _, broken = valid_model_names()
    return unloaded_models(broken, [m.name for m in models])


def _doctor(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.declaration import DeclarationError
    from lifecycle_pipeline.doctor import diagnose

    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    home = _home()
    try:
        models = _models()
        unloaded = _unloaded(models)
    except DeclarationError:  # --model names a model on disk that does not load: cover it
        from lifecycle_pipeline.coverage import chosen_unloaded

        models, unloaded = [], chosen_unloaded(os.environ.get("LIFECYCLE_MODEL", ""))
        if not unloaded:
            raise
    report = diagnose(home, models, unloaded)
    print(report.to_json() if args.json else f"instance {home}\n{report.render()}")
    return 0 if report.ok else 1


def _rebuild(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.rebuild import rebuild

    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    outcome = rebuild(_home(), _models())
    print(outcome.render())
    return 0


def register(commands: Any) -> None:
    """Add the instance-care subcommands to the `lifecycle` parser."""
    doctor = commands.add_parser(
        "doctor",
        help="Check the instance's files, the artifacts, the audit logs and the registry tags "
        "(read-only; exit 1 when a problem is found).",
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable report")
    doctor.set_defaults(handler=_doctor)
    instance = commands.add_parser("instance", help="Care for the Dagster instance itself.")
    actions = instance.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "rebuild",
        help="Rebuild the instance's storage from its event logs, the audit logs and the "
        "artifacts; the old files are moved aside, never deleted. Stop the webserver and the "
        "daemon first.",
    ).set_defaults(handler=_rebuild)
