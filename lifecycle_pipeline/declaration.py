"""A model declaration: one YAML file that says which data, contract, task, estimator, gates,
slices, drift tests and documentation make one model.

The YAML is the model team's; this module only reads it. Everything a stage needs to know
about the domain (column names, class names, units, slice bins, wording) comes from here, so
the framework holds no facts about any one dataset. A declaration is validated completely
before any run starts: an unknown key, a gate on a metric the task does not have or an
estimator that cannot be imported is an error that names the file, the line and the field.
The file's sha256 joins every model version's lineage, so changing it makes a new version.

``estimator_checks=False`` (``load_declaration``, ``current_declaration``) validates all of
that except what needs the declared estimator's library (resolving and constructing the class,
its parameters, whether it accepts missing values, whether it suits the task): for a command
that only identifies a model and reads its records, and must not import scikit-learn for it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import itertools
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.missing import MissingValues
from lifecycle_pipeline.settings import PACKAGE_DIR

if TYPE_CHECKING:
    import dagster as dg

    from lifecycle_pipeline.tasks import Task as TaskStrategy

DECLARATION_FILE = "defs.yaml"
MODELS_DIR = "models"
# The component type a model folder's defs.yaml names (lifecycle_pipeline/component.py).
COMPONENT_TYPE = "lifecycle_pipeline.LifecycleModel"
_COMPONENT_TYPES = (COMPONENT_TYPE, "lifecycle_pipeline.component.LifecycleModel")

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
# The pydantic validation context key that turns the estimator checks off (``_cross_checks``).
_ESTIMATOR_CHECKS = "estimator_checks"
FeatureType = Literal["numeric", "integer", "categorical", "boolean"]
Task = Literal["binary", "multiclass", "regression"]


class DeclarationError(LifecycleError, ValueError):
    """A model declaration that cannot be used; the message names file, line and field."""


class FieldError(ValueError):
    """A validator's problem with a field below the model it validates (``loc`` relative)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ``data.registry`` of the sample models: the registry `lifecycle registry` / `make demo` build.
DEMO_REGISTRY = "demo"


class DataSource(_Strict):
    registry: str | None = Field(
        default=None,
        description="git URL or path of the data registry; '$NAME' reads environment variable "
        f"NAME; '{DEMO_REGISTRY}': the demo registry `lifecycle registry` builds (the sample "
        "models); omitted: $LIFECYCLE_REGISTRY_URL, which must then be set.",
    )
    path: str = Field(description="The dataset file inside the registry.")
    format: Literal["csv", "parquet"] = "csv"
    versions: str = Field(default="data-v*", description="Glob over tags naming data versions.")
    batches: str = Field(default="batch-*", description="Glob over tags naming production batches.")
    batch_path: str = Field(
        default="batches/{key}.csv",
        description="A batch's file in the registry; {key} = its tag (default: batches/{key}."
        "csv or .parquet, by format).",
    )
    missing_values: tuple[str, ...] = Field(
        default=(),
        description="Field values that mean 'missing' besides the empty field, e.g. "
        "['NA', '?']; matched as whole text in every column, in training data, production "
        "batches and the package's predict.py alike (lifecycle_pipeline/missing.py).",
    )

    @model_validator(mode="before")
    @classmethod
    def _batch_path_follows_format(cls, data: Any) -> Any:
        if isinstance(data, dict) and "batch_path" not in data and data.get("format"):
            return {**data, "batch_path": f"batches/{{key}}.{data['format']}"}
        return data

    @field_validator("batch_path")
    @classmethod
    def _has_key(cls, value: str) -> str:
        if "{key}" not in value:
            raise ValueError("must contain {key} (the batch tag), e.g. 'batches/{key}.csv'")
        return value

    @field_validator("missing_values", mode="before")
    @classmethod
    def _markers(cls, value: Any) -> Any:
        """Markers are text matched against whole fields: a YAML number, boolean or null
        would match nothing a reader sees, so it is refused rather than converted."""
        if not isinstance(value, list | tuple):
            return value
        seen: set[str] = set()
        for i, marker in enumerate(value):
            if not isinstance(marker, str):
                raise FieldError(
                    (i,),
                    f"{marker!r} is not text (YAML read it as {type(marker).__name__}); a "
                    f"marker is matched as the field's text, so quote it: '{marker}'",
                )
            if marker == "":
                raise FieldError(
                    (i,), "the empty field is always missing; list only the other markers"
                )
            if marker in seen:
                raise FieldError((i,), f"{marker!r} is listed twice")
            seen.add(marker)
        return value

    @property
    def missing(self) -> MissingValues:
        """The reading rule for this model's data files (``lifecycle_pipeline.missing``)."""
        return MissingValues(self.missing_values)

    def registry_url(self) -> str | None:
        """The configured registry, with a '$NAME' reference resolved now (not at load).

        None only for the demo registry, which the resource resolves from the settings when it
        is used. A team's model that names no registry must not read the demo's data without
        anyone noticing, so an omitted key outside the demo is an error unless the deployment
        set ``LIFECYCLE_REGISTRY_URL`` for every model on purpose."""
        if self.registry == DEMO_REGISTRY:
            return None
        if self.registry is None:
            configured = os.environ.get("LIFECYCLE_REGISTRY_URL")
            if configured:
                return configured
            raise DeclarationError(
                "data.registry is not set: name the git URL or path of the model's data "
                "registry there (or '$NAME' to read it from environment variable NAME), or set "
                f"LIFECYCLE_REGISTRY_URL for every model that names none; `registry: "
                f"{DEMO_REGISTRY}` reads the demo registry (`make demo` builds it)."
            )
        if not self.registry.startswith("$"):
            return self.registry
        name = self.registry[1:]
        value = os.environ.get(name)
        if not value:
            raise DeclarationError(
                f"data.registry is {self.registry!r}, but environment variable {name} is not set; "
                "set it to the registry's git URL or path."
            )
        return value


