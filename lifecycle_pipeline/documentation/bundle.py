"""Build the documentation bundle of one model version from recorded lineage, the model's
declaration and the spec.

Three documents: a model card (Mitchell et al. 2019), a datasheet for the data version
(Gebru et al. 2021), and a technical-documentation view shaped after EU AI Act Annex IV.
Every value is read from a materialization, from the model's declaration (task, classes,
contract, estimator, gates, slices) or from the reviewed spec file, and names where it came
from; anything else is a gap. No domain word is written here: class names, what a row is,
units and slice titles come from the declaration, so the same code documents any model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle_pipeline.documentation import wording
from lifecycle_pipeline.documentation.document import (
    DeclarationSource,
    Document,
    Row,
    Section,
    Table,
    declared,
    declared_table,
    fact,
    gap,
    human,
    table,
)
from lifecycle_pipeline.documentation.spec import LoadedSpec
from lifecycle_pipeline.lineage.trace import Materialization

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import LoadedDeclaration

DEFINITION = "lifecycle_pipeline.documentation.wording"


@dataclass(frozen=True)
class Lineage:
    """The four upstream materializations a model version was made from."""

    snapshot: Materialization
    features: Materialization
    model: Materialization
    evaluation: Materialization

    @classmethod
    def from_trace(cls, traced: dict[str, Materialization]) -> Lineage:
        """From ``trace``'s materializations, keyed by asset (``<model>/<stage>``)."""
        stage = {asset.rsplit("/", 1)[-1]: made for asset, made in traced.items()}
        return cls(
            snapshot=stage["data_snapshot"],
            features=stage["features"],
            model=stage["trained_model"],
            evaluation=stage["evaluation"],
        )


def shown_path(path: Path) -> str:
    """The declaration's path relative to the project (the same on every machine), else as is."""
    from lifecycle_pipeline.settings import Settings

    try:
        return str(path.resolve().relative_to(Settings.from_env().project_root))
    except ValueError:
        return str(path)


def declaration_source(model: LoadedDeclaration) -> DeclarationSource:
    return DeclarationSource(path=shown_path(model.path), sha256=model.sha256)


def _table_records(value: Any) -> list[dict[str, Any]]:
    return [dict(record.data) for record in getattr(value, "records", [])]


def _metrics(evaluation: Materialization) -> dict[str, float]:
    return {
        k.removeprefix("metric/"): float(v)
        for k, v in evaluation.metadata.items()
        if k.startswith("metric/")
    }


def _split(features: Materialization) -> str:
    meta = features.metadata
    stratified = meta.get("split/stratified_on")
    how = (
        "stratification not recorded"
        if stratified is None
        else "not stratified"
        if str(stratified).startswith("(")  # the features asset records "(not stratified)"
        else f"stratified on {stratified}"
    )
    return f"{how}, test share {meta.get('split/test_size')}, seed {meta.get('split/seed')}"


def _spec_row(spec: LoadedSpec, label: str, dotted: str) -> Row:
    value = spec.get(dotted)
    if dotted == "model.owners" and value:
        value = "; ".join(
            f"{o.name}"
            + (f" ({o.role})" if o.role else "")
            + (f" <{o.contact}>" if o.contact else "")
            for o in value
        )
    return human(label, value, spec.path, dotted)


def _declaration_rows(m: Materialization, model: LoadedDeclaration) -> tuple[Row, Row]:
    """The declaration file the documents were worded from, and the one the model was trained
    with; a difference is a gap, because the declared wording may then describe another model."""
    origin = declaration_source(model)
    file_row = Row(
        "Model declaration",
        value=f"{origin.path} (name {model.name}, sha256 {model.sha256})",
        source=origin.source("(file)"),
        cite=f"declaration {origin.path}",
    )
    recorded = m.metadata.get("declaration/sha256")
    label = "Declaration at training (sha256)"
    if recorded is not None and recorded != model.sha256:
        return file_row, gap(
            label,
            f"{m.cite()} was trained with declaration sha256 {recorded}, but {origin.path} now "
            f"has sha256 {model.sha256}, so the declared wording here may not describe this "
            "model. Re-run the lifecycle of this data version with the current declaration.",
        )
    return file_row, fact(label, recorded, m)


