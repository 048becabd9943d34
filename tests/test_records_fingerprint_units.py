"""Gate verdicts, lineage records and model fingerprints, exercised directly (`make mutate`).

Small real inputs (numbers, arrays, fitted scikit-learn estimators on a few dozen rows) so the
whole file runs in well under a second after import: mutation testing runs it once per mutant.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from lifecycle_pipeline.lineage.fingerprint import (
    FingerprintError,
    ModelFingerprint,
    fingerprint,
    prediction_digest,
    state_digest,
)
from lifecycle_pipeline.lineage.records import (
    ArtifactRef,
    GateVerdict,
    ResolvedVersion,
    TrainedModel,
)

# ---------------------------------------------------------------------------------- gates


@pytest.mark.parametrize(
    ("comparison", "value", "passed"),
    [
        (">=", 0.9, True),  # exactly at the threshold passes
        (">=", 0.9 + 1e-12, True),
        (">=", 0.9 - 1e-12, False),
        ("<=", 0.9, True),  # exactly at the threshold passes
        ("<=", 0.9 - 1e-12, True),
        ("<=", 0.9 + 1e-12, False),
    ],
)
def test_a_gate_passes_at_its_threshold_and_on_its_side_only(
    comparison: str, value: float, passed: bool
) -> None:
    gate = GateVerdict("quality", "roc_auc", value, 0.9, comparison)
    assert gate.passed is passed
    assert gate.to_dict()["passed"] is passed


def test_a_gate_describes_its_verdict_metric_value_and_requirement() -> None:
    assert (
        GateVerdict("min_auc", "roc_auc", 0.8123456789, 0.85, ">=").describe()
        == "Gate min_auc FAILED: roc_auc = 0.812346, required >= 0.85"
    )
    assert (
        GateVerdict("max_brier", "brier", 0.05, 0.1, "<=").describe()
        == "Gate max_brier passed: brier = 0.05, required <= 0.1"
    )


def test_a_gate_round_trips_through_its_recorded_dict() -> None:
    gate = GateVerdict("max_brier", "brier", 0.2, 0.1, "<=")
    recorded = gate.to_dict()
    assert recorded == {
        "name": "max_brier",
        "metric": "brier",
        "value": 0.2,
        "threshold": 0.1,
        "comparison": "<=",
        "passed": False,
    }
    assert GateVerdict.from_dict(recorded) == gate


def test_artifact_refs_and_resolved_versions_round_trip_with_every_field() -> None:
    ref = ArtifactRef("m/trained_model", "data-v1", "file:///x/y", "ab" * 32, "run-1")
    assert ref.to_dict() == {
        "asset": "m/trained_model",
        "partition": "data-v1",
        "uri": "file:///x/y",
        "sha256": "ab" * 32,
        "run_id": "run-1",
    }
    assert ArtifactRef.from_dict({**ref.to_dict(), "ignored": 1}) == ref
    version = ResolvedVersion("data-v1", "/registry", "data.csv", "c0ffee", "d41d8", 12)
    assert version.to_dict() == {
        "key": "data-v1",
        "registry": "/registry",
        "path": "data.csv",
        "commit": "c0ffee",
        "md5": "d41d8",
        "size": 12,
    }
    assert ResolvedVersion.from_dict(version.to_dict()) == version


def test_a_trained_model_hands_out_the_bytes_it_was_stored_with() -> None:
    prints = ModelFingerprint("s", "p")
    frame = pd.DataFrame({"x": [0.0]})
    assert TrainedModel(None, frame, prints, {}, skops=b"stored").skops_bytes() == b"stored"


# --------------------------------------------------------------------------- fingerprints


def test_a_fingerprint_round_trips_and_its_combination_moves_with_either_part() -> None:
    prints = ModelFingerprint("a" * 64, "b" * 64)
    recorded = prints.to_dict()
    assert recorded["state"] == "a" * 64 and recorded["predictions"] == "b" * 64
    assert recorded["combined"] == prints.combined and len(prints.combined) == 64
    assert ModelFingerprint.from_dict(recorded) == prints
    others = {
        ModelFingerprint("c" * 64, "b" * 64).combined,
        ModelFingerprint("a" * 64, "c" * 64).combined,
        ModelFingerprint("b" * 64, "a" * 64).combined,  # the parts are not interchangeable
    }
    assert prints.combined not in others and len(others) == 3


class _Stateless:
    """No attributes at all: identified by its type."""


class _WithState:
    def __init__(self, value: Any) -> None:
        self.value = value


class _Reduced:
    """State only through ``__reduce_ex__`` (no ``__getstate__`` dict)."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def __getstate__(self) -> None:
        return None

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (_Reduced, (self.value,))


