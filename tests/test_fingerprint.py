"""Fingerprints identify fitted state and behaviour, stably across processes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from lifecycle_pipeline.assets.features import FeaturesConfig, split
from lifecycle_pipeline.assets.training import TrainingConfig, fit, golden_inputs
from lifecycle_pipeline.declaration import Estimator, load_declaration
from lifecycle_pipeline.lineage.fingerprint import FingerprintError, fingerprint, state_digest
from lifecycle_pipeline.lineage.records import DataSnapshot, ResolvedVersion
from lifecycle_pipeline.sample_data import reference_frame
from lifecycle_pipeline.settings import PACKAGE_DIR

SAMPLE = load_declaration(PACKAGE_DIR.parent / "models" / "breast_cancer").model
LOGISTIC = Estimator.model_validate(
    {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 5000},
     "scale": True}
)  # fmt: skip

SCRIPT = """
import json
from lifecycle_pipeline.lineage.fingerprint import fingerprint
from tests.test_fingerprint import train
config, golden, model = train({config})
print(json.dumps(fingerprint(model, golden).to_dict()))
"""


def train(overrides: dict[str, object]) -> tuple[TrainingConfig, pd.DataFrame, object]:
    snapshot = DataSnapshot(
        frame=reference_frame(), version=ResolvedVersion("data-v1", "r", "p", "c", "m", 0)
    )
    feature_set = split(snapshot, FeaturesConfig(), SAMPLE.contract)
    declared, params = SAMPLE, dict[str, object]({"n_estimators": 25})
    if overrides.get("estimator") == "logistic_regression":
        declared, params = SAMPLE.model_copy(update={"estimator": LOGISTIC}), {}
    params |= {k: v for k, v in overrides.items() if k == "n_estimators"}
    knobs = {k: v for k, v in overrides.items() if k in ("seed", "threads")}
    config = TrainingConfig(params=params, **knobs)  # type: ignore[arg-type]
    model, _ = fit(feature_set, config, declared)
    return config, golden_inputs(feature_set, config.golden_rows), model


@pytest.mark.parametrize("estimator", ["random_forest", "logistic_regression"])
def test_fingerprint_is_equal_in_a_fresh_process(estimator: str) -> None:
    overrides = {"estimator": estimator, "threads": 2}
    _, golden, model = train(overrides)
    here = fingerprint(model, golden).to_dict()
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(config=repr(overrides))],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


def test_fingerprint_moves_with_a_hyperparameter_and_a_seed() -> None:
    _, golden, base = train({})
    _, _, other_trees = train({"n_estimators": 26})
    _, _, other_seed = train({"seed": 8})
    digests = {fingerprint(m, golden).combined for m in (base, other_trees, other_seed)}
    assert len(digests) == 3


def test_state_digest_ignores_struct_padding() -> None:
    """Tree node records have padding bytes; whatever sits there must not change the digest."""
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    tree = DecisionTreeClassifier(random_state=0).fit(x, [0, 0, 1, 1])
    nodes = tree.tree_.__getstate__()["nodes"]
    dtype = nodes.dtype
    used = np.zeros(dtype.itemsize, dtype=bool)
    for name in dtype.names:
        field, offset = dtype.fields[name][:2]
        used[offset : offset + field.itemsize] = True
    assert not used.all(), "expected padding in sklearn's node struct"

    def with_padding(fill: int) -> np.ndarray:
        raw = (
            np.frombuffer(nodes.tobytes(), dtype=np.uint8)
            .reshape(len(nodes), dtype.itemsize)
            .copy()
        )
        raw[:, ~used] = fill
        return np.frombuffer(raw.tobytes(), dtype=dtype)

    zeros, noise = with_padding(0x00), with_padding(0xA5)
    assert zeros.tobytes() != noise.tobytes()
    assert (
        state_digest({"nodes": zeros})
        == state_digest({"nodes": noise})
        == state_digest({"nodes": nodes})
    )


def test_unknown_state_is_refused_not_guessed() -> None:
    """A lock (or a file handle, a generator) has state nobody can read: refused by name."""
    import threading

    with pytest.raises(FingerprintError, match=r"Cannot fingerprint _thread.lock at dict.thing"):
        state_digest({"thing": threading.Lock()})


def test_a_stateless_object_is_identified_by_its_type() -> None:
    """A link function holds no state: the same type hashes the same, another type not."""

    class Identity:
        __slots__ = ()

    class Logit:
        __slots__ = ()

    assert state_digest({"link": Identity()}) == state_digest({"link": Identity()})
    assert state_digest({"link": Identity()}) != state_digest({"link": Logit()})


ESTIMATORS = """
import json
import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.neighbors import KNeighborsClassifier
from lifecycle_pipeline.lineage.fingerprint import state_digest
rng = np.random.default_rng(0)
x = pd.DataFrame(rng.normal(size=(200, 3)), columns=list("abc"))
y = (x["a"] > 0).astype(int)
fitted = [
    HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, y),  # a numpy Generator
    GradientBoostingRegressor(n_estimators=5, random_state=0).fit(x, x["b"]),  # Cython loss
    SGDClassifier(random_state=0).fit(x, y),  # a compiled loss function
    KNeighborsClassifier().fit(x, y),  # a KD-tree
]
print(json.dumps([state_digest(model) for model in fitted]))
"""


def test_common_estimators_fingerprint_the_same_in_two_processes() -> None:
    """Generators, compiled losses, KD-trees and stateless link objects hash by their state,
    so a team's choice of scikit-learn estimator never stops training at the fingerprint."""
    runs = [
        subprocess.run(
            [sys.executable, "-c", ESTIMATORS], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    digests = json.loads(runs[0].strip().splitlines()[-1])
    assert runs[0] == runs[1] and len(set(digests)) == 4
