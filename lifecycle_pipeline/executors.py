"""The Dask executor, made to work with Dagster 1.13's partitioned runs.

dagster-dask submits each step with Dagster's own objects as task arguments. Dask walks task
arguments that are tuples, lists or dicts to find futures, and Dagster 1.13's ``@record``
values (here the partition subsets inside ``KnownExecutionState``) are tuples that forbid
iteration, so every partitioned run fails before its first step with "Iteration is not allowed
on `@record` KeyRangesPartitionsSubset" (measured with dask/distributed 2024.10 to 2026.8).

The fix keeps dagster-dask's executor and only changes how a step is handed to Dask: the
step's upstream futures stay visible (so Dask still orders the steps), everything else travels
inside an opaque box that Dask does not walk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dagster as dg


@dataclass(frozen=True)
class _Boxed:
    """Arguments Dask must pass through untouched (a dataclass is not walked, a tuple is)."""

    function: Callable[..., Any]
    args: tuple[Any, ...]


def _run_boxed(dependencies: list[Any], boxed: _Boxed) -> Any:
    return boxed.function(dependencies, *boxed.args)


@contextmanager
def _boxed_submissions() -> Iterator[None]:
    import dagster_dask.executor as dagster_dask_executor
    import dask.distributed

    original = dask.distributed.Client

    class BoxingClient(original):  # type: ignore[misc, valid-type]
        def submit(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            dependencies, rest = args[0], tuple(args[1:])
            return super().submit(_run_boxed, dependencies, _Boxed(function, rest), **kwargs)

    # dagster-dask looks the class up as ``dask.distributed.Client`` when a run starts; the
    # swap lasts for this run's orchestration only, in the run's own process.
    module = dagster_dask_executor.dask.distributed
    setattr(module, "Client", BoxingClient)  # noqa: B010 (mypy rejects assigning to a class)
    try:
        yield
    finally:
        setattr(module, "Client", original)  # noqa: B010


def dask_executor(cluster: dict[str, Any]) -> dg.ExecutorDefinition:
    """dagster-dask's executor for ``cluster`` (its ``cluster`` config), with boxed steps."""
    from dagster_dask.executor import DaskExecutor

    class BoxedDaskExecutor(DaskExecutor):
        def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[Any]:
            with _boxed_submissions():
                yield from super().execute(plan_context, execution_plan)

    [(cluster_type, cluster_configuration)] = cluster.items()

    @dg.executor(name="dask", requirements=dg.multiple_process_executor_requirements())
    def _dask(init_context: dg.InitExecutorContext) -> dg.Executor:
        return BoxedDaskExecutor(cluster_type, cluster_configuration)

    return _dask
