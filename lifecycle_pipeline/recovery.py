"""After a crash: mark runs whose worker died as failed, then resume them from the failure.

A run executed in-process (``dagster job execute``, ``dagster asset materialize``, or a run
launched by the DefaultRunLauncher) has one worker process. If the kernel kills it (OOM killer,
SIGKILL, a lost machine), nobody writes RUN_FAILURE: the instance shows the run as STARTED
forever, Dagster's run monitoring cannot tell (the DefaultRunLauncher has no worker health
check), and "re-execute from failure" refuses a run that has not failed. ``lifecycle runs
recover`` closes that gap the way run monitoring does for Kubernetes: the worker's pid is the
one Dagster recorded on the run's start event, and a worker that no longer exists on this
host (or whose pid now belongs to a younger process) is reported failed, with the reason.

Only the host that ran the worker can tell whether it is alive, so ``--all`` is limited to a
SQLite instance (one host by construction); on a shared PostgreSQL instance name the run ids
and run the command on the worker's host. Kubernetes runs are covered by Dagster's own run
monitoring (``runMonitoring`` in the Helm values).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType

from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.partitions import validate_run_id

ACTIVE = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)


class RecoveryError(LifecycleError, RuntimeError):
    """A run cannot be recovered or resumed as asked."""


@dataclass(frozen=True)
class Worker:
    run_id: str
    pid: int | None
    started: float | None  # the run start event's timestamp

    def alive(self) -> bool:
        """True while this pid exists here and the process is at least as old as the run."""
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # exists, owned by someone else
        born = _process_start_time(self.pid)
        # A pid reused by a process started after the run began is not the run's worker.
        return born is None or self.started is None or born <= self.started + 1.0


def _process_start_time(pid: int) -> float | None:
    """Epoch seconds when ``pid`` started (Linux /proc); None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, StopIteration, ValueError):
        return None


def worker(instance: dg.DagsterInstance, run_id: str) -> Worker:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START).records
    if not records:
        return Worker(run_id, None, None)
    entry = records[-1].event_log_entry
    event = entry.dagster_event
    return Worker(run_id, event.pid if event else None, entry.timestamp)


def _single_host(instance: dg.DagsterInstance) -> bool:
    from dagster._core.storage.runs import SqliteRunStorage

    return isinstance(instance.run_storage, SqliteRunStorage)


def recover(
    instance: dg.DagsterInstance, run_ids: list[str] | None = None
) -> list[tuple[str, str]]:
    """Mark dead-worker runs failed; returns (run id, what was done) for each run looked at."""
    if run_ids is None:
        if not _single_host(instance):
            raise RecoveryError(
                "this instance is shared (not SQLite): name the run ids and run the command on "
                "the host that ran their workers; only that host can tell whether they live"
            )
        runs = list(instance.get_runs(dg.RunsFilter(statuses=list(ACTIVE))))
    else:
        runs = []
        for run_id in run_ids:
            run = instance.get_run_by_id(validate_run_id(run_id, instance))
            if run is None:
                raise RecoveryError(f"no run {run_id!r} in this instance")
            runs.append(run)
    outcome: list[tuple[str, str]] = []
    for run in runs:
        if run.status not in ACTIVE:
            outcome.append((run.run_id, f"left as it is: {run.status.value}"))
            continue
        found = worker(instance, run.run_id)
        if found.pid is None:
            # Launched, worker not up yet: Dagster's run monitoring times out a stuck start.
            outcome.append((run.run_id, "left as it is: its worker has not started yet"))
            continue
        if found.alive():
            outcome.append((run.run_id, f"left as it is: worker pid {found.pid} is alive"))
            continue
        reason = (
            f"the run worker (pid {found.pid} on {socket.gethostname()}) is gone without "
            "finishing the run: it was killed or crashed. Marked failed by `lifecycle runs "
            "recover`; re-execute it from the failure with `lifecycle resume`."
        )
        instance.report_run_failed(run, reason)
        outcome.append((run.run_id, "marked FAILURE: " + reason))
    return outcome


def _inherited_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The parent's partition and our own tags (reason, approver); Dagster's run-bookkeeping
    tags (backfill, sensor, retry number) belong to the parent alone."""
    return {k: v for k, v in tags.items() if "partition" in k or not k.startswith("dagster/")}


def resume(instance: dg.DagsterInstance, run_id: str) -> dg.ExecuteJobResult:
    """Re-execute a failed run from its failure: finished steps are reused, not recomputed.

    The job is rebuilt from the origin the run recorded (the same module the worker loaded),
    with the parent's run config and partition, exactly as the UI's "Re-execute from failure".
    """
    from dagster._utils.hosted_user_process import recon_job_from_origin

    parent = instance.get_run_by_id(validate_run_id(run_id, instance))
    if parent is None:
        raise RecoveryError(f"no run {run_id!r} in this instance")
    if parent.status in ACTIVE:
        recover(instance, [run_id])
        parent = instance.get_run_by_id(run_id)
        assert parent is not None
        if parent.status in ACTIVE:
            raise RecoveryError(
                f"run {run_id} is still running (its worker is alive); wait or terminate it"
            )
    if parent.status != dg.DagsterRunStatus.FAILURE:
        raise RecoveryError(
            f"run {run_id} is {parent.status.value}; only a failed run resumes from its failure"
        )
    if parent.job_code_origin is None:
        raise RecoveryError(
            f"run {run_id} recorded no code origin (it ran in a test process); re-run it instead"
        )
    recon = recon_job_from_origin(parent.job_code_origin)
    return dg.execute_job(
        recon,
        instance=instance,
        run_config=parent.run_config,
        tags={**_inherited_tags(parent.tags), "lifecycle/resumed_from": run_id},
        reexecution_options=dg.ReexecutionOptions.from_failure(run_id, instance),
    )
