"""Every bad input and fault the reliability suite tries, as data.

The tests are parametrized from these lists, and docs/reliability.md is rendered from the same
lists (tests/reliability/test_table.py fails when it is stale), so the table cannot drift away
from what is actually tested.
"""

from __future__ import annotations

import io
import json
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lifecycle_pipeline.lineage.hashing import canonical_json, sha256_bytes

NOTHING_LOST = (
    "run fails at `data_snapshot`; no `data_snapshot`/`features` materialization for the key; "
    "artifact store byte-identical (sha256 of every file before and after); no temporary files"
)


@dataclass(frozen=True)
class Fault:
    area: str
    name: str
    how: str  # what the test does
    # What the user sees, as the test requires it in the error, the CLI output or the observed
    # value; "…" stands for a part that differs between runs (a digest, a path, a port).
    expected: str
    proof: str = NOTHING_LOST
    make: Callable[[bytes], bytes] | None = None  # for data files: reference CSV -> bad bytes
    key: str | None = None  # for partition keys
    value: Any = None  # what the area's test applies (a config, a spec text, an edit...)
    test: str = ""  # the test that runs it, when not the area's parametrized test

    def shown_in(self, seen: str) -> bool:
        """Whether ``seen`` (an error, a CLI output, an observation) holds ``expected``.

        Each "…" matches any text within one line; everything else must appear verbatim.
        """
        pattern = "[^\n]*?".join(re.escape(part) for part in self.expected.split("…"))
        return re.search(pattern, seen) is not None


def _frame(raw: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(raw), float_precision="round_trip")


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, float_format="%.17g").encode()


def _edit(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[bytes], bytes]:
    return lambda raw: _csv(change(_frame(raw)))


def _set(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object}) if isinstance(value, str) else frame
        frame.loc[row, column] = value  # type: ignore[call-overload]
        return frame

    return change


def _header(raw: bytes) -> bytes:
    return raw.split(b"\n", 1)[0]


