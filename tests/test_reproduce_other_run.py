"""`reproduce V --run RUN` with a run that did not train V says so, naming what the run made.

It used to say "No materialization of …trained_model@V with sha256 None in run …; the instance
does not hold the lineage this artifact claims": a damaged instance, to an on-call engineer who
had only pasted another model's run id.
"""

from __future__ import annotations

import dagster as dg
import pytest

from lifecycle_pipeline.reproduce import ReproduceError, recorded_version
from tests.conftest import SAMPLE_MODEL
from tests.reliability.cases import case


@dg.asset(key=["diabetes", "trained_model"])
def other_models_training() -> int:
    """Stands for a run of another model: what reproduce reads of it is its materializations."""
    return 1


def test_another_models_run_is_named_as_not_training_this_version(
    instance: dg.DagsterInstance,
) -> None:
    fault = case("on-call", "reproduce: another model's run")
    run = dg.materialize([other_models_training], instance=instance)
    assert run.success
    with pytest.raises(ReproduceError) as refused:
        recorded_version(instance, SAMPLE_MODEL, "data-v1", run.run_id)
    message = str(refused.value)
    assert fault.shown_in(message), message
    assert run.run_id in message and "sha256 None" not in message
