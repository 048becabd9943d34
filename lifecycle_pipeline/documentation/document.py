"""A small document model shared by the Markdown and HTML renderings and the JSON record.

Every row carries either a value with its provenance (a materialization, the model's
declaration or the spec file) or a gap that says what is missing, so no rendering can show a
value without its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lifecycle_pipeline.documentation.spec import OPTIONAL_FIELDS, unfilled
from lifecycle_pipeline.lineage.trace import Materialization


@dataclass(frozen=True)
class Row:
    label: str
    value: Any = None
    source: dict[str, Any] | None = None
    cite: str = ""
    gap: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "source": self.source,
            "gap": self.gap,
        }


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    cite: str = ""
    source: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "rows": [list(r) for r in self.rows],
            "source": self.source,
        }


@dataclass(frozen=True)
class Section:
    title: str
    rows: tuple[Row, ...] = ()
    tables: tuple[Table, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "rows": [r.to_dict() for r in self.rows],
            "tables": [t.to_dict() for t in self.tables],
        }


@dataclass(frozen=True)
class Document:
    title: str
    reference: str
    sections: tuple[Section, ...] = field(default_factory=tuple)

    def gaps(self) -> list[str]:
        return [
            f"{self.title} / {s.title} / {r.label}: {r.gap}"
            for s in self.sections
            for r in s.rows
            if r.gap
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "reference": self.reference,
            "sections": [s.to_dict() for s in self.sections],
        }


def fact(label: str, value: Any, origin: Materialization) -> Row:
    """A machine-filled value, stamped with the materialization it was read from."""
    if value is None:
        return Row(label, gap=f"not recorded by {origin.cite()}")
    return Row(label, value=value, source=origin.source(), cite=origin.cite())


def human(label: str, value: Any, spec_path: str, dotted: str) -> Row:
    """A reviewed, human-written value from the spec file, or a gap naming the field; an
    optional field left out is said to be optional, because a gap asks for work nobody owes."""
    if value is None or (isinstance(value, str | list) and not value):
        if dotted in OPTIONAL_FIELDS:
            return Row(
                label,
                value=f"not given (optional field `{dotted}` of {spec_path})",
                source={"spec": spec_path, "field": dotted},
                cite=f"spec `{dotted}` (optional)",
            )
        return Row(label, gap=f"required field `{dotted}` is missing from {spec_path}")
    return Row(
        label, value=value, source={"spec": spec_path, "field": dotted}, cite=f"spec `{dotted}`"
    )


@dataclass(frozen=True)
class DeclarationSource:
    """The model declaration a value was read from: its file and content digest.

    The digest is cited with every declared value because the same path can hold different
    declarations over time; the digest says which one the documents used.
    """

    path: str
    sha256: str

    def source(self, field: str) -> dict[str, Any]:
        return {"declaration": self.path, "sha256": self.sha256, "field": field}

    def cite(self, field: str) -> str:
        return f"declaration `{field}`"


def declared(label: str, value: Any, origin: DeclarationSource, field: str) -> Row:
    """A value from the model's declaration, or a gap naming the field that is not set."""
    if unfilled(value):
        return Row(label, gap=f"`{field}` is not set in the declaration {origin.path}")
    return Row(label, value=value, source=origin.source(field), cite=origin.cite(field))


def declared_table(
    columns: tuple[str, ...], rows: list[tuple[Any, ...]], origin: DeclarationSource, field: str
) -> Table:
    return Table(
        columns=columns,
        rows=tuple(rows),
        cite=f"{origin.cite(field)} ({origin.path}, sha256 {origin.sha256[:12]})",
        source=origin.source(field),
    )


def gap(label: str, reason: str) -> Row:
    return Row(label, gap=reason)


def table(columns: tuple[str, ...], rows: list[tuple[Any, ...]], origin: Materialization) -> Table:
    return Table(columns=columns, rows=tuple(rows), cite=origin.cite(), source=origin.source())
