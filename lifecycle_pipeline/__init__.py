"""A tabular model's production lifecycle as Dagster software-defined assets."""

import atexit
import gc
from typing import Any

__version__ = "0.1.0"
__all__ = ["LifecycleModel"]

# Interpreter shutdown tears down every module, and CPython runs full garbage collections while
# it does; with Dagster, scikit-learn and pandas loaded (~230,000 tracked objects) that took
# 0.7 s of every process's exit here: each `lifecycle` command, `dagster` CLI run, run worker
# and reproduction child (a `dagster asset materialize` of the sample: 5.2 s -> 4.2 s). What
# is alive at exit is about to be freed wholesale, so it is frozen out of those collections
# (exit: 0.05 s). Reference counting still frees what module teardown releases, so open files
# are flushed and closed as before (tests/test_shutdown.py); only garbage in reference cycles
# is left to the operating system. atexit callbacks still run, in their usual order.
atexit.register(gc.freeze)


def __getattr__(name: str) -> Any:
    # ``type: lifecycle_pipeline.LifecycleModel`` in a model's defs.yaml; imported on first
    # use so that `import lifecycle_pipeline` (e.g. by the standalone CLI) stays light.
    if name == "LifecycleModel":
        from lifecycle_pipeline.component import LifecycleModel

        return LifecycleModel
    raise AttributeError(f"module 'lifecycle_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    # Listed, so that `dg` finds the component type when it scans this module.
    return sorted([*globals(), "LifecycleModel"])
