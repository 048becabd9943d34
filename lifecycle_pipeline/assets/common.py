"""What every lifecycle asset shares: ownership, IO manager, code versions, lineage metadata."""

from __future__ import annotations

import hashlib
import inspect
from types import ModuleType
from typing import TYPE_CHECKING, Any

import dagster as dg

from lifecycle_pipeline.lineage.records import ArtifactRef

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import LoadedDeclaration

OWNERS = ["team:ml-platform"]
IO_MANAGER_KEY = "artifact_store"


def code_version(*modules: ModuleType, declaration: LoadedDeclaration | None = None) -> str:
    """Digest of the source of the modules an asset's logic and default config live in, and of
    the model's declaration.

    Dagster compares it with the code version of the last materialization, so the UI marks
    an asset stale exactly when its code, its configuration defaults or the declaration
    (contract, estimator, gates) changed.
    """
    digest = hashlib.sha256()
    if declaration is not None:
        digest.update(b"declaration\0" + declaration.sha256.encode())
    for module in sorted(modules, key=lambda m: m.__name__):
        digest.update(module.__name__.encode() + b"\0" + inspect.getsource(module).encode())
    return digest.hexdigest()[:16]


def upstream_metadata(*refs: ArtifactRef | None) -> dict[str, Any]:
    """Record exactly which upstream artifact (URI, digest, run) a stage consumed."""
    metadata: dict[str, Any] = {}
    for ref in refs:
        if ref is None:
            continue
        metadata[f"upstream/{ref.asset}"] = dg.MetadataValue.json(ref.to_dict())
    return metadata


def setting(value: object) -> dg.MetadataValue:
    """A configured constant (seed, thread count, threshold, sample cap) as metadata.

    Recorded as text: the Dagster UI plots every numeric metadata key across materializations,
    and a plot of a value that never changes buries the ones that mean something (metrics,
    drift shares, row counts). Readers parse it back with ``int()`` / ``float()``.
    """
    return dg.MetadataValue.text(str(value))