class Feature(_Strict):
    type: FeatureType
    nullable: bool = Field(
        default=False, description="Missing values allowed (the model must handle them)."
    )
    range: tuple[float | None, float | None] | None = Field(
        default=None,
        description="Domain bounds [min, max] (null = open): values outside are refused "
        "everywhere, in training data and in production requests.",
    )
    categories: tuple[str, ...] | None = Field(
        default=None, description="The allowed categories (categorical features)."
    )
    unit: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Feature:
        if self.range is not None:
            if self.type not in ("numeric", "integer"):
                raise ValueError(
                    f"a range applies to numeric and integer features, not {self.type}"
                )
            low, high = self.range
            if low is not None and high is not None and not low <= high:
                raise ValueError(f"range [{low}, {high}] is empty: min must not exceed max")
        if self.categories is not None:
            if self.type != "categorical":
                raise ValueError(f"categories apply to categorical features, not {self.type}")
            if len(set(self.categories)) != len(self.categories) or not self.categories:
                raise ValueError("categories must be a non-empty list without repeats")
        return self


class LabelClass(_Strict):
    value: str | int | bool
    name: str
    positive: bool = False


class Contract(_Strict):
    target: str
    task: Task
    row: str = Field(description="What one row is, in the domain's words (used in documents).")
    classes: tuple[LabelClass, ...] | None = Field(
        default=None, description="Classification: each label value and its human name."
    )
    target_unit: str | None = Field(default=None, description="Regression: the target's unit.")
    features: dict[str, Feature]
    drop: tuple[str, ...] = Field(
        default=(),
        description="Columns removed on read (ids, timestamps); any other column "
        "outside the contract is refused.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        if not self.features:
            raise ValueError("declare at least one feature")
        clash = sorted({self.target, *self.drop} & set(self.features))
        if clash:
            raise FieldError(
                ("features",),
                f"{clash} declared as a feature and as the target or a dropped column",
            )
        if self.target in self.drop:
            raise FieldError(("drop",), f"the target {self.target!r} is also listed under drop")
        if self.task == "regression":
            if self.classes is not None:
                raise FieldError(("classes",), "a regression contract has no classes; remove it")
            return self
        if self.classes is None or len(self.classes) < 2:
            found = 0 if self.classes is None else len(self.classes)
            raise FieldError(
                ("classes",), f"a {self.task} task needs at least 2 classes (found {found})"
            )
        values = [c.value for c in self.classes]
        if len({repr(v) for v in values}) != len(values):
            raise FieldError(("classes",), f"class values repeat: {values}")
        names = [re.sub(r"[^A-Za-z0-9_]", "_", c.name) for c in self.classes]
        if len(set(names)) != len(names):
            raise FieldError(
                ("classes",),
                f"class names {[c.name for c in self.classes]} repeat (letters, digits and _ "
                "count; other characters read as _), so their metrics cannot be told apart",
            )
        positives = [c.name for c in self.classes if c.positive]
        if self.task == "binary":
            if len(self.classes) != 2:
                raise FieldError(
                    ("classes",), f"a binary task has exactly 2 classes (found {len(values)})"
                )
            if len(positives) != 1:
                raise FieldError(
                    ("classes",), "mark exactly one class `positive: true` (the one to detect)"
                )
        elif positives:
            raise FieldError(("classes",), "`positive` applies to binary tasks only")
        return self

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.features)

    def of_type(self, *types: str) -> tuple[str, ...]:
        return tuple(n for n, f in self.features.items() if f.type in types)

    @property
    def positive(self) -> LabelClass:
        return next(c for c in self.classes or () if c.positive)

    def class_name(self, value: Any) -> str:
        for label in self.classes or ():
            if label.value == value or str(label.value) == str(value):
                return label.name
        return str(value)