class _ReducedWithState:
    """Reduce arguments and a state (the third element of ``__reduce_ex__``)."""

    def __init__(self, value: int, state: Any) -> None:
        self.value, self.state = value, state

    def __getstate__(self) -> None:
        return None

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (_ReducedWithState, (self.value,), self.state)


class _ReducedToOne:
    """A reduce whose argument is a single value, not a tuple."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __getstate__(self) -> None:
        return None

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (_ReducedToOne, self.value)


class _Opaque:
    """Neither a state dict nor reduce arguments."""

    def __getstate__(self) -> None:
        return None

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("cannot pickle")


VALUES: list[Any] = [
    None,
    False,
    True,
    0,
    1,
    0.0,
    1.0,
    -0.0,
    "",
    "0",
    "a",
    b"",
    b"a",
    [],
    (),
    [0],
    (0,),
    [0, 1],
    [1, 0],
    {},
    {"a": 0},
    {"a": 1},
    {"b": 0},
    {"a": 0, "b": 0},
    int,
    float,
    slice(0, 1),
    slice(0, 2),
    slice(0, 1, 1),
    slice(1, 1),
    np.dtype("<f8"),
    np.dtype("<f4"),
    np.array([0.0, 1.0]),
    np.array([0.0, 2.0]),
    np.array([0.0, 1.0], dtype="<f4"),
    np.array([[0.0, 1.0]]),
    np.array([0, 1]),
    np.array(["a", 0], dtype=object),
    np.array(["a", 1], dtype=object),
    np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
    np.array([(1, 3.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
    np.array([(1, 2.0)], dtype=[("c", "<i4"), ("b", "<f8")]),
    np.random.default_rng(0),
    np.random.default_rng(1),
    np.random.RandomState(0),
    np.random.RandomState(1),
    _Stateless(),
    _WithState(0),
    _WithState(1),
    _Reduced(0),
    _Reduced(1),
]


def test_every_distinct_value_has_its_own_state_digest() -> None:
    digests = [state_digest(value) for value in VALUES]
    collisions = [
        (VALUES[i], VALUES[j])
        for i in range(len(VALUES))
        for j in range(i + 1, len(VALUES))
        if digests[i] == digests[j]
    ]
    assert collisions == []


def test_equal_values_have_equal_state_digests() -> None:
    assert state_digest({"a": 1, "b": [1.5, "x"]}) == state_digest({"b": [1.5, "x"], "a": 1})
    assert state_digest(np.array([1.0, 2.0], dtype=">f8")) == state_digest(
        np.array([1.0, 2.0], dtype="<f8")
    )  # byte order is canonicalized
    assert state_digest(np.arange(6.0).reshape(2, 3).T) == state_digest(
        np.ascontiguousarray(np.arange(6.0).reshape(2, 3).T)
    )
    assert state_digest(_Stateless()) == state_digest(_Stateless())
    assert state_digest(_Reduced(3)) == state_digest(_Reduced(3))
    assert state_digest(np.random.default_rng(5)) == state_digest(np.random.default_rng(5))
    assert state_digest(np.random.RandomState(5)) == state_digest(np.random.RandomState(5))
    assert state_digest(np.bool_(True)) == state_digest(True)
    assert state_digest(np.int64(3)) == state_digest(3)
    assert state_digest(np.float32(0.5)) == state_digest(0.5)


def test_a_key_and_its_value_are_not_interchangeable() -> None:
    assert state_digest({"a": "b"}) != state_digest({"b": "a"})
    assert state_digest({"1": 1}) != state_digest({"1": "1"})


@pytest.mark.parametrize(
    ("value", "place"),
    [
        ({"inner": [_Opaque()]}, "dict.inner[0]"),
        (_WithState(_Opaque()), "_WithState.value"),
        (np.array([0, _Opaque()], dtype=object), "ndarray[1]"),
        ([(_Opaque(),)], "list[0][0]"),
    ],
)
def test_a_value_without_state_is_refused_naming_its_type_and_place(value: Any, place: str) -> None:
    with pytest.raises(FingerprintError) as raised:
        state_digest(value)
    assert str(raised.value) == (
        f"Cannot fingerprint tests.test_records_fingerprint_units._Opaque at {place}: it exposes "
        "no state (no __getstate__ dict, no reduce arguments). Use an estimator whose fitted "
        "state can be pickled, or report the type so a canonical rule can be added."
    )


def test_a_dict_with_keys_of_several_types_has_a_digest() -> None:
    assert state_digest({1: "a", "b": 2}) == state_digest({"b": 2, 1: "a"})


_X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]] * 5)
_Y = np.array([0, 0, 0, 1, 1, 1] * 5)


def test_models_fitted_on_different_data_have_different_state_digests() -> None:
    """Private fitted state (a boosting model's predictors, a tree's nodes) is part of it."""
    other_labels = np.array([0, 1, 1, 0, 1, 1] * 5)
    for make in (
        lambda: HistGradientBoostingClassifier(max_iter=3, min_samples_leaf=2, random_state=0),
        lambda: DecisionTreeClassifier(random_state=0),
        lambda: LogisticRegression(),
    ):
        first, again, other = make().fit(_X, _Y), make().fit(_X, _Y), make().fit(_X, other_labels)
        assert state_digest(first) == state_digest(again)
        assert state_digest(first) != state_digest(other)
        assert state_digest(pickle.loads(pickle.dumps(first))) == state_digest(first)


def test_a_tree_fitted_to_other_nodes_differs_only_in_its_tree() -> None:
    shallow = DecisionTreeClassifier(max_depth=1, random_state=0).fit(_X, _Y)
    deep = DecisionTreeClassifier(max_depth=1, random_state=0).fit(_X[:, ::-1], _Y)
    assert state_digest(shallow.tree_) != state_digest(deep.tree_)


def test_prediction_digests_bind_values_and_shape_not_dtype() -> None:
    values = np.array([[0.25, 0.75], [0.5, 0.5]])
    assert prediction_digest(values) == prediction_digest(values.astype("<f4"))
    assert prediction_digest(values) == prediction_digest(values.astype(">f8"))
    assert prediction_digest(values) != prediction_digest(values.ravel())
    assert prediction_digest(values) != prediction_digest(values[::-1])
    assert len(prediction_digest(values)) == 64


def test_a_fingerprint_is_of_the_models_state_and_its_outputs_on_the_golden_inputs() -> None:
    model = LogisticRegression().fit(_X, _Y)
    golden = pd.DataFrame(_X[:4], columns=["a", "b"]).to_numpy()
    prints = fingerprint(model, golden)  # type: ignore[arg-type]
    assert prints.state == state_digest(model)
    assert prints.predictions == prediction_digest(model.predict_proba(golden))
    scored = fingerprint(model, golden, lambda m, x: m.decision_function(x))  # type: ignore[arg-type]
    assert scored.state == prints.state
    assert scored.predictions == prediction_digest(model.decision_function(golden))
    assert scored.predictions != prints.predictions


def test_digests_are_the_ones_recorded_by_earlier_releases() -> None:
    """Fingerprints are recorded in lineage and audit records and compared with a later
    reproduction's: a change to the canonical walk (a tag renamed, a branch reordered) would
    make every recorded model irreproducible. These values were computed by this code when
    the test was written; a deliberate change of the walk must say so here."""
    assert state_digest(VALUES) == (
        "81875c7dd796df74dbbef4849f9a0d195d146bfd3e079a383780da18beae7fcb"
    )
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(_X, _Y).tree_
    others = [tree, _ReducedWithState(1, {"s": 2}), _ReducedToOne(3)]
    assert state_digest(others) == (
        "8ef220b79f36437af377fcf0a7ca13bf15b90822bf7e5461ab2ecabd9fdb5b7e"
    )
    assert prediction_digest(np.array([[0.25, 0.75], [0.5, 0.5]])) == (
        "92d4c7f7c57e0764509ba015931508569837e51709a271f62c8bbf49da83fc8b"
    )


def test_the_reproduction_table_reads_each_element_from_its_own_field() -> None:
    """A reproduction compares recorded and reproduced lineage element by element, both read
    through the same table: an element read from the wrong field would compare equal on both
    sides and hide a difference, so the table is checked against distinct values here."""
    from lifecycle_pipeline.reproduce import _tuple

    prints = ModelFingerprint("state-digest", "prediction-digest")
    lineage = {
        "data_md5": "md5",
        "declaration": {"sha256": "decl"},
        "code": {"commit": "c", "dirty": False, "lock_hash": "lock", "source_digest": "src"},
        "config_hash": "cfg",
        "fingerprint": prints.to_dict(),
    }
    assert _tuple(lineage) == {
        "data_md5": "md5",
        "declaration.sha256": "decl",
        "code.commit": "c",
        "code.dirty": False,
        "code.lock_hash": "lock",
        "code.source_digest": "src",
        "config_hash": "cfg",
        "fingerprint.state": "state-digest",
        "fingerprint.predictions": "prediction-digest",
        "fingerprint.combined": prints.combined,
    }
    del lineage["declaration"]  # recorded before models were declared
    assert "declaration.sha256" not in _tuple(lineage)