def _metric_notes(model: LoadedDeclaration) -> tuple[Row, ...]:
    """What each of the task's metrics measures, worded with the declaration's names."""
    contract = model.model.contract
    origin = declaration_source(model)
    notes = wording.metric_notes(contract, model.model.evaluation.calibration_bins)
    return tuple(
        Row(
            name,
            value=note,
            source={"definition": DEFINITION, "task": contract.task, **origin.source("contract")},
            cite=f"definition ({contract.task} task), names from the declaration",
        )
        for name, note in notes.items()
    )


def _dirty(m: Materialization) -> Any:
    """The dirty flag, naming the model's own files that were not committed: a new team
    training before committing its folder learns why this version cannot be reproduced."""
    lineage = m.metadata.get("lineage")
    code = lineage.get("code", {}) if isinstance(lineage, dict) else {}
    files = code.get("uncommitted") if isinstance(code, dict) else None
    if not files:
        return m.metadata.get("code/dirty")
    return (
        f"True: {', '.join(map(str, files))} not committed as used, so this version cannot "
        "be reproduced from its commit"
    )


def _undefined_metrics(e: Materialization, model: LoadedDeclaration) -> tuple[Row, ...]:
    """Metrics of the task that the evaluation did not record (undefined on the held-out rows,
    e.g. a class absent from them): stated, never shown as a number."""
    from lifecycle_pipeline.tasks import task_for

    contract = model.model.contract
    recorded = _metrics(e)
    missing = [n for n in task_for(contract.task).metric_names(contract) if n not in recorded]
    if not missing:
        return ()
    return (
        Row(
            "Undefined on the held-out split",
            value=missing,
            source=e.source(),
            cite=f"{e.cite()} (no metric/ entry)",
        ),
    )


def _threshold(e: Materialization, model: LoadedDeclaration) -> tuple[Row, ...]:
    """The decision threshold exists for binary tasks only; it is named by the positive class."""
    contract = model.model.contract
    if contract.task != "binary":
        return ()
    label = f"Decision threshold (P({contract.positive.name}))"
    return (fact(label, e.metadata.get("decision_threshold"), e),)


def _task_rows(model: LoadedDeclaration) -> tuple[Row, ...]:
    declared_model = model.model
    contract = declared_model.contract
    origin = declaration_source(model)
    threshold = declared_model.evaluation.decision_threshold
    output_field = "evaluation.decision_threshold" if contract.task == "binary" else "contract"
    return (
        declared("Task", wording.task(contract), origin, "contract.task"),
        declared("What one row is", contract.row, origin, "contract.row"),
        declared("Output", wording.output(contract, threshold), origin, output_field),
    )


def _gate_rows(model: LoadedDeclaration) -> tuple[Row, ...]:
    origin = declaration_source(model)
    declared_gates = wording.gates(model.model)
    return (
        declared(
            "Declared gates (blocking)",
            declared_gates or "none declared",
            origin,
            "evaluation.gates",
        ),
    )


def _slice_rows(model: LoadedDeclaration) -> tuple[Row, ...]:
    origin = declaration_source(model)
    slices = [wording.slice_definition(s) for s in model.model.evaluation.slices]
    return (declared("Slice definitions", slices or "none declared", origin, "evaluation.slices"),)


def _estimator_rows(m: Materialization, model: LoadedDeclaration) -> tuple[Row, ...]:
    origin = declaration_source(model)
    estimator = model.model.estimator
    recorded = (m.metadata.get("hyperparameters") or {}).get("estimator")
    return (
        fact("Estimator (import path)", recorded, m),
        declared(
            "Declared estimator parameters",
            estimator.params or "none (the estimator's defaults)",
            origin,
            "estimator.params",
        ),
    )


