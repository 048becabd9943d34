"""`lifecycle reproduce` as a job, for on-call staff who live in the Dagster UI.

``<model>_reproduce`` takes a version (and optionally the run id of one training of it) from
the Launchpad, rebuilds that version exactly as the CLI does (``reproduce.reproduce``), and
leaves the same evidence: the JSON report and the ``reproduction`` audit record
(``reproduce.record_reproduction``). The run itself answers the question: its output carries
the recorded-vs-reproduced table and the verdict, the model's ``trained_model`` partition gets
an observation with the verdict, and a run that is not ``identical`` fails, so red means "not
the model that shipped".
"""

# No `from __future__ import annotations`: Dagster reads the op's config class from its
# annotation at definition time, and a postponed (string) annotation does not resolve there.
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.governance import MODEL_TAG
from lifecycle_pipeline.lineage.audit import AuditLog
from lifecycle_pipeline.partitions import (
    PartitionKeyError,
    RunIdError,
    validate_partition_key,
    validate_run_id,
)
from lifecycle_pipeline.reproduce import (
    ReproduceError,
    ReproductionReport,
    record_reproduction,
    reproduce,
)


class ReproduceConfig(dg.Config):
    """What on-call types into the Launchpad: one line, ``version: data-v1``."""

    version: str = Field(
        description="The data version (partition key, e.g. data-v1) whose trained model to "
        "rebuild and compare with its record; its newest training unless run_id is given.",
    )
    run_id: str | None = Field(
        default=None,
        description="The run id of an older training of that version (the run that "
        "materialized its trained_model); default: the newest.",
    )


def element_table(report: ReproductionReport) -> dg.TableMetadataValue:
    """Every lineage element, recorded vs reproduced, in full (the CLI shortens digests)."""
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "element": e.name,
                    "recorded": str(e.recorded),
                    "reproduced": str(e.reproduced),
                    "same": "yes" if e.same else "NO" if e.known else "unknown",
                }
            )
            for e in report.elements
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("element", "string"),
                dg.TableColumn("recorded", "string", description="in the version's record"),
                dg.TableColumn("reproduced", "string", description="by this reproduction"),
                dg.TableColumn(
                    "same", "string", description="unknown: a side was never identified"
                ),
            ]
        ),
    )


def reproduction_metadata(report: ReproductionReport, path: Path) -> dict[str, Any]:
    """What the run page shows; the same keys on success and on failure (``notes`` only when
    the report has some, e.g. that the version's registry tag moved since training)."""
    notes = report.notes
    return {
        "verdict": dg.MetadataValue.text(report.verdict),
        "identical": dg.MetadataValue.bool(report.identical),
        "elements": element_table(report),
        **({"notes": dg.MetadataValue.text("\n".join(map(str, notes)))} if notes else {}),
        "version": dg.MetadataValue.text(report.version),
        "recorded_run": dg.MetadataValue.dagster_run(report.run_id),
        "method": dg.MetadataValue.text(report.method),
        "commit": dg.MetadataValue.text(report.commit),
        "report": dg.MetadataValue.path(str(path)),
        **{f"seconds/{k}": dg.MetadataValue.float(float(v)) for k, v in report.seconds.items()},
    }


def verdict_output(
    model: LoadedDeclaration, report: ReproductionReport, path: Path
) -> dg.Output[None]:
    """The step's output for an identical reproduction; any other verdict fails the step with
    the same metadata, so that a green run is a proof and nothing less is."""
    metadata = reproduction_metadata(report, path)
    if not report.identical:
        raise dg.Failure(
            description=f"{model.name} {report.version} (run {report.run_id}) is not provably "
            f"the model that shipped: {report.verdict}. The table lists every element "
            f"recorded vs reproduced; the report is {path}.",
            metadata=metadata,
            allow_retries=False,  # the same inputs give the same verdict
        )
    return dg.Output(None, metadata=metadata)


def build_reproduce_job(model: LoadedDeclaration) -> dg.JobDefinition:
    """``<model>_reproduce``: one op, its config lifted to the top of the run config."""
    op_name = model.op("reproduce")

    @dg.op(
        name=op_name,
        out=dg.Out(dg.Nothing),
        tags={MODEL_TAG: model.name},
        description=f"Rebuild one recorded version of {model.name} and compare every lineage "
        "element with its record.",
    )
    def reproduce_version(
        context: dg.OpExecutionContext, config: ReproduceConfig
    ) -> dg.Output[None]:
        try:
            version = validate_partition_key(config.version)
            run_id = validate_run_id(config.run_id, context.instance) if config.run_id else None
            report = reproduce(context.instance, model, version, run_id)
        except (PartitionKeyError, RunIdError, ReproduceError) as exc:
            # A refusal (bad input, nothing recorded, code no commit holds) is not a defect:
            # the run page says what is missing, without a traceback to read through.
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        path = record_reproduction(report, AuditLog.for_model(model.name))
        context.log.info(report.render())
        context.log_event(
            dg.AssetObservation(
                asset_key=model.key("trained_model"),
                partition=report.version,
                metadata={
                    "reproduction/verdict": report.verdict,
                    "reproduction/recorded_run": dg.MetadataValue.dagster_run(report.run_id),
                    "reproduction/report": dg.MetadataValue.path(str(path)),
                },
            )
        )
        return verdict_output(model, report, path)

    # The run config is the step's config itself: on-call types `version: ...` at the top
    # level of the Launchpad, not under `ops: <op>: config:`.
    lifted = dg.ConfigMapping(
        config_fn=lambda values: {"ops": {op_name: {"config": dict(values)}}},
        config_schema=ReproduceConfig.to_config_schema(),
    )

    @dg.job(
        name=model.scoped("reproduce"),
        config=lifted,
        tags={MODEL_TAG: model.name},
        description=f"Is this {model.name} version exactly the model that shipped? Rebuilds "
        "it at its recorded commit and lock and compares data md5, code, config and "
        "fingerprints with the record (as `lifecycle reproduce`). A red run means not the "
        "model that shipped (or not provably). Launch with `version: <data version>`.",
    )
    def reproduce_job() -> None:
        reproduce_version()

    return reproduce_job
