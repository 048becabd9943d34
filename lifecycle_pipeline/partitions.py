"""Validation of the identifiers a user gives: partition keys (registry tags) and run ids.

Each model's partition sets are named after it (``LoadedDeclaration.data_versions``)."""

from __future__ import annotations

import re

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
