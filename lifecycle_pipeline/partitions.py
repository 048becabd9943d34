"""One partition per data version; the key is the registry's tag for that version."""

from __future__ import annotations

import re

import dagster as dg

from lifecycle_pipeline.errors import LifecycleError

DATA_VERSIONS = dg.DynamicPartitionsDefinition(name="data_versions")
PRODUCTION_BATCHES = dg.DynamicPartitionsDefinition(name="production_batches")

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


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
