"""Lifecycle stage 5: the documentation bundle (model card, datasheet, technical documentation)
of one declared model, worded from its declaration and its reviewed model-card spec."""

import json
import sys
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from lifecycle_pipeline.assets.common import IO_MANAGER_KEY, OWNERS, code_version, upstream_metadata
from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.documentation import bundle as bundle_module
from lifecycle_pipeline.documentation import document as document_module
from lifecycle_pipeline.documentation import render
from lifecycle_pipeline.documentation import spec as spec_module
from lifecycle_pipeline.documentation import wording as wording_module
from lifecycle_pipeline.documentation.bundle import (
    Lineage,
    changes_since,
    datasheet,
    declaration_source,
    technical_documentation,
)
from lifecycle_pipeline.documentation.bundle import model_card as card_document
from lifecycle_pipeline.documentation.document import Document, Section
from lifecycle_pipeline.documentation.spec import LoadedSpec, load_spec
from lifecycle_pipeline.lineage.records import EvaluationReport, FileTree
from lifecycle_pipeline.lineage.trace import LineageError, in_run, previous_model_version, trace

REASON_TAG = "lifecycle/reason"
BUNDLE_KIND = "documentation_bundle"


class ModelCardConfig(dg.Config):
    """Where the reviewed, human-written fields of the documentation live.

    The default is the spec the model's declaration names, so each deployed model documents
    itself with its own spec; a run-config path replaces it for one run (e.g. to review a draft).
    """

    spec_path: str | None = Field(
        default=None,
        description="Spec YAML for this run; default: documentation.spec in the model's "
        "declaration (relative to the declaration file).",
    )

    def resolved_spec_path(self, model: LoadedDeclaration) -> tuple[Path, str]:
        """The spec path and where it was configured (named in errors)."""
        if self.spec_path:
            return Path(self.spec_path), f"run config ops.{model.op('model_card')}.config.spec_path"
        return model.spec_path(), f"documentation.spec in the declaration {model.path}"


def bundle_files(
    documents: list[Document],
    heading: str,
    spec: LoadedSpec,
    record: dict[str, Any],
    model: LoadedDeclaration,
) -> dict[str, bytes]:
    """The bundle's files: ``record`` plus the declaration, gaps and documents as JSON, Markdown
    and one HTML page.

    One place for the file set, so the benchmark's plain baseline builds exactly what the
    asset does.
    """
    gaps = [g for d in documents for g in d.gaps()]
    markdown = {d.title: render.markdown(d, heading) for d in documents}
    origin = declaration_source(model)
    record = {
        **record,
        "declaration": {"name": model.name, "path": origin.path, "sha256": model.sha256},
        "gaps": gaps,
        "documents": [d.to_dict() for d in documents],
    }
    return {
        "bundle.json": json.dumps(record, indent=1, sort_keys=True, default=str).encode(),
        "model_card.md": markdown["Model card"].encode(),
        "datasheet.md": markdown["Datasheet"].encode(),
        "technical_documentation.md": markdown["Technical documentation"].encode(),
        "documentation.html": render.html(
            documents, heading, spec.path, spec.sha256, gaps, origin
        ).encode(),
    }


def documents_for(
    lineage: Lineage, spec: LoadedSpec, changes: Section, model: LoadedDeclaration
) -> list[Document]:
    """The three documents of one model version, in bundle order."""
    return [
        card_document(lineage, spec, changes, model),
        datasheet(lineage, spec, model),
        technical_documentation(lineage, spec, changes, model),
    ]


def build_model_card(model: LoadedDeclaration) -> dg.AssetsDefinition:
    """The model_card asset of one declared model: its spec and wording come from ``model``."""

    @dg.asset(
        key=model.key("model_card"),
        ins=model.inputs("evaluation"),
        partitions_def=model.data_versions,
        group_name=model.name,
        kinds={"markdown", "html"},
        owners=OWNERS,
        tags={"lifecycle/stage": "5-documentation"},
        io_manager_key=IO_MANAGER_KEY,
        code_version=code_version(
            sys.modules[__name__],
            bundle_module,
            document_module,
            spec_module,
            render,
            wording_module,
            declaration=model,
        ),
        automation_condition=dg.AutomationCondition.eager(),
    )
    def model_card(
        context: dg.AssetExecutionContext, config: ModelCardConfig, evaluation: EvaluationReport
    ) -> dg.Output[FileTree]:
        """Model card, datasheet and technical documentation, generated from recorded lineage,
        the model's declaration and its reviewed spec."""
        spec = load_spec(*config.resolved_spec_path(model))
        instance = context.instance
        if evaluation.source is None:
            raise LineageError(
                "evaluation was not loaded from the artifact store; no lineage to document"
            )
        start = in_run(
            instance,
            model.key("evaluation"),
            evaluation.source.partition,
            evaluation.source.run_id,
            evaluation.source.sha256,
        )
        lineage = Lineage.from_trace(trace(instance, start))
        previous: Lineage | None = None
        untraceable: str | None = None
        earlier = previous_model_version(instance, start)
        if earlier is not None:
            try:
                previous = Lineage.from_trace(trace(instance, earlier))
            except (LineageError, KeyError) as exc:
                untraceable = (
                    f"the previous version {earlier.cite()} exists but its lineage cannot be "
                    f"traced ({type(exc).__name__}: {exc}); the comparison with it is missing"
                )
                context.log.warning(untraceable)
        training_run = instance.get_run_by_id(lineage.model.run_id)
        reason = training_run.tags.get(REASON_TAG) if training_run else None
        changes = changes_since(lineage, previous, reason, untraceable)
        documents = documents_for(lineage, spec, changes, model)
        version_id = lineage.model.metadata.get("model/version_id")
        heading = render.card_heading(model.name, lineage.model.partition, version_id)
        gaps = [g for d in documents for g in d.gaps()]
        files = bundle_files(
            documents,
            heading,
            spec,
            {
                "version": {
                    "partition": lineage.model.partition,
                    "model_fingerprint": lineage.model.metadata.get("model/fingerprint"),
                    "version_id": version_id,
                },
                "sources": {
                    name: m.source() | {"timestamp": m.when} for name, m in vars(lineage).items()
                },
                "spec": {"path": spec.path, "sha256": spec.sha256},
            },
            model,
        )
        return dg.Output(
            FileTree(kind=BUNDLE_KIND, files=files, entry="documentation.html"),
            metadata={
                "model_card": dg.MetadataValue.md(files["model_card.md"].decode()),
                "datasheet": dg.MetadataValue.md(files["datasheet.md"].decode()),
                "technical_documentation": dg.MetadataValue.md(
                    files["technical_documentation.md"].decode()
                ),
                "gaps": dg.MetadataValue.json(gaps),
                "gaps/count": dg.MetadataValue.int(len(gaps)),
                "spec/path": dg.MetadataValue.path(spec.path),
                "spec/sha256": dg.MetadataValue.text(spec.sha256),
                "declaration/sha256": dg.MetadataValue.text(model.sha256),
                "model/fingerprint": dg.MetadataValue.text(
                    str(lineage.model.metadata.get("model/fingerprint"))
                ),
                "previous_version": dg.MetadataValue.text(
                    previous.model.cite()
                    if previous
                    else f"untraceable: {earlier.cite()}"
                    if earlier
                    else "none: first model version"
                ),
                **upstream_metadata(evaluation.source),
            },
        )

    return model_card