def _drift_rows(model: LoadedDeclaration) -> tuple[Row, ...]:
    """The declared drift tests, and what their calibration measured at the team's batch size
    (or that they were never measured there: a threshold without its batch size is a guess)."""
    from lifecycle_pipeline.monitoring.drift import drifts_when

    origin = declaration_source(model)
    drift = model.model.drift
    columns = len(model.model.drift_columns)
    kinds = {
        t.type for n, t in model.model.contract.features.items() if n in model.model.drift_columns
    }
    shown = [("numeric", drift.numeric)] if kinds & {"numeric", "integer"} else []
    shown += [("categorical", drift.categorical)] if kinds & {"categorical", "boolean"} else []
    shown += [("prediction", drift.prediction)] if drift.prediction else []
    tests = "; ".join(
        f"{kind}: {test.method}, drifts when "
        + drifts_when(test.method).replace("threshold", f"{test.threshold:g}")
        for kind, test in shown
    )
    verdict = (
        f"a batch drifts when more than {drift.share_threshold:g} of its {columns} features drift"
    )
    record = drift.calibration
    if record is None:
        calibrated = (
            "not calibrated: the thresholds were not measured at the batch size production "
            f"sends (`lifecycle --model {model.name} drift calibrate`)"
        )
    else:
        measured = record.measured
        calibrated = (
            f"measured at {record.batch_size}-row batches on {record.draws} calm draws "
            f"(seed {record.seed}) from {record.reference}: the verdict was raised on "
            f"{measured.verdict:g} of them (target {record.false_alarm_rate:g})"
        )
        if measured.one_sd_shift is not None:
            shift = measured.one_sd_shift
            calibrated += (
                f"; one numeric feature moved by one standard deviation was flagged in "
                f"{shift.min:g} of {shift.batches} batches for the weakest ({shift.weakest}), "
                f"{shift.median:g} for the median feature"
            )
        mismatches = drift.calibration_mismatches(columns)
        if mismatches:
            calibrated += (
                ". The record describes other settings than those declared ("
                + "; ".join(mismatches)
                + "): its rates do not apply to them"
            )
    return (
        declared("Drift tests (declared)", f"{tests}; {verdict}", origin, "drift"),
        declared("Drift thresholds calibration", calibrated, origin, "drift.calibration"),
    )


def _contract_table(model: LoadedDeclaration) -> Table:
    return declared_table(
        wording.CONTRACT_COLUMNS,
        wording.contract_rows(model.model.contract),
        declaration_source(model),
        "contract.features",
    )


def _slice_table(e: Materialization) -> Table:
    """Every recorded slice with every metric recorded for it, in the table schema's column
    order (the task's metric order; stored records do not keep their keys' order)."""
    value = e.metadata.get("slices")
    records = _table_records(value)
    schema = getattr(value, "schema", None)
    columns: list[str] = [c.name for c in schema.columns] if schema is not None else ["slice"]
    for record in records:
        columns += [c for c in record if c not in columns]
    return table(tuple(columns), [tuple(r.get(c) for c in columns) for r in records], e)


