"""A tabular model's production lifecycle as Dagster software-defined assets."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["LifecycleModel"]


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
