"""Render documents to Markdown (shown in the Dagster UI) and HTML (a standalone file)."""

from __future__ import annotations

import json
from typing import Any

import jinja2

from lifecycle_pipeline.documentation.document import DeclarationSource, Document

# An undefined value (a metric with no positives in a slice, a field not recorded): a reader
# sees "n/a", never Python's ``None``.
UNDEFINED = "n/a"


def card_heading(model: str, partition: str | None, version_id: object) -> str:
    """The bundle's heading; a partition named after its model (``diabetes-v1``, the tags
    `new-model` proposes) already says which model, so the name is not repeated."""
    named = partition if (partition or "").startswith(f"{model}-") else f"{model} {partition}"
    return f"{named} / model {version_id}"


def _text(value: Any) -> str:
    if value is None:
        return UNDEFINED
    if isinstance(value, list):
        return " · ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return f"{value:.6g}"
    return " ".join(str(value).split())


def _cell(value: Any) -> str:
    """One Markdown table cell: single line, pipes escaped."""
    return _text(value).replace("|", "\\|")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lifecycle_pipeline", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
    )
    env.filters["cell"] = _cell
    env.filters["text"] = _text
    return env


def markdown(document: Document, heading: str) -> str:
    """Markdown is built directly: table syntax is line-sensitive, which templates obscure."""
    out = [
        f"# {document.title}: {heading}",
        "",
        f"_Structure: {document.reference}. Each value cites the materialization "
        "(asset@partition, run), the model declaration's field or the spec field it comes from; "
        "**GAP** marks what nobody has recorded yet._",
    ]
    for section in document.sections:
        out += ["", f"## {section.title}"]
        if section.rows:
            out += ["", "| Field | Value | Source |", "|---|---|---|"]
            for row in section.rows:
                value = f"**GAP**: {_cell(row.gap)}" if row.gap else _cell(row.value)
                out.append(f"| {_cell(row.label)} | {value} | {_cell(row.cite)} |")
        for tab in section.tables:
            out += ["", "| " + " | ".join(tab.columns) + " |", "|" + "---|" * len(tab.columns)]
            out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in tab.rows]
            out += ["", f"_Source: {tab.cite}_"]
    return "\n".join(out) + "\n"


def html(
    documents: list[Document],
    heading: str,
    spec_path: str,
    spec_sha256: str,
    gaps: list[str],
    declaration: DeclarationSource,
) -> str:
    """One standalone page; its header names the declaration and spec the wording came from."""
    return (
        _environment()
        .get_template("bundle.html.j2")
        .render(
            documents=documents,
            heading=heading,
            spec_path=spec_path,
            spec_sha256=spec_sha256,
            declaration_path=declaration.path,
            declaration_sha256=declaration.sha256,
            gaps=gaps,
        )
    )