def model_card(
    lineage: Lineage, spec: LoadedSpec, changes: Section, model: LoadedDeclaration
) -> Document:
    s, f, m, e = lineage.snapshot, lineage.features, lineage.model, lineage.evaluation
    origin = declaration_source(model)
    contract = model.model.contract
    gate_rows = e.metadata.get("gates") or []
    return Document(
        title="Model card",
        reference="Mitchell et al. 2019, Model Cards for Model Reporting",
        sections=(
            Section(
                "Model details",
                rows=(
                    _spec_row(spec, "Name", "model.name"),
                    declared("Description", model.model.description, origin, "description"),
                    _spec_row(spec, "Owners", "model.owners"),
                    fact("Date (trained)", m.when, m),
                    fact("Version", f"{m.partition} / {m.metadata.get('model/version_id')}", m),
                    fact("Model fingerprint", m.metadata.get("model/fingerprint"), m),
                    *_task_rows(model),
                    *_estimator_rows(m, model),
                    fact("Algorithm (scikit-learn pipeline)", m.metadata.get("estimator"), m),
                    fact("Hyperparameters", m.metadata.get("hyperparameters"), m),
                    fact(
                        "Seed / threads",
                        f"{m.metadata.get('seed')} / {m.metadata.get('threads')}",
                        m,
                    ),
                    *_declaration_rows(m, model),
                    fact("Code commit", m.metadata.get("code/commit"), m),
                    fact("Uncommitted changes at training", _dirty(m), m),
                    _spec_row(spec, "License", "model.license"),
                    _spec_row(spec, "Contact", "model.contact"),
                    _spec_row(spec, "Citation", "model.citation"),
                ),
            ),
            Section(
                "Intended use",
                rows=(
                    _spec_row(spec, "Primary intended uses", "intended_use.primary_uses"),
                    _spec_row(spec, "Primary intended users", "intended_use.primary_users"),
                    _spec_row(spec, "Out-of-scope uses", "intended_use.out_of_scope"),
                ),
            ),
            Section(
                "Factors",
                rows=(
                    _spec_row(spec, "Relevant factors", "factors.relevant"),
                    fact("Evaluation factors (slices)", e.metadata.get("slice_factor"), e),
                    *_slice_rows(model),
                    _spec_row(
                        spec,
                        "Evaluation factors, and what could not be evaluated",
                        "factors.evaluation",
                    ),
                ),
            ),
            Section(
                "Metrics",
                rows=(
                    *_threshold(e, model),
                    *_gate_rows(model),
                    *_metric_notes(model),
                ),
                tables=(
                    table(
                        ("gate", "metric", "comparison", "threshold", "value", "passed"),
                        [
                            (
                                g["name"],
                                g["metric"],
                                g["comparison"],
                                g["threshold"],
                                g["value"],
                                g["passed"],
                            )
                            for g in gate_rows
                        ],
                        e,
                    ),
                ),
            ),
            Section(
                "Evaluation data",
                rows=(
                    fact("Data version", s.partition, s),
                    fact("Held-out rows", f.metadata.get("test/rows"), f),
                    fact("Split", _split(f), f),
                    fact("Held-out split sha256", f.metadata.get("test/sha256"), f),
                ),
            ),
            Section(
                "Training data",
                rows=(
                    fact(
                        "Data version (DVC md5)", f"{s.partition} ({s.metadata.get('dvc/md5')})", s
                    ),
                    fact("Training rows", f.metadata.get("train/rows"), f),
                    fact("Training split sha256", f.metadata.get("train/sha256"), f),
                    fact("Features", len(f.metadata.get("feature_columns") or []), f),
                    declared(
                        "Input contract", wording.contract_summary(contract), origin, "contract"
                    ),
                    fact("Transforms", f.metadata.get("transforms"), f),
                ),
            ),
            Section(
                "Quantitative analyses",
                rows=_undefined_metrics(e, model),
                tables=(
                    table(("metric", "value"), list(_metrics(e).items()), e),
                    _slice_table(e),
                ),
            ),
            Section(
                "Ethical considerations",
                rows=(_spec_row(spec, "Ethical considerations", "ethical_considerations"),),
            ),
            Section(
                "Caveats and recommendations",
                rows=(
                    _spec_row(spec, "Caveats and recommendations", "caveats_and_recommendations"),
                    *_drift_rows(model),
                ),
            ),
            changes,
        ),
    )


def _balance_rows(s: Materialization, model: LoadedDeclaration) -> tuple[Row, ...]:
    """Classification: rows per declared class, from the snapshot's recorded class counts.
    Regression has no label balance; its target is described instead."""
    contract = model.model.contract
    origin = declaration_source(model)
    target = declared("Target (label)", wording.target(contract), origin, "contract.target")
    if not contract.classes:
        return (target,)
    counts = s.metadata.get("class_counts")
    return (
        target,
        fact("Label balance (rows per class)", wording.label_balance(contract, counts), s),
    )


