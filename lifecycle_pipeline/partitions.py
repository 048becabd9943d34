"""Validation of the identifiers a user gives: partition keys (registry tags), run ids and
the files a command reads or writes. Each is checked before anything is opened or created.

Each model's partition sets are named after it (``LoadedDeclaration.data_versions``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg

from lifecycle_pipeline.errors import LifecycleError

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class PartitionKeyError(LifecycleError, ValueError):
    """A partition key that cannot safely name a data version."""


def validate_partition_key(key: str) -> str:
    """Reject keys that could escape a folder or confuse git, before they touch any path.

    Keys become path segments in the artifact store and revisions in the registry, so only
    a conservative alphabet is allowed: letters, digits, '.', '_' and '-', starting with a
    letter or digit, at most 100 characters, and never '..'.
    """
    if not isinstance(key, str) or not _KEY.fullmatch(key) or ".." in key:
        raise PartitionKeyError(
            f"Invalid partition key {key!r} (a data version or batch tag): use 1-100 "
            "characters from [A-Za-z0-9._-], starting with a letter or digit and without '..' "
            "(for example 'data-v3' or 'batch-003')."
        )
    return key


class RunIdError(LifecycleError, ValueError):
    """A run id that is malformed or names no run of this instance."""


def validate_run_id(run_id: str, instance: dg.DagsterInstance | None = None) -> str:
    """A Dagster run id (a UUID), and with ``instance``, one that instance holds.

    Checked before any storage call: SQLite event-log storage keeps one database file per
    run, named by the id, and asking it for an unknown id creates that file (with a crafted
    id, outside the instance folder).
    """
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise RunIdError(
            f"Invalid run id {run_id!r}: a run id is a UUID such as "
            "'0f8e4b7a-52c1-4bd2-9d0e-2b5a1c3d4e5f' (the Dagster UI and `lifecycle history` "
            "show them)."
        )
    if instance is not None and not instance.has_run(run_id):
        raise RunIdError(f"No run {run_id} in this instance ({instance.root_directory}).")
    return run_id


class PathArgumentError(LifecycleError, ValueError):
    """A file a command was given to read is missing, or a place to write cannot be written."""


def existing_file(path: str, what: str) -> Path:
    """A file to read: it must exist and be a regular, readable file."""
    given = Path(path)
    if not given.is_file():
        state = "is a folder" if given.is_dir() else "does not exist"
        raise PathArgumentError(f"{what} {path!r} {state}; give the path of a readable file.")
    if not os.access(given, os.R_OK):
        raise PathArgumentError(f"{what} {path!r} is not readable by this user.")
    return given


def writable_target(path: str, what: str, folder: bool = False) -> Path:
    """A place to write: its nearest existing ancestor must be a writable folder (missing
    folders below it are created by the command), and a file target must not be a folder."""
    given = Path(path)
    if not folder and given.is_dir():
        raise PathArgumentError(f"{what} {path!r} is a folder; give a file path.")
    if folder and given.exists() and not given.is_dir():
        raise PathArgumentError(f"{what} {path!r} is a file; give a folder path.")
    ancestor = given.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise PathArgumentError(
            f"{what} {path!r} cannot be written: {ancestor} is not a writable folder."
        )
    return given