DATA_FILES = [
    Fault("data file", "missing column", "drop `mean_area`",
          "column 'mean_area': required column is missing",
          make=_edit(lambda f: f.drop(columns=["mean_area"]))),
    Fault("data file", "extra column", "a `patient_id` column added",
          "column 'patient_id': not part of the dataset contract",
          make=_edit(lambda f: f.assign(patient_id=range(len(f))))),
    Fault("data file", "renamed column", "rename `mean_area` to `area_mean`",
          "column 'mean_area': required column is missing",
          make=_edit(lambda f: f.rename(columns={"mean_area": "area_mean"}))),
    Fault("data file", "wrong dtype", "text `twelve` in `mean_radius` row 7",
          "column 'mean_radius': declared numeric but holds non-numbers (first at row 7: "
          "'twelve')",
          make=_edit(_set("mean_radius", 7, "twelve"))),
    Fault("data file", "NaN feature", "empty `mean_radius` in row 4",
          "column 'mean_radius': 1 missing value(s) but not declared nullable, first at row 4",
          make=_edit(_set("mean_radius", 4, float("nan")))),
    Fault("data file", "infinite feature", "`inf` in `mean_radius` row 4",
          "column 'mean_radius': 1 infinite value(s)",
          make=_edit(_set("mean_radius", 4, float("inf")))),
    Fault("data file", "NaN label", "empty `malignant` in row 3",
          "column 'malignant': 1 missing label(s), first at row 3",
          make=_edit(_set("malignant", 3, float("nan")))),
    Fault("data file", "label out of domain", "`malignant` = 5 in row 2",
          "column 'malignant': label(s) 5 are not among the declared classes [0, 1]",
          make=_edit(_set("malignant", 2, 5))),
    Fault("data file", "0-byte file", "an empty file", "the file is empty (0 data bytes)",
          make=lambda raw: b""),
    Fault("data file", "header only", "the header line and no rows", "the data has no rows",
          make=lambda raw: _header(raw) + b"\n"),
    Fault("data file", "duplicated header column", "`mean_radius` twice in the header",
          "duplicated column header(s) ['mean_radius.1']",
          make=_edit(lambda f: f.assign(**{"mean_radius.1": f["mean_radius"]}))),
    Fault("data file", "duplicated header row", "the header line repeated as the first row",
          "declared numeric but holds non-numbers (first at row 0: 'mean_radius')",
          make=lambda raw: _header(raw) + b"\n" + raw),
    Fault("data file", "non-UTF-8 bytes", "a Latin-1 `ä` in the header",
          "not valid UTF-8 at byte 6; re-export the file as UTF-8",
          make=lambda raw: raw.replace(b"mean_radius", b"mean_r\xe4dius", 1)),
    Fault("data file", "truncated file", "the file cut in the middle of row 283",
          "cannot be parsed as CSV (CSV parse error: Expected 31 columns, got",
          make=lambda raw: raw[: len(raw) // 2]),
]  # fmt: skip

PARTITION_KEYS = [
    Fault("partition key", "parent traversal", "`../x`", "Invalid partition key '../x'",
          key="../x"),
    Fault("partition key", "absolute path", "`/etc/passwd`", "Invalid partition key '/etc/passwd'",
          key="/etc/passwd"),
    Fault("partition key", "path separator", "`data/v1`", "Invalid partition key 'data/v1'",
          key="data/v1"),
    Fault("partition key", "trailing dots", "`data-v1..`", "Invalid partition key 'data-v1..'",
          key="data-v1.."),
    Fault("partition key", "very long", "a 300-character key", "Invalid partition key 'aaaa",
          key="a" * 300),
    Fault("partition key", "unicode", "`données-v1`", "Invalid partition key 'données-v1'",
          key="données-v1"),
    Fault("partition key", "shell metacharacters", "`v1;rm -rf ~`",
          "Invalid partition key 'v1;rm -rf ~'", key="v1;rm -rf ~"),
    Fault("partition key", "unknown version", "`data-v99` (no such tag)",
          "Registry revision 'data-v99' cannot be opened in registry", key="data-v99"),
]  # fmt: skip

STAGE_FAILS = (
    "run fails at `{stage}`; no `{stage}` materialization for the key; artifact store "
    "byte-identical; no temporary files"
)

# value: (stage, config); the test runs the sample model with ``config`` under that stage's op
# (``{"ops": {"breast_cancer__trained_model": {"config": ...}}}``, ``SAMPLE_MODEL.op(stage)``).
CONFIG_AT_LAUNCH = [
    Fault("configuration", name, how, expected, value=value,
          proof="Dagster rejects the run config before a run exists; no materialization of "
          "any stage", test="tests/test_config.py::test_unknown_keys_and_wrong_types_are_"
          "rejected_at_launch")
    for name, how, value, expected in [
        ("unknown key", "`n_trees: 10` (a typo, outside `params:`)",
         ("trained_model", {"n_trees": 10}), "n_trees"),
        ("wrong type", "`seed: many`", ("trained_model", {"seed": "many"}), "seed"),
        ("threshold of the wrong type", "`gates: {roc_auc: high}`",
         ("evaluation", {"gates": {"roc_auc": "high"}}), "gates"),
    ]
]  # fmt: skip

CONFIG_OUT_OF_RANGE = [
    Fault("configuration", name, how, expected, value=value,
          proof="run fails before `data_snapshot` writes; no materialization of any stage; "
          "artifact store empty",
          test="tests/test_config.py::test_out_of_range_values_fail_before_anything_is_written")
    for name, how, value, expected in [
        ("zero trees", "`params: {n_estimators: 0}`",
         ("trained_model", {"params": {"n_estimators": 0}}),
         "The 'n_estimators' parameter of RandomForestClassifier must be an int in the range "
         "[1, inf). Got 0 instead"),
        ("unknown estimator parameter", "`params: {n_trees: 10}`",
         ("trained_model", {"params": {"n_trees": 10}}),
         "['n_trees'] are not parameters of sklearn.ensemble.RandomForestClassifier"),
        ("zero threads", "`threads: 0`", ("trained_model", {"threads": 0}),
         "ops.breast_cancer__trained_model.config.threads = 0"),
        ("negative depth", "`params: {max_depth: -3}`",
         ("trained_model", {"params": {"max_depth": -3}}), "'max_depth' parameter"),
        ("gate not declared", "`gates: {accuracy: 0.9}` (the declaration gates other metrics)",
         ("evaluation", {"gates": {"accuracy": 0.9}}),
         "['accuracy'] are not gated in"),
        ("test split out of range", "`test_size: 0.9`", ("features", {"test_size": 0.9}),
         "ops.breast_cancer__features.config.test_size = 0.9"),
    ]
]  # fmt: skip

# --- model declarations ----------------------------------------------------------------------

# A small valid declaration; each row below breaks one thing in it. A model folder holds it as
# the attributes of a Dagster component file (``declaration()`` gives that file's text); the
# line numbers in the expected messages count lines of that file (after the row's edits),
# starting at 1: two lines more than in this text (``type:``, ``attributes:``).
DECLARATION = """\
name: toy
description: a declaration the reliability suite breaks one field at a time
data:
  path: data/toy.csv
contract:
  target: label
  task: binary
  row: one observation
  classes:
    - {value: 0, name: negative}
    - {value: 1, name: positive, positive: true}
  drop: [row_id]
  features:
    size: {type: numeric, range: [0, null]}
    count: {type: integer}
    colour: {type: categorical, categories: [red, green]}
estimator:
  class: sklearn.ensemble.RandomForestClassifier
  params: {n_estimators: 10}
evaluation:
  gates:
    roc_auc: {min: 0.8}
  slices:
    - column: count
      bins: [3]
schedule: "0 3 * * 1"
"""


COMPONENT = "type: lifecycle_pipeline.LifecycleModel\nattributes:\n"


def declaration(fault: Fault | None = None) -> str:
    """A model folder's ``defs.yaml``: :data:`DECLARATION` with the row's edits (``value``:
    (old, new) pairs, on the unindented text) as the attributes of the lifecycle component."""
    text = DECLARATION
    for old, new in fault.value if fault is not None else ():
        if text.count(old) != 1:
            raise ValueError(f"{old!r} occurs {text.count(old)} times in the declaration")
        text = text.replace(old, new)
    return COMPONENT + textwrap.indent(text, "  ")


REFUSED_AT_LOAD = (
    "refused before any run: `load_declaration` raises `DeclarationError` with the message; "
    "`lifecycle check` exits 2 with it on stderr and writes nothing"
)
REFUSED_WITH_DATA = (
    "`lifecycle check --data` exits 2 and `contract.validate` raises, both naming the column, "
    "the rule and the declaration file"
)
_FORESTS = ("RandomForestClassifier", "RandomForestRegressor")
_CLASSES = "    - {value: 0, name: negative}\n    - {value: 1, name: positive, positive: true}\n"

DECLARATIONS = [
    Fault("declaration", "estimator module missing", "`class: no_such_package.Forest`",
          "defs.yaml:20: estimator.class: cannot import module 'no_such_package'",
          proof=REFUSED_AT_LOAD,
          value=[("sklearn.ensemble.RandomForestClassifier", "no_such_package.Forest")]),
    Fault("declaration", "estimator class missing",
          "`class: sklearn.ensemble.RandomJungleClassifier`",
          "defs.yaml:20: estimator.class: module 'sklearn.ensemble' has no class "
          "'RandomJungleClassifier'", proof=REFUSED_AT_LOAD,
          value=[("RandomForestClassifier", "RandomJungleClassifier")]),
    Fault("declaration", "feature declared twice", "`size:` a second time under "
          "`contract.features` (YAML alone would keep the last silently)",
          "defs.yaml:19: contract.features.size: declared twice (first at line 16)",
          proof=REFUSED_AT_LOAD,
          value=[("    colour: {type: categorical, categories: [red, green]}\n",
                  "    colour: {type: categorical, categories: [red, green]}\n"
                  "    size: {type: integer}\n")]),
    Fault("declaration", "one class", "a binary task with only `{value: 1, ...}` under "
          "`classes`",
          "defs.yaml:11: contract.classes: a binary task needs at least 2 classes (found 1)",
          proof=REFUSED_AT_LOAD, value=[("    - {value: 0, name: negative}\n", "")]),
    Fault("declaration", "gate on a metric the task lacks", "`rmse: {max: 0.5}` in a binary "
          "task's gates",
          "defs.yaml:24: evaluation.gates.rmse: …not a metric of a binary task; gates may "
          "use accuracy, precision, recall, f1, roc_auc, brier, ece",
          proof=REFUSED_AT_LOAD, value=[("roc_auc: {min: 0.8}", "rmse: {max: 0.5}")]),
    Fault("declaration", "gate in the wrong direction", "`rmse: {min: 0.5}` in a regression "
          "task's gates",
          "defs.yaml:21: evaluation.gates.rmse: …lower is better for rmse, so its gate is "
          "`max:`, not `min:`", proof=REFUSED_AT_LOAD,
          value=[("task: binary", "task: regression"), ("  classes:\n" + _CLASSES, ""),
                 _FORESTS, ("roc_auc: {min: 0.8}", "rmse: {min: 0.5}")]),
    Fault("declaration", "unknown key", "`paramz:` (a typo of `params:`) under `estimator`",
          "defs.yaml:21: estimator.paramz: unknown key…allowed here: class, params, scale, "
          "impute, unseen_categories, trusted_types", proof=REFUSED_AT_LOAD,
          value=[("  params:", "  paramz:")]),
    Fault("declaration", "categorical type on a float column", "`size: {type: categorical}`, "
          "the data holding measurements like 0.5",
          "against the contract in …defs.yaml: column 'size': declared categorical but holds "
          "floating-point numbers", proof=REFUSED_WITH_DATA,
          value=[("size: {type: numeric, range: [0, null]}", "size: {type: categorical}")],
          test="tests/test_declaration.py::test_categorical_type_on_a_float_column_is_named_"
          "with_the_declaration"),
    Fault("declaration", "target absent from the data", "the data file without the `label` "
          "column the contract names as target",
          "against the contract in …defs.yaml: column 'label': required column is missing",
          proof=REFUSED_WITH_DATA, value=[],
          test="tests/test_declaration.py::test_target_absent_from_the_data_is_named_with_the_"
          "declaration"),
    Fault("declaration", "invalid cron schedule", "`schedule: \"every monday\"`",
          "defs.yaml:28: schedule: 'every monday' is not a cron expression (e.g. '0 3 * * 1')",
          proof=REFUSED_AT_LOAD, value=[("0 3 * * 1", "every monday")]),
    Fault("declaration", "slice on an undeclared column", "`- column: weight` under "
          "`evaluation.slices` (no such feature)",
          "defs.yaml:26: evaluation.slices.0.column: 'weight' is not a declared feature…size, "
          "count, colour", proof=REFUSED_AT_LOAD,
          value=[("- column: count", "- column: weight")]),
]  # fmt: skip

# What the code location does with each model folder (tests/test_component_loader.py).
COMPONENT_LOADING = [
    Fault("declaration", "defect in the package's code", "a `TypeError` raised by our "
          "`model_definitions` while building every model",
          "building model 'breast_cancer' (…) failed with a defect in lifecycle_pipeline, not in "
          "its declaration: TypeError: model_definitions() got an unexpected keyword argument",
          proof="loading the models raises (the code location fails to load) with the defect's "
          "traceback chained; no model is shown as \"BROKEN DECLARATION\"",
          test="tests/test_component_loader.py::test_a_defect_in_our_code_fails_loading_naming_"
          "the_model"),
    Fault("declaration", "typo beside a valid model", "`out_of_rnge:` in diabetes's "
          "`defs.yaml`, breast_cancer intact", "defs.yaml:78: out_of_rnge: unknown key",
          proof="diabetes is the only broken model and has no asset; breast_cancer's assets load",
          test="tests/test_component_loader.py::test_a_typo_shows_that_model_broken_and_the_"
          "others_load"),
]  # fmt: skip

MODEL_CARD_SPECS = [
    Fault("model-card spec", "not YAML", "`model: [unclosed`", "not valid UTF-8 YAML",
          proof=STAGE_FAILS.format(stage="model_card"), value=b"model: [unclosed\n"),
    Fault("model-card spec", "non-UTF-8 bytes", "a Latin-1 `ä` in a value",
          "not valid UTF-8 YAML", proof=STAGE_FAILS.format(stage="model_card"),
          value=b"model:\n  name: d\xe4ta\n"),
    Fault("model-card spec", "not a mapping", "a YAML list at the top level",
          "the top level must be a mapping, got list",
          proof=STAGE_FAILS.format(stage="model_card"), value=b"- model\n- owners\n"),
    Fault("model-card spec", "wrong type", "`owners: just a string` (a list is required)",
          "model.owners", proof=STAGE_FAILS.format(stage="model_card"),
          value=b"model:\n  owners: just a string\n"),
    Fault("model-card spec", "unknown section", "`modle:` (a typo of `model:`)", "modle",
          proof=STAGE_FAILS.format(stage="model_card"), value=b"modle:\n  name: typo\n"),
]  # fmt: skip


def _rows(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _cell(column: str, row: int, value: object) -> Callable[[pd.DataFrame], bytes]:
    def edit(frame: pd.DataFrame) -> bytes:
        frame = frame.astype({column: object}) if isinstance(value, str) else frame
        frame.loc[row, column] = value  # type: ignore[call-overload]
        return _rows(frame)

    return edit


PREDICT_PROOF = "`lifecycle predict` exits 2; no output file is written"

PREDICT_INPUTS = [
    Fault("predict input", "missing column", "`worst_texture` dropped",
          "column 'worst_texture': missing", proof=PREDICT_PROOF,
          value=lambda f: _rows(f.drop(columns=["worst_texture"]))),
    Fault("predict input", "text value", "`large` in `mean_area` row 4",
          "row 4, column 'mean_area': 'large' is not a number", proof=PREDICT_PROOF,
          value=_cell("mean_area", 4, "large")),
    Fault("predict input", "outside the declared domain", "`worst_radius` = -5 in row 2",
          "row 2, column 'worst_radius': -5 outside the declared domain [0, +inf)",
          proof=PREDICT_PROOF, value=_cell("worst_radius", 2, -5.0)),
    Fault("predict input", "missing value", "empty `mean_area` in row 3",
          "row 3, column 'mean_area': missing value", proof=PREDICT_PROOF,
          value=_cell("mean_area", 3, float("nan"))),
    Fault("predict input", "infinite value", "`inf` in `mean_area` row 1",
          "row 1, column 'mean_area': inf is not finite", proof=PREDICT_PROOF,
          value=_cell("mean_area", 1, float("inf"))),
    Fault("predict input", "header only", "the header line and no rows", "no rows to score",
          proof=PREDICT_PROOF, value=lambda f: _rows(f.iloc[0:0])),
    Fault("predict input", "0-byte file", "an empty file", "the file is empty (0 data bytes)",
          proof=PREDICT_PROOF, value=lambda f: b""),
    Fault("predict input", "non-UTF-8 bytes", "a Latin-1 `ä` in the header",
          "not valid UTF-8 at byte 6", proof=PREDICT_PROOF,
          value=lambda f: _rows(f).replace(b"mean_radius", b"mean_r\xe4dius", 1)),
]  # fmt: skip

REGISTRY_REFERENCES = [
    Fault("registry reference", "moved tag", "`data-v1` force-moved to other bytes after it "
          "was materialized", "Data version 'data-v1' now resolves to md5 … but it was first "
          "materialized from md5 …. The tag was moved or the registry rewritten",
          proof="run fails at `data_snapshot`, naming both md5s; the earlier materialization "
          "and store untouched",
          test="tests/test_bad_versions.py::test_moved_tag_fails_loudly_naming_both_md5s"),
    Fault("registry reference", "missing remote object", "DVC cache and remote both emptied",
          "Data version 'data-v1': the content of 'data/breast_cancer.csv' (md5 …) is neither "
          "in the registry cache nor in its DVC remote: … Run `dvc push`",
          proof="read refused, naming version, md5 and `dvc push`",
          test="tests/test_registry.py::test_missing_remote_object_names_the_version_and_md5"),
    Fault("registry reference", "file not tracked by DVC", "a path that git tracks, DVC not",
          "'data/.gitignore' at 'data-v1' is not tracked by DVC (no md5 in its .dvc file)",
          proof="resolve refused before any read",
          test="tests/test_registry.py::test_file_not_tracked_by_dvc_is_refused"),
    Fault("registry reference", "unknown registry", "a registry URL that does not exist",
          "Registry revision 'data-v1' cannot be opened in registry", proof="resolve refused "
          "before any read", test="tests/test_registry.py::test_unknown_registry_is_a_clear_"
          "error"),
    Fault("registry reference", "defect while reading", "a `TypeError` or `MemoryError` "
          "raised by the file handle DVC opened", "… raised as itself, not "
          "RegistryError", proof="not reported as \"not stored\" (exit 2, `dvc push`): the "
          "CLI exits 3 with the traceback; an `OSError` or DVC error still reads as not stored",
          test="tests/test_registry_errors.py::test_a_defect_while_reading_is_not_called_not_"
          "stored"),
]  # fmt: skip

# --- tampering -------------------------------------------------------------------------------


def _edit_field(lines: list[bytes]) -> list[bytes]:
    lines[2] = lines[2].replace(b"person-2", b"person-X")
    return lines


def _delete(lines: list[bytes]) -> list[bytes]:
    del lines[2]
    return lines


def _swap(lines: list[bytes]) -> list[bytes]:
    lines[1], lines[2] = lines[2], lines[1]
    return lines


def _forge(lines: list[bytes]) -> list[bytes]:
    """A well-formed record with the right position, chain and hash, but no key."""
    last = json.loads(lines[-1])
    forged = {
        "seq": last["seq"] + 1,
        "time": last["time"],
        "kind": "promotion",
        "version": "v-evil",
        "data": {"approver": "nobody", "reason": "forged"},
        "prev": last["hash"],
    }
    forged["hash"] = sha256_bytes(canonical_json(forged))
    forged["mac"] = "0" * 64
    return [*lines, canonical_json(forged) + b"\n"]


def _rehash(lines: list[bytes]) -> list[bytes]:
    """An edit whose hash is recomputed: the chain of later records and the MAC both break."""
    record = json.loads(lines[3])
    record["data"]["reason"] = "rewritten"
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
    record["hash"] = sha256_bytes(canonical_json(body))
    lines[3] = canonical_json(record) + b"\n"
    return lines


def _insert(lines: list[bytes]) -> list[bytes]:
    return [*lines[:2], lines[1], *lines[2:]]


def _torn(lines: list[bytes]) -> list[bytes]:
    return [*lines[:-1], lines[-1][: len(lines[-1]) // 2]]


AUDIT_PROOF = (
    "`lifecycle audit verify` exits 1 naming the record; appending is refused and the file "
    "stays byte-identical"
)

AUDIT_TAMPERING = [
    Fault("tampering", f"audit log: {name}", how, expected, proof=AUDIT_PROOF, value=edit)
    for name, how, edit, expected in [
        ("edited field", "an approver's name changed in record 2", _edit_field,
         "record 2 (line 3): content was edited"),
        ("deleted record", "record 2 removed", _delete,
         "record 2 is missing before line 3: deleted from the log"),
        ("swapped records", "records 1 and 2 exchanged", _swap,
         "record 2 (line 2): out of order: records were reordered"),
        ("inserted record", "record 1 duplicated after itself", _insert,
         "record 1 (line 3): a second copy of record 1: it was inserted"),
        ("forged appended record", "a well-chained record hashed without the key", _forge,
         "record 5 (line 6): not written with the audit key"),
        ("edited and re-hashed", "record 3 edited and its hash recomputed", _rehash,
         "record 3 (line 4): not written with the audit key"),
        ("torn last record", "the last line cut in half", _torn, "record 4: torn"),
    ]
]  # fmt: skip

WITNESS_PROOF = (
    "`lifecycle audit verify` exits 1 naming the checkpoint and the record; `status` and any "
    "promotion refuse; a torn record recovered with `audit recover` still verifies"
)
WITNESS_TEST = (
    "tests/test_audit_checkpoint.py::test_a_log_cut_back_replaced_or_deleted_is_caught_by_its_"
    "signed_checkpoint"
)

# Each leaves a log that verifies on its own; only evidence outside it (a signed checkpoint of
# its head, here, and the instance's copy of every governance change) shows what was done.
AUDIT_WITNESS = [
    Fault("tampering", f"audit log: {name}", how, expected, proof=WITNESS_PROOF,
          test=WITNESS_TEST, value=name)
    for name, how, expected in [
        ("last record cut off", "the final record deleted after a checkpoint of the head",
         "witnessed record 4 (head …), which the log no longer holds (4 record(s)): the log "
         "was cut short or restored from an older copy"),
        ("three records cut off", "the last three records deleted",
         "witnessed record 4 (head …), which the log no longer holds (2 record(s))"),
        ("older copy restored", "a copy taken at 5 records put back after 2 more and a new "
         "checkpoint", "witnessed record 6 (head …), which the log no longer holds (5 record(s))"),
        ("replaced by another chain", "a new log of as many records, written with the key",
         "witnessed hash … for record 4, the log holds …: the log was replaced"),
        ("deleted", "the log file removed",
         "witnessed 5 record(s), but the log … does not exist: it was deleted"),
        ("checkpoint forged", "the checkpoint's head rewritten to a shorter log's",
         "signature does not verify with …: the checkpoint was forged or edited"),
    ]
]  # fmt: skip

FOLDER_PROOF = "load refused, naming the file"
FOLDER_TEST = "tests/test_artifact_store.py::test_tampered_folder_artifact_names_the_file"

FOLDER_TAMPERING = [
    Fault("tampering", "folder artifact: file edited", "`card.md` of a model-card folder "
          "rewritten", "Artifact file …/card.md was modified after it was written",
          proof=FOLDER_PROOF, test=FOLDER_TEST,
          value=lambda folder: (folder / "card.md").write_bytes(b"# edited\n")),
    Fault("tampering", "folder artifact: file added", "an `extra.txt` added to a model-card "
          "folder", "changed after it was written: added ['extra.txt'], removed []",
          proof=FOLDER_PROOF, test=FOLDER_TEST,
          value=lambda folder: (folder / "extra.txt").write_text("x")),
    Fault("tampering", "folder artifact: file removed", "`card.html` deleted from a model-card "
          "folder", "changed after it was written: added [], removed ['card.html']",
          proof=FOLDER_PROOF, test=FOLDER_TEST,
          value=lambda folder: (folder / "card.html").unlink()),
]  # fmt: skip

STORE_TAMPERING = [
    Fault("tampering", "artifact byte flipped", "one byte of a stored artifact inverted",
          "Artifact … has sha256 … but … was recorded: it was modified after it was written",
          proof="load refused, naming the path, both digests and what to do",
          test="tests/test_artifact_store.py::test_tampered_artifact_is_refused_naming_it"),
    Fault("tampering", "bundle part rewritten", "a part of an artifact zip rewritten with a "
          "valid CRC", "bundle.zip: part 'version.json' does not match its manifest digest",
          proof="decode refused",
          test="tests/test_artifact_store.py::test_tampered_part_inside_bundle_is_named"),
    *FOLDER_TAMPERING,
    Fault("tampering", "package: model byte flipped", "one byte of `model.skops` inverted",
          "model.skops: sha256 … differs from manifest.json",
          proof="`lifecycle verify` exits 1, also naming the signature's hash mismatch for "
          "`model.skops`",
          test="tests/test_package.py::test_flipped_model_byte_fails_naming_the_file"),
    Fault("tampering", "package: manifest edited", "a metric in `manifest.json` raised",
          "model.sig: does not verify with …: the signed digest differs for manifest.json",
          proof="`lifecycle verify` exits 1",
          test="tests/test_package.py::test_edited_manifest_fails_naming_the_file"),
    Fault("tampering", "package: signature removed", "`model.sig` deleted",
          "model.sig: signature file is missing; the package is unsigned",
          proof="`lifecycle verify` exits 1",
          test="tests/test_package.py::test_removed_signature_fails_naming_the_file"),
    Fault("tampering", "package: signed by another key", "verify against a foreign key",
          "model.sig: does not verify with …/other/keys/signing-key.pub",
          proof="`lifecycle verify` exits 1",
          test="tests/test_package.py::test_foreign_key_does_not_verify"),
    Fault("tampering", "package: untrusted skops type", "a `pandas.Timestamp` in the model "
          "file", "model.skops: untrusted type(s) …Timestamp…; refusing to load",
          proof="the model is not loaded",
          test="tests/test_package.py::test_untrusted_type_in_model_is_refused"),
    Fault("tampering", "package: pickle as model", "a pickle whose unpickling writes a file, "
          "as `model.skops`", "model.skops: not a skops file; refusing to load",
          proof="refused before anything is unpickled: the payload's file is never written",
          test="tests/reliability/test_tampering.py::test_a_pickle_in_a_package_is_never_"
          "unpickled"),
    Fault("tampering", "pickle loaders in the code", "every call in `lifecycle_pipeline/`",
          "pickle loaders called in lifecycle_pipeline/: []",
          proof="static scan of the source (AST) for pickle, joblib, dill and cloudpickle "
          "loads, read_pickle, allow_pickle=True and trusted=True",
          test="tests/reliability/test_tampering.py::test_no_code_path_can_load_a_pickle"),
]  # fmt: skip

# --- crashes, concurrency, exposure ----------------------------------------------------------

CRASH_PROOF = (
    "no artifact visible to readers (every non-temporary file is a recorded, verifying "
    "materialization); `lifecycle runs recover` marks the run FAILURE; `lifecycle resume` "
    "re-executes from the failure; fingerprint equals a clean run's"
)

# value: the failpoint; ``{model}`` stands for the name of the model whose run is killed.
CRASHES = [
    Fault("crash", "SIGKILL during training", "`dagster job execute` killed at failpoint "
          "`training.fitted`", "marked FAILURE: the run worker (pid", proof=CRASH_PROOF,
          value="training.fitted"),
    Fault("crash", "SIGKILL while writing the package", "killed at `tree.half_written:"
          "<model>/deployment_package`, half of the package's files on disk",
          "marked FAILURE: the run worker (pid", proof=CRASH_PROOF,
          value="tree.half_written:{model}/deployment_package"),
    Fault("crash", "SIGKILL while appending to the audit log", "a writer killed at "
          "`audit.half_appended`", "torn (no line end)",
          proof="verify reports the torn record and appends are refused; `lifecycle audit "
          "recover` keeps the torn bytes aside and records their sha256; the log verifies",
          test="tests/reliability/test_crashes.py::test_a_writer_killed_mid_append_leaves_a_"
          "torn_record_that_is_reported"),
    Fault("crash", "failed rename", "the store's rename fails with ENOSPC (disk full)",
          "Artifact breast_cancer/data_snapshot/data-v1 could not be written to …: No space left "
          "on device",
          proof="the error names the artifact and its path and chains the operating system's "
          "error (errno 28); no file left, temporary or final",
          test="tests/test_artifact_store.py::test_failed_write_leaves_no_temporary_file"),
]  # fmt: skip

GOVERNANCE_KILL_TEST = (
    "tests/reliability/test_governance_crashes.py::test_a_change_killed_between_its_writes_is_"
    "named_then_completed_or_withdrawn"
)
GOVERNANCE_KILL_PROOF = (
    "writes in order: intent record, production_model event, commit record, signed checkpoint "
    "(governance_commit.py says why); `audit verify` and `doctor` exit 1 naming the record "
    "and `audit recover`, `status` refuses; the next command (`audit recover` after a "
    "promotion, `rollback --to data-v1` after a rollback) withdraws a change the instance "
    "never held or completes one it holds, and says which; then the log, the newest signed "
    "checkpoint and the newest production_model event agree, and `audit verify` and `doctor` "
    "exit 0"
)
_BEGUN = "incomplete governance change: the {} was begun (intent record) but never reached"
_HELD = "incomplete governance change: the {} is in the Dagster instance (production_model event)"
_UNWITNESSED = "incomplete governance change: the {} is committed in the log and the instance"

# value: (command, failpoint); the world serves data-v1 (and data-v2 before a rollback).
GOVERNANCE_KILLS = [
    Fault("crash", f"SIGKILL of `{command}` {where}", f"`lifecycle {command}` killed at "
          f"`{point}`", text.format(change), proof=GOVERNANCE_KILL_PROOF,
          test=GOVERNANCE_KILL_TEST, value=(command, point))
    for command, change in (("promote", "promotion of data-v2"),
                            ("rollback", "rollback of data-v1"))
    for where, point, text in (
        ("after its intent record", "governance.intent_written", _BEGUN),
        ("after its instance event", "governance.event_reported", _HELD),
        ("after its commit record", "governance.committed", _UNWITNESSED),
    )
]  # fmt: skip

RUN_SUCCESS = 'RUN_SUCCESS - Finished execution of run for "breast_cancer_lifecycle".'

CONCURRENCY = [
    Fault("concurrency", "same partition, two processes", "two `dagster job execute` of "
          "data-v1 started together on one instance and store", RUN_SUCCESS,
          proof="identical fingerprints; identical bytes share one content-addressed path, the "
          "rest are distinct immutable files, each verifying its recorded digest; no temporary "
          "files; the audit log verifies with each run once",
          test="tests/reliability/test_concurrency.py::test_two_processes_materializing_the_"
          "same_partition"),
    Fault("concurrency", "four partitions on SQLite", "four CLI runs, multiprocess executor",
          RUN_SUCCESS, proof="four distinct fingerprints; no lock error in any output",
          test="tests/test_deployment.py::test_four_partitions_at_once_on_sqlite_with_the_"
          "multiprocess_executor"),
    Fault("concurrency", "four partitions on PostgreSQL", "the same on a real PostgreSQL",
          RUN_SUCCESS, proof="four distinct fingerprints; no lock error in any output",
          test="tests/test_deployment.py::test_four_partitions_at_once_on_postgres_with_the_"
          "multiprocess_executor"),
    Fault("concurrency", "audit writers", "4 processes x 20 appends onto a 5-record log",
          "85 record(s) verify", proof="`lifecycle audit verify` exits 0; each writer's 20 "
          "records present once",
          test="tests/test_audit.py::test_concurrent_writers_extend_one_chain"),
    Fault("concurrency", "two promotions of one model", "`promote data-v2` twice at once: "
          "the first paused while it holds the log's governance lock",
          "refused: data-v2 is already serving", proof="the second waits for the lock, then "
          "is refused with exit 2; one promotion of data-v2 in the log, recording data-v1 as "
          "its predecessor; the three stores agree",
          test="tests/reliability/test_governance_crashes.py::test_concurrent_promotions_of_"
          "one_model_record_the_right_predecessor"),
    Fault("concurrency", "dev key race", "6 processes create the signing key at once, each "
          "signing its own copy of a package", "signature model.sig verifies with "
          "signing-key.pub", proof="one public key id from all six; `lifecycle verify` of "
          "every copy against the pair on disk exits 0",
          test="tests/test_package.py::test_dev_key_created_by_racing_processes_is_one_"
          "matching_pair"),
]  # fmt: skip

WEB_PROOF = (
    "once the webserver answers HTTP (and, for `make ui`, every code server accepts "
    "connections), every listening socket of the whole process tree is on loopback, the "
    "webserver's port among them; the tree stops on SIGTERM"
)
CODE_PROOF = (
    "once the proxy and the gRPC server it runs accept connections, every listening socket of "
    "the process tree is on loopback, the unit's port among them; the tree stops on SIGTERM"
)

EXPOSURE = [
    Fault("exposure", "webserver binds to loopback", "`make ui`'s `dagster dev` line "
          "(webserver, daemon, code servers) and the webserver's systemd unit, on free ports",
          "Serving dagster-webserver on http://127.0.0.1:", proof=WEB_PROOF,
          test="tests/reliability/test_exposure.py::test_servers_listen_on_loopback_only"),
    Fault("exposure", "code server binds to loopback", "the code server's systemd unit, on a "
          "free port", "Started Dagster code proxy server for module "
          "lifecycle_pipeline.definitions on port", proof=CODE_PROOF,
          test="tests/reliability/test_exposure.py::test_servers_listen_on_loopback_only"),
    Fault("exposure", "secrets stay out of the record", "sentinel secrets in the environment "
          "of two CLI runs", "places holding a secret: []", proof="absent from every event, "
          "run tag and config, the process output, and every artifact file (documentation "
          "bundle, package)",
          test="tests/reliability/test_concurrency.py::test_no_environment_secret_is_recorded"),
    Fault("exposure", "dev keys private and ignored", "the dev signing and audit keys created "
          "in a fresh home", "-rw-------", proof="`ls -l` shows `-rw-------` for both keys, "
          "their folder `drwx------`; `git check-ignore` ignores both paths",
          test="tests/reliability/test_exposure.py::test_dev_keys_are_private_and_ignored"),
]  # fmt: skip

IDENTIFIER_PROOF = (
    "exit 2 before anything is opened; no file is created or changed anywhere under the "
    "test's folder (the instance, the home, the audit log, the output's folder)"
)
UNKNOWN_RUN = "0f8e4b7a-52c1-4bd2-9d0e-2b5a1c3d4e5f"

# value: the command line; {tmp} is the test's folder, {file} a file in it, {dir} a folder.
IDENTIFIERS = [
    Fault("identifier", name, how, expected, proof=IDENTIFIER_PROOF, value=argv)
    for name, how, argv, expected in [
        ("run id crafted as a path", "`reproduce data-v1 --run ../../../x`",
         ("reproduce", "data-v1", "--run", "../../../x"), "Invalid run id '../../../x'"),
        ("run id unknown", "`reproduce data-v1 --run` a well-formed id of no run",
         ("reproduce", "data-v1", "--run", UNKNOWN_RUN), f"No run {UNKNOWN_RUN} in this instance"),
        ("run id unknown to resume", "`resume` a well-formed id of no run",
         ("resume", UNKNOWN_RUN), f"No run {UNKNOWN_RUN} in this instance"),
        ("run ids to recover", "`runs recover x/../y`", ("runs", "recover", "x/../y"),
         "Invalid run id 'x/../y'"),
        ("version crafted as a path", "`reproduce ../x`", ("reproduce", "../x"),
         "Invalid partition key '../x'"),
        ("rollback target", "`rollback --to 'a b'`",
         ("rollback", "--to", "a b", "--approver", "a", "--reason", "r"),
         "Invalid partition key 'a b'"),
        ("export version", "`audit export --version data/v1`",
         ("audit", "export", "--version", "data/v1"), "Invalid partition key 'data/v1'"),
        ("model name crafted as a path", "`--model ../no-such-model status`",
         ("--model", "../no-such-model", "status"), "'../no-such-model' is not a model name"),
        ("model name too long", "`--model` with a 300-character name, then `status`",
         ("--model", "m" * 300, "status"), "'mmmm…' is not a model name"),
        ("approver with a line break", "`promote data-v1 --approver` 'ana', a newline and a "
         "forged history line", ("promote", "data-v1", "--approver",
         "ana\n2026-12-01T09:00:00+00:00  promotion  data-v9  by eve", "--reason", "r"),
         "approver 'ana\\n2026-12-01T09:00:00+00:00  promotion  data-v9  by eve' holds a "
         "control character (U+000A at position 3)"),
        ("reason with a direction override", "`rollback --reason` holding U+202E (right-to-left "
         "override)", ("rollback", "--approver", "a", "--reason", "fix \u202eesaeler"),
         "reason 'fix \\u202eesaeler' holds a control character (U+202E at position 4)"),
        ("model not declared", "`--model nosuch status`", ("--model", "nosuch", "status"),
         "No model 'nosuch': …/models/nosuch/defs.yaml does not exist"),
        ("replay input missing", "`replay data-v1 --input` a missing file",
         ("replay", "data-v1", "--input", "{tmp}/absent.csv"),
         "--input '…/absent.csv' does not exist"),
        ("public key missing", "`promote data-v1 --public-key` a missing file",
         ("promote", "data-v1", "--approver", "a", "--reason", "r", "--public-key",
          "{tmp}/absent.pem"), "--public-key '…/absent.pem' does not exist"),
        ("report under a file", "`reproduce data-v1 --output` inside a regular file",
         ("reproduce", "data-v1", "--output", "{file}/report.json"),
         "--output '…/report.json' cannot be written: …/file is not a writable folder"),
        ("prediction output is a folder", "`predict data-v1 rows.csv --output` a folder",
         ("predict", "data-v1", "{file}", "--output", "{dir}"), "--output '…/dir' is a folder"),
        ("declaration data missing", "`new-model credit --data` a missing file",
         ("new-model", "credit", "--data", "{tmp}/absent.csv"),
         "--data '…/absent.csv' does not exist"),
        ("checkpoint missing", "`audit verify --checkpoint` a missing file",
         ("audit", "verify", "--checkpoint", "{tmp}/absent.json"),
         "--checkpoint '…/absent.json' does not exist"),
    ]
]  # fmt: skip

NEW_MODEL_TEST = (
    "tests/reliability/test_identifiers.py::test_new_model_name_is_refused_before_any_file_is_"
    "written"
)
NEW_MODEL_PROOF = (
    "exit 2 before the data file is read; no file is created anywhere under the test's folder, "
    "which holds the models folder and its parent"
)

# value: the name given to `new-model`; {tmp} is the test's folder (the models folder's parent).
NEW_MODEL_NAMES = [
    Fault("identifier", name, how, expected, proof=NEW_MODEL_PROOF, test=NEW_MODEL_TEST,
          value=value)
    for name, how, value, expected in [
        ("new model crafted as a path", "`new-model ../evil`", "../evil",
         "'../evil' is not a model name"),
        ("new model as an absolute path", "`new-model /…/evil`", "{tmp}/evil",
         "'…/evil' is not a model name"),
        ("new model name too long", "`new-model` with a 300-character name", "m" * 300,
         "'mmmm…' is not a model name"),
    ]
]  # fmt: skip

DOCTOR_PROOF = (
    "`lifecycle doctor` exits 1; the problem and the command that fixes it are on one line "
    "naming the file or tag"
)
DOCTOR_TEST = "tests/test_doctor.py::test_doctor_names_each_problem_and_its_fix"
REBUILD_PROOF = (
    "`lifecycle instance rebuild` exits 0; the damaged bytes are kept aside byte-identical; "
    "then `doctor` exits 0 and status, history, dynamic partitions, lineage (latest, trace), "
    "every check verdict, the recorded run config and a new promotion are as before"
)
REBUILD_TEST = "tests/test_doctor.py::test_rebuild_restores_status_history_lineage_and_promotion"

# value: what the test damages (test_doctor.py maps it to the damage).
INSTANCE_DAMAGE = [
    Fault("instance", name, how, expected, proof=DOCTOR_PROOF, test=DOCTOR_TEST, value=name)
    for name, how, expected in [
        ("truncated index.db", "the first half of `history/runs/index.db` kept",
         "…/history/runs/index.db: event index (every asset event, dynamic partitions): "
         "database disk image is malformed; fix: lifecycle instance rebuild"),
        ("truncated runs.db", "the first half of `history/runs.db` kept",
         "…/history/runs.db: run storage: database disk image is malformed; fix: lifecycle "
         "instance rebuild"),
        ("truncated run shard", "the first half of one run's `history/runs/<run_id>.db` kept",
         "…/history/runs/….db: event log of run …: database disk image is malformed; fix: "
         "lifecycle instance rebuild"),
        ("missing artifact", "the data-v2 trained_model zip deleted",
         "…/trained_model/data-v2/….zip: is missing (recorded by breast_cancer/trained_model@"
         "data-v2 in run …); fix: restore it from a backup, or re-materialize: `dagster asset "
         "materialize"),
        ("moved registry tag", "`git tag -f data-v1` onto data-v2's commit",
         "tag data-v1 in …: now resolves to md5 … (commit …), but was first materialized from "
         "md5 … (commit …, run …); fix: `git -C … tag -f data-v1 …`"),
        ("log cut short", "the audit log's last two records (the promotion: its intent and its "
         "commit) deleted",
         "…/breast_cancer.jsonl: record 3, the promotion of data-v1 (run-less event), is "
         "recorded in the Dagster instance but missing from the log"),
    ]
]  # fmt: skip

INSTANCE_REFUSED_EVENT = Fault(
    "instance",
    "promotion refused by a damaged instance",
    "`history/runs/.db` (the run-less event storage) truncated, then `promote data-v2`",
    "promotion of data-v2 did NOT take effect: the Dagster instance refused its production_model "
    "event; intent record … was withdrawn",
    proof="exit 2; the log holds the intent and its withdrawal, no promotion of data-v2; "
    "`status` still shows data-v1 serving",
    test="tests/reliability/test_governance_crashes.py::test_a_promotion_the_instance_refuses_"
    "does_not_take_effect",
)

INSTANCE_REBUILD = [
    Fault("instance", f"rebuild: {name}", how, expected, proof=REBUILD_PROOF,
          test=REBUILD_TEST, value=name)
    for name, how, expected in [
        ("runs.db", "`history/runs.db` truncated, then `instance rebuild`",
         "restored: runs: 3 from their audit records and run-status events"),
        ("index.db", "`history/runs/index.db` truncated",
         "restored: events: 4 log(s) from their own file"),
        ("run shard", "one run's event log truncated",
         "lost: run …: step logs (its event log was damaged; its asset, check and run-status "
         "events came from the index)"),
        ("run-less shard", "`history/runs/.db` (promotions) truncated",
         "restored: events: 1 log(s) from the index, 3 log(s) from their own file"),
        ("schedules.db", "`schedules/schedules.db` truncated",
         "lost: sensor and schedule state, cursors and tick history"),
        ("every SQLite file", "all seven storage files truncated: only the audit log, the "
         "artifacts and the registry are left", "restored: events: 4 log(s) from the audit log"),
    ]
]  # fmt: skip

ROLLBACK_TEST = (
    "tests/test_rollback.py::test_rollback_is_refused_naming_the_evidence_that_"
    "contradicts_the_package"
)
REPLAY_TEST = (
    "tests/test_rollback.py::test_replay_refuses_a_bad_run_id_and_a_tampered_or_unrecorded_package"
)
NOTHING_CHANGED = "refused with exit 2 (1 for a package that does not verify); nothing appended "
NOTHING_CHANGED += "to the audit log"

ON_CALL = [
    Fault("on-call", "rollback after identical re-runs", "every stage of data-v1 "
          "re-materialized alone from identical inputs (the package too: another sha256), then "
          "`rollback --to data-v1`",
          "breast_cancer: …  rollback   data-v1  by cy: v2 misroutes urgent cases  (package …",
          proof="the record names the package that served (by sha256, not the re-built one) "
          "and lists the six identical re-materializations with their runs and evidence",
          test="tests/test_rollback.py::test_rollback_after_identical_rematerializations_"
          "restores_the_package_that_served"),
    Fault("on-call", "rollback to a tampered package", "a byte flipped in the served "
          "package's `model.skops`",
          "package does not verify: stored package: Artifact file …/model.skops was modified "
          "after it was written", proof=NOTHING_CHANGED, test=ROLLBACK_TEST),
    Fault("on-call", "rollback against a different re-training", "data-v1 re-trained with "
          "other hyperparameters after it was packaged",
          "breast_cancer/trained_model was re-materialized in run … and contradicts the "
          "package's lineage: model/fingerprint … (packaged: …)", proof=NOTHING_CHANGED,
          test=ROLLBACK_TEST),
    Fault("on-call", "replay: a run that made no package", "`replay data-v1 --run` a run that "
          "made only a data snapshot", "made no deployment_package of data-v1 (breast_cancer); "
          "the runs that packaged data-v1: …", proof=NOTHING_CHANGED, test=REPLAY_TEST),
    Fault("on-call", "replay: a tampered package", "`replay --package` a copy with a flipped "
          "byte", "replay refused: … does not verify.", proof=NOTHING_CHANGED, test=REPLAY_TEST),
    Fault("on-call", "replay: an unrecorded package", "`replay --package` a copy signed again "
          "outside the pipeline", "verifies, but it is not recorded in this instance: no "
          "deployment_package of breast_cancer data-v1 has sha256 …",
          proof=NOTHING_CHANGED + "; with `--unrecorded` it is replayed and recorded as such",
          test=REPLAY_TEST),
    Fault("on-call", "replay: another version's package", "`replay data-v1 --package` data-v2's "
          "package", "is the package of breast_cancer data-v2, not of breast_cancer data-v1",
          proof=NOTHING_CHANGED, test=REPLAY_TEST),
    Fault("on-call", "reproduce: data tag moved since training", "`reproduce data-v1` after "
          "`git tag -f data-v1` onto data-v2's commit (recorded code commit is not HEAD: "
          "worktree)", "tag data-v1 now points at …; this reproduction read the recorded "
          "commit …", proof="verdict `identical`; the scratch data_snapshot read the recorded "
          "commit and md5; every fingerprint equals the record",
          test="tests/test_reproduce.py::test_version_from_an_earlier_commit_is_reproduced_in_"
          "its_own_worktree_from_its_data"),
    Fault("on-call", "reproduce: recorded registry commit gone", "registry history rewritten "
          "(orphan commit, gc), `data-v1` re-tagged", "data-v1 was trained on registry commit "
          "… of …, and the registry no longer holds that commit",
          proof="exit 2 before any run; no report; the message names the fetch and tag commands "
          "that restore it",
          test="tests/test_reproduce.py::test_recorded_registry_commit_gone_is_refused_naming_it"),
    Fault("on-call", "reproduce: tag moved, code before pins", "a version trained at a commit "
          "whose registry reader predates pins, its tag moved", "now points at …; commit … that "
          "trained it reads data by tag only", proof="exit 2; no worktree built, no run",
          test="tests/test_reproduce.py::test_moved_tag_with_code_that_cannot_pin_is_refused_"
          "saying_how_to_restore"),
    Fault("on-call", "reproduce: worktrees pruned, the newest kept", "`reproduce --prune --keep "
          "1` with two reproduction worktrees", "removed …  freed …", proof="the older folder "
          "is gone and `git worktree list` lacks it; the kept one is still listed; `make clean` "
          "leaves only the main checkout in `git worktree list`",
          test="tests/test_reproduce.py::test_worktrees_are_listed_and_pruned_through_git"),
]  # fmt: skip

# --- governance coverage (issue 29, points 1-4) ---------------------------------------------
# Every model on disk verified, every record its log's model's, no answer from a log that does
# not verify, and the instance's event index agreeing with each run's own event log.

COVERAGE_TEST = "tests/test_doctor.py::"
COVERAGE = [
    Fault("coverage", "declaration broken, approver edited", "a typo (`descriptoin:`) in "
          "breast_cancer's `defs.yaml` and the approver of its promotion edited in its log; "
          "`audit verify`, `doctor`, `history`, `history --at`, `status` without `--model`",
          "model breast_cancer is not verified: its declaration does not load: …descriptoin: "
          "unknown key",
          proof="each command exits 1 naming the model, why it is not loaded and the edited "
          "record (`record 3 (line 4): content was edited`); `--model breast_cancer` "
          "`audit verify` and `doctor` say the same",
          test=COVERAGE_TEST + "test_a_model_that_does_not_load_is_verified_and_reported"),
    Fault("coverage", "log without a model folder", "the breast_cancer folder removed, its "
          "audit log left; `audit verify`, `doctor`, `history`, `status`",
          "model breast_cancer is not verified: no model "
          "folder declares it (…/breast_cancer/defs.yaml does not exist)",
          proof="each exits 1 naming the log's model; its log is still verified (the edited "
          "record named)", test=COVERAGE_TEST + "test_a_model_that_does_not_load_is_verified_and_"
          "reported"),
    Fault("coverage", "history and replay from a log cut short", "the promotion (the log's "
          "last line) deleted; `--model breast_cancer history --at`, `history`, `replay`, "
          "`audit export`", "history refused: the audit log of breast_cancer does not verify",
          proof="each exits 2 naming the missing record and `fix: restore …`; the log is "
          "byte-identical afterwards (replay appends nothing)",
          test=COVERAGE_TEST + "test_nothing_is_answered_from_a_log_that_does_not_verify"),
    Fault("coverage", "one model's log torn, history --at of all", "diabetes' log torn; "
          "`history --at` without `--model`", "breast_cancer: at …: …promotion  data-v1",
          proof="exit 1; diabetes named as not verified with `lifecycle --model diabetes audit "
          "recover`", test=COVERAGE_TEST + "test_nothing_is_answered_from_a_log_that_does_"
          "not_verify"),
    Fault("coverage", "promotion missing from the event index", "the last audit record, the "
          "checkpoints and the promotion's row in `index.db` deleted; `doctor`",
          "the promotion of breast_cancer data-v1 (audit record 3) is in …/history/runs/.db "
          "(run-less event log (promotions)) but missing from the event index",
          proof="`doctor` exits 1, the same line ending `fix: lifecycle instance rebuild`",
          test=COVERAGE_TEST + "test_doctor_compares_the_event_index_with_each_runs_event_log"),
    Fault("coverage", "promotion missing from its run's event log", "the promotion's row in "
          "the run-less `history/runs/.db` deleted; `doctor`",
          "the promotion of breast_cancer data-v1 (audit record 3) is in the event index but "
          "missing from run-less event log (promotions)",
          proof="`doctor` exits 1, the same line ending `fix: lifecycle instance rebuild`",
          test=COVERAGE_TEST + "test_doctor_compares_the_event_index_with_each_runs_event_log"),
    Fault("coverage", "another model's records in a log", "`diabetes.jsonl` copied over "
          "`breast_cancer.jsonl`, then a breast_cancer record appended by a writer that did not "
          "check", "record 0 (line 1): belongs to model diabetes, not to breast_cancer: another "
          "model's records are in this log",
          proof="`audit verify` exits 1 naming each foreign record (and not the log's own); "
          "appending is refused", test="tests/test_audit.py::test_a_record_of_another_model_is_"
          "named_in_its_log"),
]  # fmt: skip

KEYS_TEST = "tests/test_keys.py::"
KEYS_AND_CACHES = [
    Fault("keys and caches", "no keys configured", "a package signed or an audit record "
          "appended with no signing or audit key configured and no `LIFECYCLE_DEV_KEYS=1`",
          "is not configured, and development keys are not allowed here. Create a key set with "
          "`lifecycle keys create DIR`", proof="nothing signed, no record appended, no key "
          "file created; with the keys `lifecycle keys create` writes (0600), both work",
          test=KEYS_TEST + "test_signing_and_the_audit_log_refuse_to_start_without_configured_"
          "keys"),
    Fault("keys and caches", "development keys in use", "`status`, `status --model`, `doctor` "
          "and `doctor --json` with `LIFECYCLE_DEV_KEYS=1` and no key configured",
          "DEVELOPMENT KEYS in use (LIFECYCLE_DEV_KEYS=1): signing key …/keys/signing-key.pem; "
          "audit key …/keys/audit.key", proof="exit 0; the line (status: on stderr, its table "
          "unchanged; doctor: in its report and its JSON `notices`) names each development "
          "key's file; with configured keys the line is absent",
          test=KEYS_TEST + "test_status_and_doctor_say_when_development_keys_are_in_use"),
    Fault("keys and caches", "revoked signing key", "the rotation drill: data-v1 signed and "
          "promoted with the old key, the key rotated, data-v2 signed and promoted with the new "
          "one, then `lifecycle keys revoke OLD`",
          "was signed with key …, which is revoked in keyring …: its signatures are refused",
          proof="before the revocation both packages and both checkpoints verify, each with the "
          "key id it records; after it, data-v1's package, its checkpoint, `audit verify` and "
          "`verify data-v1` are refused (exit 1), data-v2's still verify, and the old key "
          "signs nothing more",
          test=KEYS_TEST + "test_key_rotation_drill_old_and_new_verify_and_a_revoked_key_is_"
          "refused"),
    Fault("keys and caches", "team estimator module edited in place", "`status` after "
          "`team_estimators/forest.py` (the declared estimator's module) renamed its class, "
          "with the earlier verdict cached", "module 'team_estimators.forest' has no class "
          "'TeamForest'", proof="exit 1; the row says BROKEN DECLARATION; the cached verdict "
          "named the module's sha256, which changed",
          test="tests/test_declaration.py::test_a_team_estimator_module_edited_in_place_is_"
          "validated_again"),
]  # fmt: skip

# --- team deployment (issue 30): object stores and PostgreSQL -------------------------------
TEAM_DEPLOYMENT = [
    Fault("team deployment", "object deleted from an S3 artifact root", "the lifecycle run "
          "with `LIFECYCLE_ARTIFACT_ROOT=s3://…` against an S3 endpoint on localhost; `verify`, "
          "`promote`, `status`, `audit verify` and `doctor` exit 0; then an artifact's archive "
          "object deleted; `doctor`", "s3://lifecycle-artifacts/…: is missing (recorded by …)",
          proof="exit 1; the object is named by its URI (never `s3:/`); before the deletion "
          "doctor counted the objects and found no problem",
          test="tests/test_object_store.py::test_a_lifecycle_on_s3_is_promoted_verified_and_"
          "checked_by_doctor"),
    Fault("team deployment", "run worker killed on PostgreSQL", "`dagster job execute` on a "
          "PostgreSQL instance SIGKILLed after the fit; `runs recover --all`, then `runs "
          "recover RUN`, `resume RUN`, `doctor`, an artifact deleted, `doctor`, `instance "
          "rebuild`", "marked FAILURE: the run worker (pid … on …) is gone without finishing "
          "the run", proof="`--all` exits 2 (one host cannot see another's workers); the "
          "resumed run succeeds; doctor exits 0, then 1 naming the deleted file; rebuild exits "
          "2 saying it is SQLite-only and naming pg_dump / pg_restore",
          test="tests/test_deployment.py::test_on_call_tools_on_postgres"),
]  # fmt: skip
ON_CALL.append(
    Fault("on-call", "reproduce: another model's run", "`reproduce data-v1 --run` a run that "
          "materialized only diabetes/trained_model", "run … did not train breast_cancer "
          "data-v1: it materialized diabetes/trained_model",
          proof="exit 2 before any worktree or run; the message names the run and what it made",
          test="tests/test_reproduce_other_run.py::test_another_models_run_is_named_as_not_"
          "training_this_version")
)  # fmt: skip

ON_CALL.append(
    Fault("on-call", "reproduce: data tag not moved", "`reproduce data-v1` with the tag still "
          "on the commit data-v1 was trained on", "this reproduction read registry commit "
          "0123456789abcdef0123456789abcdef01234567 of /srv/registry, where tag data-v1 still "
          "points",
          proof="the printed report names the commit above its table, as the JSON does",
          test="tests/test_reproduce_report.py::test_the_printed_report_names_the_registry_"
          "commit_when_the_tag_has_not_moved")
)  # fmt: skip

INSTANCE_REBUILD.append(
    Fault("instance", "rebuild: run from its audit record only", "a run whose event log and "
          "index rows are gone, restored from its audit record",
          "lost: run …: its start time and RUN_START event (no run-status event survives; it is "
          "restored from its audit record with its status and end time)",
          proof="the run is in run storage with its recorded status; the outcome lists what "
          "of it did not come back",
          test="tests/test_rebuild_lost.py::test_a_run_restored_without_its_start_says_its_"
          "start_is_lost")
)  # fmt: skip

LINEAGE_GAPS = [
    Fault("lineage", "commit git could not read", "a trained model whose code commit is "
          "'unknown' because git refused the checkout (\"dubious ownership\")",
          "data version 'data-v1': the model's code commit is unknown (git: fatal: detected "
          "dubious ownership…); a model whose code no commit holds is never packaged",
          proof="`deployment_package` raises before anything is built or signed; governance "
          "lists a missing fingerprint, md5 or commit among what blocks a promotion instead of "
          "recording \"\"; an image's build-info.json commit is still packaged",
          test="tests/test_unknown_lineage.py::test_a_model_whose_commit_could_not_be_read_is_"
          "not_packaged"),
]  # fmt: skip


ALL = [
    *DATA_FILES,
    *PARTITION_KEYS,
    *CONFIG_AT_LAUNCH,
    *CONFIG_OUT_OF_RANGE,
    *DECLARATIONS,
    *COMPONENT_LOADING,
    *MODEL_CARD_SPECS,
    *PREDICT_INPUTS,
    *REGISTRY_REFERENCES,
    *AUDIT_TAMPERING,
    *AUDIT_WITNESS,
    *STORE_TAMPERING,
    *CRASHES,
    *GOVERNANCE_KILLS,
    *CONCURRENCY,
    *EXPOSURE,
    *IDENTIFIERS,
    *NEW_MODEL_NAMES,
    *INSTANCE_DAMAGE,
    INSTANCE_REFUSED_EVENT,
    *INSTANCE_REBUILD,
    *ON_CALL,
    *COVERAGE,
    *KEYS_AND_CACHES,
    *TEAM_DEPLOYMENT,
    *LINEAGE_GAPS,
]


def tag(fault: Fault) -> str:
    """The registry tag a data-file fault is published under."""
    return "bad-" + fault.name.replace(" ", "-").replace("/", "-").lower()


def case(area: str, name: str) -> Fault:
    """The row a test runs, by area and name (tests/reliability/test_table.py checks that each
    row's test looks its row up, here or through the list it is parametrized with)."""
    found = [f for f in ALL if (f.area, f.name) == (area, name)]
    if len(found) != 1:
        raise LookupError(f"{len(found)} reliability cases named {area!r} / {name!r}")
    return found[0]