def datasheet(lineage: Lineage, spec: LoadedSpec, model: LoadedDeclaration) -> Document:
    s, f = lineage.snapshot, lineage.features
    origin = declaration_source(model)
    contract = model.model.contract
    schema = s.metadata.get("dagster/column_schema")
    columns = [(c.name, c.type, c.description or "") for c in getattr(schema, "columns", [])]
    return Document(
        title="Datasheet",
        reference="Gebru et al. 2021, Datasheets for Datasets",
        sections=(
            Section(
                "Motivation",
                rows=(_spec_row(spec, "Why the dataset was created", "data.motivation"),),
            ),
            Section(
                "Composition",
                rows=(
                    declared("What one instance (row) is", contract.row, origin, "contract.row"),
                    fact("Instances (rows)", s.metadata.get("dagster/row_count"), s),
                    *_balance_rows(s, model),
                    fact("Missing values per column", s.metadata.get("null_counts"), s),
                    declared(
                        "Read as missing (declared)",
                        ["(empty field)", *(repr(m) for m in model.model.data.missing_values)],
                        origin,
                        "data.missing_values",
                    ),
                    declared(
                        "Nullable features (declared)",
                        [n for n, feat in contract.features.items() if feat.nullable] or "none",
                        origin,
                        "contract.features",
                    ),
                    declared(
                        "Columns dropped on read",
                        list(contract.drop) or "none",
                        origin,
                        "contract.drop",
                    ),
                    fact("Content digest (DVC md5)", s.metadata.get("dvc/md5"), s),
                ),
                tables=(
                    table(("column", "type", "description"), columns, s),
                    _contract_table(model),
                ),
            ),
            Section(
                "Collection process",
                rows=(_spec_row(spec, "How the data was collected", "data.collection"),),
            ),
            Section(
                "Preprocessing, cleaning, labelling",
                rows=(
                    _spec_row(spec, "Preprocessing", "data.preprocessing"),
                    _spec_row(spec, "Anonymisation and data handling", "data.anonymisation"),
                    fact("Transforms applied by the pipeline", f.metadata.get("transforms"), f),
                ),
            ),
            Section("Uses", rows=(_spec_row(spec, "Uses", "data.uses"),)),
            Section(
                "Distribution",
                rows=(
                    _spec_row(spec, "Distribution", "data.distribution"),
                    fact("Registry", s.metadata.get("registry"), s),
                    fact(
                        "Revision (tag) and commit",
                        f"{s.metadata.get('rev')} @ {s.metadata.get('git/commit')}",
                        s,
                    ),
                    fact("Path in registry", s.metadata.get("dvc/path"), s),
                ),
            ),
            Section("Maintenance", rows=(_spec_row(spec, "Maintenance", "data.maintenance"),)),
        ),
    )


def _trusted_types(m: Materialization) -> Row:
    recorded = (m.metadata.get("lineage") or {}).get("estimator") or {}
    value = recorded.get("trusted_types")
    label = "Types trusted when loading the stored model"
    if value is None:
        return fact(label, None, m)
    return fact(label, value or "none beyond skops' defaults", m)


def technical_documentation(
    lineage: Lineage, spec: LoadedSpec, changes: Section, model: LoadedDeclaration
) -> Document:
    s, f, m, e = lineage.snapshot, lineage.features, lineage.model, lineage.evaluation
    origin = declaration_source(model)
    libraries = m.metadata.get("env/libraries") or {}
    passed, total = e.metadata.get("gates/passed"), e.metadata.get("gates/total")
    return Document(
        title="Technical documentation",
        reference="Shaped after EU AI Act (Regulation 2024/1689) Annex IV",
        sections=(
            Section(
                "1. General description",
                rows=(
                    _spec_row(spec, "Intended purpose", "intended_use.primary_uses"),
                    declared("Description", model.model.description, origin, "description"),
                    *_task_rows(model),
                    _spec_row(spec, "Provider / owners", "model.owners"),
                    fact(
                        "Model version", f"{m.partition} / {m.metadata.get('model/version_id')}", m
                    ),
                    _declaration_rows(m, model)[0],
                    fact("Software versions", libraries, m),
                    fact(
                        "Environment lock (sha256 of uv.lock)", m.metadata.get("env/lock_hash"), m
                    ),
                ),
            ),
            Section(
                "2. Development process and design choices",
                rows=(
                    *_estimator_rows(m, model),
                    fact("Algorithm", m.metadata.get("estimator"), m),
                    fact("Hyperparameters", m.metadata.get("hyperparameters"), m),
                    _trusted_types(m),
                    declared(
                        "Input contract",
                        wording.contract_summary(model.model.contract),
                        origin,
                        "contract",
                    ),
                    fact("Training/test split", _split(f), f),
                    fact("Feature preparation", f.metadata.get("transforms"), f),
                    fact("Configuration hash", m.metadata.get("config_hash"), m),
                    _declaration_rows(m, model)[1],
                    fact(
                        "Code commit (dirty flag)",
                        f"{m.metadata.get('code/commit')} (dirty={m.metadata.get('code/dirty')})",
                        m,
                    ),
                    fact(
                        "Reproducibility",
                        f"fingerprint {m.metadata.get('model/fingerprint')}; "
                        "checked on every re-training",
                        m,
                    ),
                ),
                tables=(_contract_table(model),),
            ),
            Section(
                "3. Compute used",
                rows=(
                    fact("Fit time (s)", m.metadata.get("fit_seconds"), m),
                    fact("Threads", m.metadata.get("threads"), m),
                    fact("Machine", m.metadata.get("env/machine"), m),
                ),
            ),
            Section(
                "4. Data provenance",
                rows=(
                    fact("Registry", s.metadata.get("registry"), s),
                    fact(
                        "Data version, commit, DVC md5",
                        f"{s.partition} @ {s.metadata.get('git/commit')} "
                        f"md5 {s.metadata.get('dvc/md5')}",
                        s,
                    ),
                    fact("Rows", s.metadata.get("dagster/row_count"), s),
                    _spec_row(spec, "Data handling (anonymisation)", "data.anonymisation"),
                ),
            ),
            Section(
                "5. Validation and test results",
                rows=(
                    fact("Date of validation", e.when, e),
                    _spec_row(spec, "Responsible person", "governance.responsible_person"),
                    *_gate_rows(model),
                    fact("Gates passed", f"{passed}/{total}", e),
                    *_threshold(e, model),
                    *(fact(name, value, e) for name, value in _metrics(e).items()),
                    *_undefined_metrics(e, model),
                    *_slice_rows(model),
                ),
                tables=(_slice_table(e),),
            ),
            Section(
                "6. Risk management",
                rows=(
                    _spec_row(spec, "Risk notes", "governance.risk_notes"),
                    _spec_row(spec, "Human oversight / approval", "governance.approval_process"),
                ),
            ),
            Section(
                "7. Post-market monitoring plan",
                rows=(
                    _spec_row(spec, "Monitoring plan", "governance.monitoring_plan"),
                    *_drift_rows(model),
                    _spec_row(spec, "Retraining protocol", "governance.retraining_protocol"),
                ),
            ),
            Section(
                f"8. Changes over the lifecycle ({changes.title.lower()})",
                rows=changes.rows,
                tables=changes.tables,
            ),
        ),
    )


