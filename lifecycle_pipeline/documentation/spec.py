"""The human-written part of the documentation, read from a reviewed spec file.

Machine-knowable facts come from lineage; judgement (intended use, owners, ethics, data
handling, retraining protocol, risk) comes from people, through a YAML file under review in
the repository. A missing required field is reported as a gap in the bundle, never invented.
A field that is present but malformed is an error, because a typo should not silently become
a gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from lifecycle_pipeline.errors import LifecycleError

# Dotted paths of the fields a reviewer must fill before a model may be documented as complete.
REQUIRED_FIELDS: tuple[str, ...] = (
    "model.name",
    "model.owners",
    "model.license",
    "model.contact",
    "intended_use.primary_uses",
    "intended_use.primary_users",
    "intended_use.out_of_scope",
    "factors.relevant",
    "ethical_considerations",
    "caveats_and_recommendations",
    "data.motivation",
    "data.collection",
    "data.preprocessing",
    "data.anonymisation",
    "data.uses",
    "data.distribution",
    "data.maintenance",
    "governance.responsible_person",
    "governance.retraining_protocol",
    "governance.risk_notes",
    "governance.monitoring_plan",
)

# Fields the card shows when given and says are optional when not: they are never gaps.
OPTIONAL_FIELDS: tuple[str, ...] = (
    "model.citation",
    "factors.evaluation",
    "governance.approval_process",
)


class SpecError(LifecycleError, ValueError):
    """The spec file is missing, unreadable, or has a malformed field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Owner(_Strict):
    name: str
    role: str | None = None
    contact: str | None = None


class ModelSection(_Strict):
    name: str | None = None
    owners: list[Owner] | None = None
    license: str | None = None
    contact: str | None = None
    citation: str | None = None


class IntendedUse(_Strict):
    primary_uses: str | None = None
    primary_users: str | None = None
    out_of_scope: list[str] | None = None


class Factors(_Strict):
    relevant: list[str] | None = None
    evaluation: str | None = None


class DataSection(_Strict):
    motivation: str | None = None
    collection: str | None = None
    preprocessing: str | None = None
    anonymisation: str | None = None
    uses: str | None = None
    distribution: str | None = None
    maintenance: str | None = None


class Governance(_Strict):
    responsible_person: str | None = None
    retraining_protocol: str | None = None
    risk_notes: str | None = None
    monitoring_plan: str | None = None
    approval_process: str | None = None


class CardSpec(_Strict):
    model: ModelSection = ModelSection()
    intended_use: IntendedUse = IntendedUse()
    factors: Factors = Factors()
    ethical_considerations: str | None = None
    caveats_and_recommendations: str | None = None
    data: DataSection = DataSection()
    governance: Governance = Governance()


@dataclass(frozen=True)
class LoadedSpec:
    spec: CardSpec
    path: str
    sha256: str
    gaps: tuple[str, ...]

    def get(self, dotted: str) -> Any:
        value: Any = self.spec
        for part in dotted.split("."):
            value = getattr(value, part)
        return value


def unfilled(value: Any) -> bool:
    """Unset, empty, or still the scaffold's "TODO" placeholder: a gap either way."""
    if isinstance(value, str):
        return not value.strip() or value.strip().upper().startswith("TODO")
    return value is None or (isinstance(value, list) and not value)


def load_spec(path: Path, origin: str = "the spec path") -> LoadedSpec:
    """Read and validate the spec; missing required fields become gaps.

    A file that is not there is an error, not an empty spec: a mistyped path would otherwise
    document a model with every human field missing and nobody told why. ``origin`` names
    where the path came from (the run config, or ``documentation.spec`` in the model's
    declaration file), so the error says what to fix.
    """
    import hashlib

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(
            f"{path}: the model-card spec named by {origin} cannot be read "
            f"({exc.strerror or exc}). Fix the path, or copy the model_card.yaml of a model "
            "under models/ as a start; an empty file documents every human field as a gap."
        ) from exc
    try:
        data = yaml.safe_load(raw.decode("utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid UTF-8 YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping, got {type(data).__name__}.")
    try:
        spec = CardSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SpecError(f"{path}: {problems}. Fix the field or remove it to record a gap.") from exc
    loaded = LoadedSpec(spec=spec, path=str(path), sha256=hashlib.sha256(raw).hexdigest(), gaps=())
    gaps = tuple(f for f in REQUIRED_FIELDS if unfilled(loaded.get(f)))
    return LoadedSpec(spec=spec, path=str(path), sha256=loaded.sha256, gaps=gaps)
