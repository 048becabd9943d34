"""The Dask executor, made to work with Dagster 1.13's partitioned runs.

dagster-dask submits each step with Dagster's own objects as task arguments. Dask walks task
arguments that are tuples, lists or dicts to find futures, and Dagster 1.13's ``@record``
values (here the partition subsets inside ``KnownExecutionState``) are tuples that forbid
iteration, so every partitioned run fails before its first step with "Iteration is not allowed
on `@record` KeyRangesPartitionsSubset" (measured with dask/distributed 2024.10 to 2026.8).

The fix keeps dagster-dask's executor and only changes how a step is handed to Dask: the
step's upstream futures stay visible (so Dask still orders the steps), everything else travels
inside an opaque box that Dask does not walk.

The box also carries the names of the variables the step needs, checked on the worker before
the step starts: a Dask worker started without the run's environment (no
``LIFECYCLE_POSTGRES_URL``) otherwise fails seconds into the run with Dagster's config error
about the instance, which names neither the worker nor the fix.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dagster as dg
import yaml

# Variables a step reads when the run's process has them: a worker without one would read or
# write somewhere else (its own default artifact root, registry or keys), so it must have each.
STEP_VARIABLES = (
    "LIFECYCLE_PROJECT_ROOT",
    "LIFECYCLE_HOME",
    "LIFECYCLE_ARTIFACT_ROOT",
    "LIFECYCLE_REGISTRY_URL",
    "LIFECYCLE_REGISTRY_REMOTE",
    "LIFECYCLE_MODELS_DIR",
    "LIFECYCLE_SIGNING_KEY",
    "LIFECYCLE_SIGNING_PUBLIC_KEY",
    "LIFECYCLE_AUDIT_KEY",
    "LIFECYCLE_AUDIT_DIR",
    "LIFECYCLE_TRUSTED_KEYS",
    "LIFECYCLE_DEV_KEYS",
)


class WorkerEnvironmentError(RuntimeError):
    """A remote worker lacks a variable the run's process has and the step needs."""


def _env_references(value: Any) -> set[str]:
    """Names in Dagster's ``{env: NAME}`` config form, anywhere in a config tree."""
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            return {value["env"]}
        return set().union(*(_env_references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_env_references(v) for v in value))
    return set()


def instance_variables(instance: dg.DagsterInstance) -> set[str]:
    """Variables the instance's config reads (e.g. ``LIFECYCLE_POSTGRES_URL``): a worker loads
    the instance from the run's reference and fails without them."""
    ref = instance.get_ref()
    names = _env_references(dict(ref.settings or {}))
    for field in ref._fields:
        data = getattr(ref, field)
        config_yaml = getattr(data, "config_yaml", None)
        if isinstance(config_yaml, str):
            names |= _env_references(yaml.safe_load(config_yaml))
    return names


def required_worker_variables(
    instance: dg.DagsterInstance, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """What a remote worker must have: the instance's variables, and the step variables this
    run's process has (``environ``, default ``os.environ``)."""
    env = os.environ if environ is None else environ
    names = instance_variables(instance) | {name for name in STEP_VARIABLES if name in env}
    return tuple(sorted(names))


def check_worker_environment(
    required: tuple[str, ...], worker: str, environ: Mapping[str, str] | None = None
) -> None:
    """Refuse to start a step in ``worker`` if it lacks any ``required`` variable."""
    env = os.environ if environ is None else environ
    missing = [name for name in required if not env.get(name)]
    if missing:
        raise WorkerEnvironmentError(
            f"{worker} (host {socket.gethostname()}, pid {os.getpid()}) lacks "
            f"{', '.join(missing)}, which the run's process has and this step needs. Start the "
            "Dask workers with the run's environment: the same variables and secrets as the code "
            "server and the daemon, e.g. `set -a; . /etc/lifecycle/lifecycle.env; dask worker "
            "SCHEDULER` (docs/deployment.md, 'Remote workers')."
        )


@dataclass(frozen=True)
class _Boxed:
    """Arguments Dask must pass through untouched (a dataclass is not walked, a tuple is)."""

    function: Callable[..., Any]
    args: tuple[Any, ...]
    required: tuple[str, ...] = ()


def _run_boxed(dependencies: list[Any], boxed: _Boxed) -> Any:
    check_worker_environment(boxed.required, "This Dask worker")
    return boxed.function(dependencies, *boxed.args)


@contextmanager
def _boxed_submissions(required: tuple[str, ...] = ()) -> Iterator[None]:
    import dagster_dask.executor as dagster_dask_executor
    import dask.distributed

    original = dask.distributed.Client

    class BoxingClient(original):  # type: ignore[misc, valid-type]
        def submit(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            dependencies, rest = args[0], tuple(args[1:])
            boxed = _Boxed(function, rest, required)
            return super().submit(_run_boxed, dependencies, boxed, **kwargs)

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
            required = required_worker_variables(plan_context.instance)
            with _boxed_submissions(required):
                yield from super().execute(plan_context, execution_plan)

    [(cluster_type, cluster_configuration)] = cluster.items()

    @dg.executor(name="dask", requirements=dg.multiple_process_executor_requirements())
    def _dask(init_context: dg.InitExecutorContext) -> dg.Executor:
        return BoxedDaskExecutor(cluster_type, cluster_configuration)

    return _dask