def changes_since(
    lineage: Lineage,
    previous: Lineage | None,
    reason: str | None,
    untraceable: str | None = None,
) -> Section:
    """What differs from the previous model version, read from both versions' lineage.

    ``untraceable`` says why an earlier version exists but its lineage could not be read: the
    comparison is then a gap naming that version, never "first model version".
    """
    title = "What changed since the previous version"
    m, e = lineage.model, lineage.evaluation
    reason_row = (
        Row(
            "Reason for retraining",
            value=reason,
            source={"run_tag": "lifecycle/reason", "run_id": m.run_id},
        )
        if reason
        else gap("Reason for retraining", "no `lifecycle/reason` tag on the training run")
    )
    if untraceable is not None:
        return Section(title, rows=(gap("Previous version", untraceable), reason_row))
    if previous is None:
        return Section(
            title,
            rows=(
                Row("Previous version", value="none: first model version", source=e.source()),
                reason_row,
            ),
        )
    pm, pe = previous.model, previous.evaluation
    compare = [
        (
            "data md5",
            previous.snapshot.metadata.get("dvc/md5"),
            lineage.snapshot.metadata.get("dvc/md5"),
        ),
        ("code commit", pm.metadata.get("code/commit"), m.metadata.get("code/commit")),
        ("environment lock", pm.metadata.get("env/lock_hash"), m.metadata.get("env/lock_hash")),
        (
            "declaration sha256",
            pm.metadata.get("declaration/sha256"),
            m.metadata.get("declaration/sha256"),
        ),
        ("hyperparameters", pm.metadata.get("hyperparameters"), m.metadata.get("hyperparameters")),
        (
            "model fingerprint",
            pm.metadata.get("model/fingerprint"),
            m.metadata.get("model/fingerprint"),
        ),
    ]
    now, before = _metrics(e), _metrics(pe)
    return Section(
        title,
        rows=(
            Row(
                "Previous version",
                value=f"{pm.partition} / {pm.metadata.get('model/version_id')} ({pm.when})",
                source=pm.source(),
                cite=pm.cite(),
            ),
            reason_row,
        ),
        tables=(
            table(
                ("element", "previous", "this version", "changed"),
                [(n, a, b, a != b) for n, a, b in compare],
                m,
            ),
            table(
                ("metric", "previous", "this version", "delta"),
                [(k, before[k], now[k], now[k] - before[k]) for k in now if k in before],
                e,
            ),
        ),
    )
