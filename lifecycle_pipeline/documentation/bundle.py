"""Build the documentation bundle of one model version from recorded lineage and the spec.

Three documents: a model card (Mitchell et al. 2019), a datasheet for the data version
(Gebru et al. 2021), and a technical-documentation view shaped after EU AI Act Annex IV.
Every value is either read from a materialization (and names it) or from the reviewed spec
file; anything else is a gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lifecycle_pipeline.documentation.document import (
    Document,
    Row,
    Section,
    fact,
    gap,
    human,
    table,
)
from lifecycle_pipeline.documentation.spec import LoadedSpec
from lifecycle_pipeline.lineage.trace import Materialization

METRIC_NOTES = {
    "accuracy": "share of correct labels at the decision threshold",
    "precision": "share of predicted malignant that are malignant",
    "recall": "share of malignant cases found (missed cancers are the costliest error)",
    "f1": "harmonic mean of precision and recall",
    "roc_auc": "ranking quality across all thresholds",
    "brier": "mean squared error of the probability (calibration and sharpness)",
    "ece": "expected calibration error over equal-width probability bins",
}


@dataclass(frozen=True)
class Lineage:
    """The four upstream materializations a model version was made from."""

    snapshot: Materialization
    features: Materialization
    model: Materialization
    evaluation: Materialization

    @classmethod
    def from_trace(cls, traced: dict[str, Materialization]) -> Lineage:
        return cls(
            snapshot=traced["data_snapshot"],
            features=traced["features"],
            model=traced["trained_model"],
            evaluation=traced["evaluation"],
        )


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
    return (
        f"stratified on {meta.get('split/stratified_on')}, test share "
        f"{meta.get('split/test_size')}, seed {meta.get('split/seed')}"
    )


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


def model_card(lineage: Lineage, spec: LoadedSpec, changes: Section) -> Document:
    s, f, m, e = lineage.snapshot, lineage.features, lineage.model, lineage.evaluation
    metrics = _metrics(e)
    slice_rows = _table_records(e.metadata.get("slices"))
    gate_rows = e.metadata.get("gates") or []
    return Document(
        title="Model card",
        reference="Mitchell et al. 2019, Model Cards for Model Reporting",
        sections=(
            Section(
                "Model details",
                rows=(
                    _spec_row(spec, "Name", "model.name"),
                    _spec_row(spec, "Owners", "model.owners"),
                    fact("Date (trained)", m.when, m),
                    fact("Version", f"{m.partition} / {m.metadata.get('model/version_id')}", m),
                    fact("Model fingerprint", m.metadata.get("model/fingerprint"), m),
                    fact("Type", (m.metadata.get("hyperparameters") or {}).get("estimator"), m),
                    fact("Algorithm (scikit-learn pipeline)", m.metadata.get("estimator"), m),
                    fact("Hyperparameters", m.metadata.get("hyperparameters"), m),
                    fact(
                        "Seed / threads",
                        f"{m.metadata.get('seed')} / {m.metadata.get('threads')}",
                        m,
                    ),
                    fact("Code commit", m.metadata.get("code/commit"), m),
                    fact("Uncommitted changes at training", m.metadata.get("code/dirty"), m),
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
                    fact("Evaluation factor (slices)", e.metadata.get("slice_factor"), e),
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
                    fact(
                        "Decision threshold (P(malignant))", e.metadata.get("decision_threshold"), e
                    ),
                    *(
                        Row(
                            name,
                            value=note,
                            source={"definition": "lifecycle_pipeline"},
                            cite="definition",
                        )
                        for name, note in METRIC_NOTES.items()
                    ),
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
                    fact(
                        "Split",
                        _split(f),
                        f,
                    ),
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
                    fact("Transforms", f.metadata.get("transforms"), f),
                ),
            ),
            Section(
                "Quantitative analyses",
                tables=(
                    table(("metric", "value"), list(metrics.items()), e),
                    table(
                        (
                            "slice",
                            "rows",
                            "positives",
                            "accuracy",
                            "recall",
                            "f1",
                            "roc_auc",
                            "brier",
                        ),
                        [
                            tuple(
                                "n/a" if r.get(c) is None else r[c]  # undefined on the slice
                                for c in (
                                    "slice",
                                    "rows",
                                    "positives",
                                    "accuracy",
                                    "recall",
                                    "f1",
                                    "roc_auc",
                                    "brier",
                                )
                            )
                            for r in slice_rows
                        ],
                        e,
                    ),
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
                ),
            ),
            changes,
        ),
    )


def datasheet(lineage: Lineage, spec: LoadedSpec) -> Document:
    s, f = lineage.snapshot, lineage.features
    schema = s.metadata.get("dagster/column_schema")
    columns = [(c.name, c.type, c.description or "") for c in getattr(schema, "columns", [])]
    rows = int(s.metadata.get("dagster/row_count") or 0)
    positives = s.metadata.get("positives")
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
                    fact("Instances (rows)", rows, s),
                    fact("Label balance (malignant / total)", f"{positives} / {rows}", s),
                    fact("Missing values per column", s.metadata.get("null_counts"), s),
                    fact("Content digest (DVC md5)", s.metadata.get("dvc/md5"), s),
                ),
                tables=(table(("column", "type", "description"), columns, s),),
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


def technical_documentation(lineage: Lineage, spec: LoadedSpec, changes: Section) -> Document:
    s, f, m, e = lineage.snapshot, lineage.features, lineage.model, lineage.evaluation
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
                    _spec_row(spec, "Provider / owners", "model.owners"),
                    fact(
                        "Model version", f"{m.partition} / {m.metadata.get('model/version_id')}", m
                    ),
                    fact("Software versions", libraries, m),
                    fact(
                        "Environment lock (sha256 of uv.lock)", m.metadata.get("env/lock_hash"), m
                    ),
                ),
            ),
            Section(
                "2. Development process and design choices",
                rows=(
                    fact("Algorithm", m.metadata.get("estimator"), m),
                    fact("Hyperparameters", m.metadata.get("hyperparameters"), m),
                    fact(
                        "Training/test split",
                        _split(f),
                        f,
                    ),
                    fact("Feature preparation", f.metadata.get("transforms"), f),
                    fact("Configuration hash", m.metadata.get("config_hash"), m),
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
                    fact("Gates passed", f"{passed}/{total}", e),
                    *(fact(name, value, e) for name, value in _metrics(e).items()),
                ),
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
