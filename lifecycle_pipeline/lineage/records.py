"""Value objects passed between lifecycle stages and recorded as lineage.

Each stage returns one of these; the artifact store persists it and, on load, attaches the
``ArtifactRef`` of the exact materialization it came from, so a downstream stage can record
precisely which upstream bytes it consumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lifecycle_pipeline.lineage.fingerprint import ModelFingerprint


@dataclass(frozen=True)
class ArtifactRef:
    """Where one materialization's output lives, and the digest it must still have."""

    asset: str
    partition: str | None
    uri: str
    sha256: str
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "partition": self.partition,
            "uri": self.uri,
            "sha256": self.sha256,
            "run_id": self.run_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactRef:
        return cls(**{k: data[k] for k in ("asset", "partition", "uri", "sha256", "run_id")})


@dataclass(frozen=True)
class ResolvedVersion:
    """What a data-version key pointed at when it was read."""

    key: str
    registry: str
    path: str
    commit: str
    md5: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "registry": self.registry,
            "path": self.path,
            "commit": self.commit,
            "md5": self.md5,
            "size": self.size,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResolvedVersion:
        return cls(**{k: data[k] for k in ("key", "registry", "path", "commit", "md5", "size")})


@dataclass(frozen=True)
class GateVerdict:
    """One metric threshold and whether the evaluated model met it."""

    name: str
    metric: str
    value: float
    threshold: float
    comparison: str  # ">=" or "<="

    @property
    def passed(self) -> bool:
        if self.comparison == ">=":
            return self.value >= self.threshold
        return self.value <= self.threshold

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"Gate {self.name} {verdict}: {self.metric} = {self.value:.6g}, "
            f"required {self.comparison} {self.threshold:.6g}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "passed": self.passed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateVerdict:
        return cls(**{k: data[k] for k in ("name", "metric", "value", "threshold", "comparison")})


@dataclass(frozen=True)
class FileTree:
    """An artifact handed to people or to production, so stored as a folder of plain files.

    ``kind`` names what the files form (``documentation_bundle``, ``deployment_package``,
    ``drift_report``); ``entry`` is the file a person opens first (its path is recorded as
    metadata, so the UI can link to it); ``summary`` is not stored.
    """

    kind: str
    files: dict[str, bytes]
    entry: str | None = None
    summary: dict[str, Any] = field(default_factory=dict, compare=False)
    source: ArtifactRef | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DataSnapshot:
    frame: pd.DataFrame
    version: ResolvedVersion
    source: ArtifactRef | None = field(default=None, compare=False)


@dataclass(frozen=True)
class FeatureSet:
    train: pd.DataFrame
    test: pd.DataFrame
    feature_columns: tuple[str, ...]
    target: str
    seed: int
    test_size: float
    data_md5: str
    source: ArtifactRef | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TrainedModel:
    pipeline: Any
    golden_inputs: pd.DataFrame
    fingerprint: ModelFingerprint
    lineage: dict[str, Any]
    source: ArtifactRef | None = field(default=None, compare=False)
    # The pipeline's skops bytes, when already known: as training dumped it to check its types,
    # or as the artifact store holds it. The artifact and the package then carry those very
    # bytes instead of a fresh dump (skops stamps each dump's zip entries with the time, so a
    # re-dump is never byte-identical anyway, and each cost ~0.3 s for the demo's forest).
    skops: bytes | None = field(default=None, compare=False, repr=False)

    def skops_bytes(self) -> bytes:
        """The skops serialization of ``pipeline`` (dumped now only if none is known)."""
        if self.skops is not None:
            return self.skops
        from lifecycle_pipeline.resources.codecs import dump_model

        return dump_model(self.pipeline)


@dataclass(frozen=True)
class EvaluationReport:
    metrics: dict[str, float]
    slices: dict[str, dict[str, Any]]
    gates: tuple[GateVerdict, ...]
    predictions: pd.DataFrame
    model_fingerprint: str
    decision_threshold: float | None  # binary tasks only
    source: ArtifactRef | None = field(default=None, compare=False)