class Estimator(_Strict):
    class_: str = Field(
        alias="class",
        description="Import path of a scikit-learn-compatible estimator, e.g. "
        "'sklearn.ensemble.RandomForestClassifier' or 'my_team.models.Ranker'.",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    scale: bool = Field(default=False, description="Standardize numeric features first.")
    impute: Literal["none", "median", "mean"] = Field(
        default="none",
        description="Fill missing values of nullable numeric features before the estimator "
        "(needed when it does not accept missing values).",
    )
    unseen_categories: Literal["ignore", "error"] = Field(
        default="ignore",
        description="A category absent from training: 'ignore' (all indicators 0) or 'error'.",
    )
    trusted_types: tuple[str, ...] = Field(
        default=(),
        description="Reviewed types the stored model may contain beyond skops' defaults.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def resolve(self) -> type:
        module_name, _, class_name = self.class_.rpartition(".")
        if not module_name:
            raise ValueError(f"{self.class_!r} is not an import path (module.Class)")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"cannot import module {module_name!r} ({exc})") from exc
        except Exception as exc:  # a team's module that raises on import is the team's to fix
            raise ValueError(
                f"cannot import module {module_name!r} ({type(exc).__name__}: {exc})"
            ) from exc
        cls = getattr(module, class_name, None)
        if not isinstance(cls, type):
            raise ValueError(f"module {module_name!r} has no class {class_name!r}")
        if not (hasattr(cls, "fit") and hasattr(cls, "get_params")):
            raise ValueError(f"{self.class_!r} is not a scikit-learn estimator (no fit/get_params)")
        return cls

    def build(self, params: dict[str, Any]) -> Any:
        """The estimator with ``params``, checked against scikit-learn's own parameter
        constraints where the class declares them (a team's class may not)."""
        estimator = self.resolve()(**params)
        if hasattr(estimator, "_parameter_constraints"):
            estimator._validate_params()
        return estimator


class Gate(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Gate:
        if (self.min is None) == (self.max is None):
            raise ValueError("a gate is either {min: value} or {max: value}")
        bound = self.min if self.min is not None else self.max
        assert bound is not None
        if not math.isfinite(bound):
            raise ValueError(f"a gate threshold must be a finite number, not {bound}")
        return self

    @property
    def comparison(self) -> str:
        return ">=" if self.min is not None else "<="

    @property
    def threshold(self) -> float:
        return float(self.min if self.min is not None else self.max)  # type: ignore[arg-type]


class Slice(_Strict):
    column: str
    name: str | None = Field(default=None, description="How documents name this factor.")
    bins: tuple[float, ...] | None = Field(
        default=None, description="Inner edges: [12, 15] makes <12, 12-15 and >=15."
    )
    labels: tuple[str, ...] | None = Field(default=None, description="One label per bin.")
    categories: tuple[str, ...] | None = Field(
        default=None, description="Categorical column: which categories (default every one)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Slice:
        if self.bins is not None:
            if self.categories is not None:
                raise ValueError("a slice has bins (numeric) or categories, not both")
            if list(self.bins) != sorted(set(self.bins)):
                raise ValueError(f"bins {list(self.bins)} must be strictly increasing")
            if self.labels is not None and len(self.labels) != len(self.bins) + 1:
                raise ValueError(
                    f"{len(self.bins)} bin edge(s) make {len(self.bins) + 1} bins, but "
                    f"{len(self.labels)} label(s) are given"
                )
        elif self.labels is not None:
            raise ValueError("labels name bins; declare `bins` too")
        return self

    @property
    def title(self) -> str:
        return self.name or self.column

    def bands(self) -> list[tuple[str, float, float]]:
        edges = [-math.inf, *(self.bins or ()), math.inf]
        names = self.labels or tuple(
            f"<{high:g}"
            if low == -math.inf
            else f">={low:g}"
            if high == math.inf
            else f"{low:g}-{high:g}"
            for low, high in itertools.pairwise(edges)
        )
        return [(names[i], edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


class Evaluation(_Strict):
    decision_threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="Binary: P(positive class) cut-off."
    )
    calibration_bins: int = Field(default=10, ge=2, le=100)
    gates: dict[str, Gate] = Field(default_factory=dict)
    slices: tuple[Slice, ...] = ()


class DriftTest(_Strict):
    method: str
    threshold: float = Field(gt=0.0, le=10.0)


class MeasuredTest(_Strict):
    """One calibrated test: its method and threshold, and the chance that one column judged by
    it drifted on a calm batch."""

    method: str
    threshold: float
    column_rate: float = Field(ge=0.0, le=1.0)


class ShiftDetected(_Strict):
    """How often a batch with one numeric feature moved by one standard deviation of the
    reference was flagged under the calibrated thresholds (over every numeric feature)."""

    batches: int = Field(ge=1, description="Shifted batches per feature.")
    min: float = Field(ge=0.0, le=1.0)
    median: float = Field(ge=0.0, le=1.0)
    weakest: str = Field(description="The feature whose shift was caught least often.")


class DriftMeasured(_Strict):
    verdict: float = Field(ge=0.0, le=1.0, description="Calm batches that raised the verdict.")
    numeric: MeasuredTest | None = None
    categorical: MeasuredTest | None = None
    prediction: MeasuredTest | None = None
    one_sd_shift: ShiftDetected | None = None


class DriftCalibration(_Strict):
    """What `lifecycle drift calibrate` measured, pasted from its output: the thresholds mean
    something only with the batch size and false-alarm rate they were measured at."""

    batch_size: int = Field(ge=2)
    false_alarm_rate: float = Field(gt=0.0, lt=1.0)
    draws: int = Field(ge=1)
    seed: int = Field(ge=0, le=2**32 - 1)
    min_drifted: int = Field(default=1, ge=1)
    columns: int = Field(ge=1, description="Features judged (the verdict's denominator).")
    share_threshold: float = Field(ge=0.0, le=1.0)
    reference: str = Field(description="Where the reference and the calm batches came from.")
    measured: DriftMeasured


class Drift(_Strict):
    columns: tuple[str, ...] | None = Field(default=None, description="Default: every feature.")
    numeric: DriftTest = DriftTest(method="psi", threshold=0.2)
    categorical: DriftTest = DriftTest(method="jensenshannon", threshold=0.1)
    prediction: DriftTest | None = Field(
        default=None, description="Drift test on the model's output; default: the numeric test."
    )
    share_threshold: float = Field(default=0.05, ge=0.0, le=1.0)
    sample_cap: int = Field(default=100_000, ge=100, le=10_000_000)
    seed: int = Field(default=20241122, ge=0, le=2**32 - 1)
    batch_size: int | None = Field(
        default=None,
        ge=2,
        description="Rows in a typical production batch: the size thresholds are calibrated at.",
    )
    false_alarm_rate: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="Share of calm batches the team accepts being flagged (e.g. 0.01).",
    )
    calibration: DriftCalibration | None = Field(
        default=None, description="The record `lifecycle drift calibrate` printed."
    )

    def calibration_mismatches(self, columns: int) -> list[str]:
        """How the declared settings differ from those the calibration record measured (empty
        when they agree): a record of other thresholds says nothing about these ones."""
        record = self.calibration
        if record is None:
            return []
        found = []
        declared: dict[str, DriftTest | None] = {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "prediction": self.prediction,
        }
        measured = record.measured
        for kind, test in declared.items():
            calibrated = getattr(measured, kind)
            if calibrated is None:
                continue
            test = test or (self.numeric if kind == "prediction" else None)
            if test is None or (test.method, test.threshold) != (
                calibrated.method,
                calibrated.threshold,
            ):
                now = f"{test.method} {test.threshold:g}" if test else "none"
                found.append(
                    f"drift.{kind} is {now}, calibrated was "
                    f"{calibrated.method} {calibrated.threshold:g}"
                )
        pairs = (
            ("share_threshold", self.share_threshold, record.share_threshold),
            ("batch_size", self.batch_size, record.batch_size),
            ("false_alarm_rate", self.false_alarm_rate, record.false_alarm_rate),
            ("columns (features monitored)", columns, record.columns),
        )
        for name, now_value, then in pairs:
            if now_value is not None and now_value != then:
                found.append(f"drift.{name} is {now_value}, calibrated at {then}")
        return found

    @field_validator("numeric", "categorical", "prediction")
    @classmethod
    def _known_method(cls, value: DriftTest | None) -> DriftTest | None:
        from lifecycle_pipeline.monitoring.drift import DRIFTS_WHEN

        if value is not None and value.method not in DRIFTS_WHEN:
            raise ValueError(
                f"drift method {value.method!r} is not one of Evidently's tests: "
                f"{', '.join(sorted(DRIFTS_WHEN))}"
            )
        return value


class Documentation(_Strict):
    spec: str = Field(
        default="model_card.yaml",
        description="The model-card spec (human-written fields), relative to this file.",
    )


class ModelDeclaration(_Strict):
    name: Annotated[str, Field(description="Lower-case identifier: letters, digits, '_'.")]
    description: str
    data: DataSource
    contract: Contract
    estimator: Estimator
    evaluation: Evaluation = Evaluation()
    drift: Drift = Drift()
    out_of_range: Literal["flag", "reject"] = Field(
        default="flag",
        description="Values outside the training range but inside the declared domain: 'flag' "
        "them in the output (default) or 'reject' the request.",
    )
    documentation: Documentation = Documentation()
    schedule: str | None = Field(default=None, description="Retraining cron, e.g. '0 3 * * 1'.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a model name: 1-48 lower-case letters, digits or '_', "
                "starting with a letter"
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from dagster._utils.schedules import is_valid_cron_string

        if value is not None and not is_valid_cron_string(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 3 * * 1')")
        return value

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> ModelDeclaration:
        from lifecycle_pipeline.tasks import task_for

        task = task_for(self.contract.task)
        features = self.contract.features
        for gate_metric, gate in self.evaluation.gates.items():
            try:
                task.check_gate(gate_metric, gate, self.contract)
            except ValueError as exc:
                raise FieldError(("evaluation", "gates", gate_metric), str(exc)) from exc
        for i, item in enumerate(self.evaluation.slices):
            feature = features.get(item.column)
            if feature is None:
                raise FieldError(
                    ("evaluation", "slices", i, "column"),
                    f"{item.column!r} is not a declared feature; declared: {', '.join(features)}",
                )
            if item.bins is not None and feature.type not in ("numeric", "integer"):
                raise FieldError(
                    ("evaluation", "slices", i, "bins"),
                    f"bins need a numeric column; {item.column!r} is {feature.type} "
                    "(list `categories`, or none for every category)",
                )
            if item.bins is None and feature.type != "categorical":
                raise FieldError(
                    ("evaluation", "slices", i, "column"),
                    f"{item.column!r} is {feature.type}; a numeric slice needs `bins`",
                )
        from lifecycle_pipeline.monitoring.drift import DriftError, check_applies

        output_kind = "categorical" if self.contract.task == "multiclass" else "numeric"
        for field, test, kind in (
            ("numeric", self.drift.numeric, "numeric"),
            ("categorical", self.drift.categorical, "categorical"),
            ("prediction", self.drift.prediction, output_kind),
        ):
            if test is None:
                continue
            try:
                check_applies(test.method, kind, f"drift.{field}")  # type: ignore[arg-type]
            except DriftError as exc:
                message = str(exc).split(": ", 1)[1]
                raise FieldError(("drift", field, "method"), message) from exc
        markers = set(self.data.missing_values)
        for name, feature in features.items():
            clash = [c for c in feature.categories or () if c in markers]
            if clash:
                raise FieldError(
                    ("contract", "features", name, "categories"),
                    f"{clash[0]!r} is declared a category of {name!r} and a missing value "
                    "(data.missing_values): a field cannot be both; remove it from one list",
                )
        for i, label in enumerate(self.contract.classes or ()):
            if not isinstance(label.value, bool) and str(label.value) in markers:
                raise FieldError(
                    ("contract", "classes", i, "value"),
                    f"class value {label.value!r} is also declared a missing value "
                    "(data.missing_values): every such label would read as missing",
                )
        unknown = sorted(set(self.drift.columns or ()) - set(features))
        if unknown:
            raise FieldError(("drift", "columns"), f"{unknown} are not declared features")
        for name in self.estimator.params:
            if not isinstance(name, str):
                raise ValueError(f"estimator.params: key {name!r} is not a name")
        if (info.context or {}).get(_ESTIMATOR_CHECKS, True):
            self._check_estimator(task)
        if not self.evaluation.gates:
            raise FieldError(
                ("evaluation", "gates"),
                "declare at least one gate (e.g. `roc_auc: {min: 0.8}`): a model that no "
                f"metric can stop must not ship; gates for a {self.contract.task} task may use "
                f"{', '.join(task.gateable(self.contract))}",
            )
        return self

    def _check_estimator(self, task: TaskStrategy) -> None:
        """The checks that import the declared estimator's library: the class resolves,
        constructs with its defaults and suits the task, the parameters are its own and pass
        its constraints, and nullable features reach it only if it accepts missing values."""
        features = self.contract.features
        try:
            cls = self.estimator.resolve()
            cls()  # a scikit-learn estimator constructs with its defaults
            task.check_estimator(cls, self.estimator.class_)
        except TypeError as exc:
            raise FieldError(
                ("estimator", "class"),
                f"{self.estimator.class_}() cannot be constructed with its defaults ({exc}); "
                "scikit-learn estimators give every constructor parameter a default",
            ) from exc
        except ValueError as exc:
            raise FieldError(("estimator", "class"), str(exc)) from exc
        accepted = set(cls().get_params(deep=False))
        wrong = sorted(set(self.estimator.params) - accepted)
        if wrong:
            raise FieldError(
                ("estimator", "params"),
                f"{wrong} are not parameters of {self.estimator.class_} "
                f"(it takes {', '.join(sorted(accepted))})",
            )
        try:
            self.estimator.build(self.estimator.params)
        except (TypeError, ValueError) as exc:
            raise FieldError(("estimator", "params"), str(exc)) from exc
        nullable = [
            n
            for n, f in features.items()
            if f.nullable and f.type in ("numeric", "integer", "boolean")
        ]
        if nullable and self.estimator.impute == "none" and not _accepts_missing(cls):
            raise FieldError(
                ("estimator", "impute"),
                f"{nullable} are declared nullable, but {self.estimator.class_} does not accept "
                "missing values; declare `impute: median` (or mean), or choose an estimator "
                "that does (e.g. scikit-learn's HistGradientBoosting or RandomForest estimators)",
            )

    @property
    def drift_columns(self) -> tuple[str, ...]:
        return self.drift.columns or self.contract.feature_names


def _accepts_missing(cls: type) -> bool:
    """Whether the estimator fits on missing values, by scikit-learn's own estimator tags."""
    try:
        from sklearn.utils import get_tags

        return bool(get_tags(cls()).input_tags.allow_nan)
    except (ImportError, AttributeError, TypeError, ValueError):
        return False


@dataclass(frozen=True)
class LoadedDeclaration:
    """A validated declaration with where it came from and its content digest.

    ``estimator_checked`` False: loaded with ``estimator_checks=False``, so nothing says its
    estimator resolves or its parameters fit; ``estimator_validated()`` before using it."""

    model: ModelDeclaration
    path: Path
    sha256: str
    estimator_checked: bool = True

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def folder(self) -> Path:
        return self.path.parent

    def spec_path(self) -> Path:
        return (self.folder / self.model.documentation.spec).resolve()

    # Everything a model puts into a shared Dagster deployment is named after it, so models
    # never collide: asset keys under the model's prefix, and job, sensor, schedule,
    # partition-set and resource names starting with the model's name.

    def key(self, stage: str) -> dg.AssetKey:
        """The asset key of one of this model's stages, e.g. ``fraud/trained_model``."""
        import dagster as dg

        return dg.AssetKey([self.name, stage])

    def asset(self, stage: str) -> str:
        """The user string of a stage's key, as lineage records name assets."""
        return f"{self.name}/{stage}"

    def op(self, stage: str) -> str:
        """The op of one of this model's stages: the key a run config's ``ops:`` uses for it
        (``fraud__trained_model``)."""
        return self.key(stage).to_python_identifier()

    def inputs(self, *stages: str) -> dict[str, dg.AssetIn]:
        """Inputs of an asset function, by parameter name, from this model's own stages."""
        import dagster as dg

        return {stage: dg.AssetIn(self.key(stage)) for stage in stages}

    def scoped(self, name: str) -> str:
        """A job, sensor, schedule or resource name of this model, e.g. ``fraud_lifecycle``."""
        return f"{self.name}_{name}"

    @property
    def registry_key(self) -> str:
        """The resource key of this model's data registry."""
        return self.scoped("registry")

    @property
    def data_versions(self) -> dg.DynamicPartitionsDefinition:
        """One partition per data version (the registry tag) of this model."""
        return _partitions(self.scoped("data_versions"))

    @property
    def production_batches(self) -> dg.DynamicPartitionsDefinition:
        """One partition per production batch (the registry tag) scored against this model."""
        return _partitions(self.scoped("production_batches"))

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def estimator_validated(self) -> LoadedDeclaration:
        """This declaration with its estimator checks done too (itself when they were): for a
        command that loaded it structurally and then finds it must build the estimator here.

        The file is validated again and must still hold the bytes loaded first: a declaration
        edited in between would otherwise pass for the one that was checked."""
        if self.estimator_checked:
            return self
        checked = load_declaration(self.path)
        if checked.sha256 != self.sha256:
            raise DeclarationError(
                f"{self.path}: changed while this command ran (sha256 {self.sha256[:12]} when "
                f"loaded, {checked.sha256[:12]} now); run the command again."
            )
        return checked


@functools.cache
def _partitions(name: str) -> dg.DynamicPartitionsDefinition:
    import dagster as dg

    return dg.DynamicPartitionsDefinition(name=name)


def _node_line(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at pydantic location ``loc`` (or its closest parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            child = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if child is None:
                break
            line, node = child[0].start_mark.line + 1, child[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _step(tp: Any, part: str | int) -> Any:
    import types
    import typing

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            found = _step(arg, part) if arg is not type(None) else None
            if found is not None:
                return found
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return next(
            (f.annotation for n, f in tp.model_fields.items() if part in (n, f.alias)), None
        )
    if origin is dict:
        return typing.get_args(tp)[1]
    if origin is tuple:
        return typing.get_args(tp)[0]
    return None


def _keys_allowed(loc: tuple[str | int, ...]) -> list[str]:
    tp: Any = ModelDeclaration
    for part in loc:
        tp = _step(tp, part)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or n for n, f in tp.model_fields.items()]
    return []


def _duplicates(node: yaml.Node | None, loc: tuple[str | int, ...] = ()) -> list[str]:
    found: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.value in first:
                field = ".".join(str(p) for p in (*loc, key.value))
                found.append(f"{line}: {field}: declared twice (first at line {first[key.value]})")
            first.setdefault(key.value, line)
            found += _duplicates(value, (*loc, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += _duplicates(item, (*loc, i))
    return found


def _explain(error: ValidationError, path: Path, root: yaml.Node | None) -> str:
    lines = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function")))
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, FieldError):
            loc = (*loc, *cause.loc)
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = _node_line(root, loc)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = (
                "unknown key (check its spelling and indentation); allowed here: "
                + ", ".join(_keys_allowed(loc[:-1]))
            )
        elif item["type"] == "missing":
            message = "required, but missing"
        elif item["type"] == "literal_error":
            message = message.replace("Input should be", "must be")
        where = f"{path}:{line}" if line else str(path)
        lines.append(f"{where}: {field}: {message}")
    return "\n".join(lines)


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if k.value == key), None)
    return None


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser (the pure-Python one takes ~40 ms per declaration, which adds up over a
    deployment's models); notes duplicated keys, which a plain load would silently drop."""

    duplicated = False

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [key.value for key, _ in node.value]
        if len(keys) != len(set(keys)):
            self.duplicated = True
        return super().construct_mapping(node, deep)


def _load(text: str) -> tuple[Any, bool]:
    loader = _Loader(text)
    try:
        return loader.get_single_data(), loader.duplicated
    finally:
        loader.dispose()


def parse_declaration(text: str, path: Path, *, estimator_checks: bool = True) -> ModelDeclaration:
    """The declaration in a model's ``defs.yaml``: a Dagster component file whose ``type`` is
    the lifecycle model component and whose ``attributes`` are the declaration.

    ``estimator_checks=False`` skips only the checks that import the estimator's library (see
    the module docstring); every other check, and every error message, is the same.

    The node tree that gives errors their line numbers is composed only when there is an error
    to explain."""
    try:
        data, duplicated = _load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise DeclarationError(f"{where}: not valid YAML ({exc}).") from exc
    shape = (
        f"a model's {DECLARATION_FILE} is a Dagster component file: `type: {COMPONENT_TYPE}`, "
        "then the declaration under `attributes:` (name:, data:, contract:, ...)"
    )
    if not isinstance(data, dict):
        raise DeclarationError(f"{path}: {shape}.")
    if duplicated:
        repeated = _duplicates(yaml.compose(text))
        raise DeclarationError(
            f"{path}: invalid model declaration ({len(repeated)} problem(s)):\n"
            + "\n".join(f"{path}:{r}".replace(": attributes.", ": ", 1) for r in repeated)
        )
    unknown = [key for key in data if key not in ("type", "attributes")]  # in file order
    if unknown or data.get("type") not in _COMPONENT_TYPES:
        line = _node_line(yaml.compose(text), (unknown[0] if unknown else "type",))
        found = f"unknown key {unknown[0]!r}" if unknown else f"type is {data.get('type')!r}"
        raise DeclarationError(f"{path}:{line}: {found}; {shape}.")
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        line = _node_line(yaml.compose(text), ("attributes",))
        raise DeclarationError(f"{path}:{line}: attributes: {shape}.")
    try:
        return ModelDeclaration.model_validate(
            attributes, context={_ESTIMATOR_CHECKS: estimator_checks}
        )
    except ValidationError as exc:
        node = _child(yaml.compose(text), "attributes")
        raise DeclarationError(
            f"{path}: invalid model declaration ({exc.error_count()} problem(s)):\n"
            + _explain(exc, path, node)
        ) from exc


def load_declaration(path: Path | str, *, estimator_checks: bool = True) -> LoadedDeclaration:
    """Read and validate a declaration file, or the ``defs.yaml`` of a model folder.

    ``estimator_checks=False``: every check except those that import the declared estimator's
    library, for a command that never builds the estimator (``LoadedDeclaration.
    estimator_checked`` says which it was)."""
    path = Path(path)
    if path.is_dir():
        path = path / DECLARATION_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DeclarationError(
            f"{path}: no such model declaration; `lifecycle contract infer --data FILE` "
            "proposes one from a data file."
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DeclarationError(f"{path}: not UTF-8 text (byte {exc.start}).") from exc
    model = parse_declaration(text, path, estimator_checks=estimator_checks)
    return LoadedDeclaration(
        model=model,
        path=path.resolve(),
        sha256=hashlib.sha256(raw).hexdigest(),
        estimator_checked=estimator_checks,
    )


def models_dir(project_root: Path | None = None) -> Path:
    """The folder holding one folder per declared model (``$LIFECYCLE_MODELS_DIR``, default
    ``<project>/models``)."""
    from lifecycle_pipeline.settings import Settings

    if project_root is not None:
        return project_root / MODELS_DIR
    return Settings.from_env().models_dir


def declared_models(directory: Path | None = None) -> list[str]:
    """Names of the model folders (those holding a ``defs.yaml``), valid or not, sorted."""
    directory = directory or models_dir()
    if not directory.is_dir():
        return []
    return sorted(p.parent.name for p in directory.glob(f"*/{DECLARATION_FILE}"))


def load_model_folder(folder: Path) -> LoadedDeclaration:
    """The declaration of a model folder, whose name must be the folder's: ``--model NAME``,
    asset keys and audit logs all go by it."""
    declaration = load_declaration(folder / DECLARATION_FILE)
    if declaration.name != folder.name:
        raise DeclarationError(
            f"{declaration.path}: name: {declaration.name!r} differs from its folder "
            f"{folder.name!r}; a model's name is its folder's (rename one of them)."
        )
    return declaration


def load_every_model(
    directory: Path | None = None,
) -> tuple[list[LoadedDeclaration], dict[str, DeclarationError]]:
    """Every model folder's declaration, and the error of each folder that does not load."""
    directory = directory or models_dir()
    loaded: list[LoadedDeclaration] = []
    broken: dict[str, DeclarationError] = {}
    verdicts = _Verdicts(directory)
    for name in declared_models(directory):
        try:
            loaded.append(load_model_folder(directory / name))
        except DeclarationError as exc:
            broken[name] = exc
        verdicts.record(name, None if name in broken else loaded[-1])
    verdicts.save()  # the code location's verdicts spare the next `lifecycle status` its own
    return loaded, broken


@functools.cache  # the package's code and the installed distributions, once per process
def _environment_digest() -> str:
    """What a declaration's validity depends on besides its own bytes: this package's code and
    every installed distribution (the estimator's library among them).

    Distributions are named by their ``*.dist-info`` / ``*.egg-info`` folders (name and
    version), listed rather than read: ``importlib.metadata`` parses every METADATA file,
    ~80 ms here, on the path of every `lifecycle status`.
    """
    import sys

    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    installed: set[str] = set()
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as listing:
                installed |= {
                    f"{entry}/{item.name}"
                    for item in listing
                    if item.name.endswith((".dist-info", ".egg-info"))
                }
        except OSError:
            continue  # a zip or a missing folder on sys.path
    digest.update("\n".join(sorted(installed)).encode())
    return digest.hexdigest()


def _resolved_modules(validated: LoadedDeclaration) -> dict[str, str]:
    """The module files a validated declaration's verdict rests on, each with its sha256.

    The declared estimator's own module wherever it lives, and every module this process has
    loaded from outside the installed distributions, the standard library and this package
    (a team's code on ``PYTHONPATH`` or installed editable, and whatever it imported): those
    can change in place without any ``*.dist-info`` changing. Wider than the estimator's
    imports when several models share a process, never narrower: a broader key only costs a
    validation, a narrower one calls a broken model valid.
    """
    import sys

    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    files: set[Path] = set()
    estimator_module = validated.model.estimator.class_.rpartition(".")[0]
    for name, module in list(sys.modules.items()):
        raw = getattr(module, "__file__", None)
        if not raw or not raw.endswith(".py"):
            continue
        path = Path(raw).resolve()
        if name == estimator_module or not (
            path.is_relative_to(PACKAGE_DIR) or any(path.is_relative_to(p) for p in installed)
        ):
            files.add(path)
    return {str(path): _file_sha256(path) for path in sorted(files)}


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""  # gone: never equal to a recorded digest


class _Verdicts:
    """The validation verdicts cache (``<home>/cache/declarations.json``): a declaration whose
    bytes, this package's code, the installed distributions and every module file its
    validation resolved (``_resolved_modules``: a team's estimator module edited in place) are
    those of an earlier successful validation is valid without validating it again
    (validating imports the declared estimator, hence scikit-learn: most of a `lifecycle
    status`). A broken declaration is never cached: it is validated every time, so its error
    is always current.
    """

    def __init__(self, directory: Path, cache: Path | None = None) -> None:
        from lifecycle_pipeline.settings import Settings

        self.directory = directory
        self.cache = cache or Settings.from_env().home / "cache" / "declarations.json"
        try:
            known = json.loads(self.cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        # An entry of the earlier format (a bare verdict, without module digests) is dropped:
        # it says nothing about the modules, so that declaration is validated once more.
        self.known: dict[str, dict[str, Any]] = {
            name: entry
            for name, entry in (known.items() if isinstance(known, dict) else [])
            if isinstance(entry, dict)
            and isinstance(entry.get("verdict"), str)
            and isinstance(entry.get("modules"), dict)
        }
        self.changed = len(self.known) != len(known) if isinstance(known, dict) else True

    def verdict(self, name: str, sha256: str | None = None) -> str:
        """The key of a valid verdict: the declaration's name, the sha256 of its bytes (those
        validated, when given; else the file's now) and the environment's digest."""
        if sha256 is None:
            try:
                sha256 = hashlib.sha256(
                    (self.directory / name / DECLARATION_FILE).read_bytes()
                ).hexdigest()
            except OSError:
                return ""
        environment = _environment_digest()  # cached for the process
        return hashlib.sha256(f"{name}\0{sha256}\0{environment}".encode()).hexdigest()

    def valid(self, name: str) -> bool:
        entry = self.known.get(name)
        if not entry or entry["verdict"] != self.verdict(name):
            return False
        return all(_file_sha256(Path(path)) == digest for path, digest in entry["modules"].items())

    def record(self, name: str, validated: LoadedDeclaration | None) -> None:
        """``validated``: the declaration as loaded (its verdict is keyed by the bytes that
        were validated, not by the file, which may have changed since, and by the module files
        it resolved); None: broken. One loaded without its estimator checks proves nothing
        about them and is not recorded."""
        if validated is not None and not validated.estimator_checked:
            return
        entry = (
            {
                "verdict": self.verdict(name, validated.sha256),
                "modules": _resolved_modules(validated),
            }
            if validated is not None
            else None
        )
        if self.known.get(name) != entry:
            self.changed = True
            if entry:
                self.known[name] = entry
            else:
                self.known.pop(name, None)

    def save(self) -> None:
        if not self.changed:
            return
        try:  # a cache that cannot be written only means the next status validates again
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            partial = self.cache.with_name(f".{self.cache.name}.{os.getpid()}.tmp")
            partial.write_text(json.dumps(self.known, indent=1, sort_keys=True), encoding="utf-8")
            partial.replace(self.cache)
        except OSError:
            pass


def remember_valid(loaded: LoadedDeclaration) -> None:
    """Record that a model folder's declaration validated (the code location loads every
    model this way): the next `lifecycle status` or `history` on it need not validate it."""
    verdicts = _Verdicts(loaded.path.parent.parent)
    verdicts.record(loaded.path.parent.name, loaded)
    verdicts.save()


def valid_model_names(
    directory: Path | None = None, cache: Path | None = None, only: str | None = None
) -> tuple[list[str], dict[str, DeclarationError]]:
    """The model folders whose declaration loads (``only``: that one), and the error of each
    that does not, without validating an unchanged declaration again (``_Verdicts``): what
    `lifecycle status` and `history` need, which read the audit log and the instance only."""
    directory = directory or models_dir()
    verdicts = _Verdicts(directory, cache)
    valid: list[str] = []
    broken: dict[str, DeclarationError] = {}
    for name in [only] if only else declared_models(directory):
        if verdicts.valid(name):
            valid.append(name)
            continue
        try:
            loaded = load_model_folder(directory / name)
        except DeclarationError as exc:
            broken[name] = exc
            verdicts.record(name, None)
            continue
        valid.append(name)
        verdicts.record(name, loaded)
    verdicts.save()
    return valid, broken


def declaration_path(environ: dict[str, str] | None = None) -> Path:
    """Which declaration this process works on: ``$LIFECYCLE_MODEL`` (``--model``: the name of
    a folder under the models folder, a model folder or a defs.yaml), else the only model
    declared. With several declared and none named, the error lists them."""
    from lifecycle_pipeline.settings import Settings

    env = dict(os.environ) if environ is None else environ
    directory = Settings.from_env(env).models_dir
    chosen = env.get("LIFECYCLE_MODEL")
    if not chosen:
        names = declared_models(directory)
        if len(names) != 1:
            found = f"declared: {', '.join(names)}" if names else f"none in {directory}"
            raise DeclarationError(
                f"Which model? Pass --model NAME (or set LIFECYCLE_MODEL); {found}. "
                "`lifecycle new-model NAME --data FILE` declares one."
            )
        chosen = names[0]
    candidate = Path(chosen)
    try:
        named_by_path = candidate.is_file() or (candidate / DECLARATION_FILE).is_file()
    except OSError:  # "File name too long" and the like: not a path, so checked as a name
        named_by_path = False
    if named_by_path:
        return candidate  # an existing declaration or model folder, named by its path
    if not _NAME.fullmatch(chosen):
        raise DeclarationError(
            f"{chosen!r} is not a model name: 1-48 lower-case letters, digits or '_', starting "
            f"with a letter (declared: {', '.join(declared_models(directory)) or 'none'})."
        )
    path = directory / chosen / DECLARATION_FILE
    if not path.is_file():
        raise DeclarationError(
            f"No model {chosen!r}: {path} does not exist (declared: "
            f"{', '.join(declared_models(directory)) or 'none'})."
        )
    return path


def current_declaration(*, estimator_checks: bool = True) -> LoadedDeclaration:
    """The declaration this process works on (``declaration_path``), validated; see
    ``load_declaration`` for ``estimator_checks``."""
    return load_declaration(declaration_path(), estimator_checks=estimator_checks)
