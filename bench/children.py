"""What runs inside one measurement's child process (see ``measure.run_child``).

Each function imports and prepares everything it needs first, then records RSS, and only
then starts the clock: the figures compare computations, not interpreter start-up (figure 2
measures whole processes on purpose, elsewhere).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.measure import rss_kib

SAMPLE_SECONDS = 0.01  # RssSampler's interval
OUTSIDE_STEPS = "(outside steps)"  # a sampled maximum between Dagster's steps
_VMRSS = re.compile(rb"VmRSS:\s+(\d+) kB")


class RssSampler:
    """This process's VmRSS every ``SAMPLE_SECONDS`` on a thread, with wall-clock times.

    The times are ``time.time()``, the clock of Dagster's event log, so samples can be placed
    in the steps that ran. A spike shorter than the interval can fall between two samples:
    VmHWM stays the peak; the samples say when memory was high, not how high it peaked.
    """

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []  # (time.time(), VmRSS in KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._status = -1  # /proc/self/status, open while sampling

    def _sample(self) -> None:
        found = _VMRSS.search(os.pread(self._status, 8192, 0))
        if found:
            self.samples.append((time.time(), int(found[1])))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._status = os.open("/proc/self/status", os.O_RDONLY)
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        os.close(self._status)

    def peak(self, before_kib: int) -> dict[str, Any]:
        """The sampled maximum's increase over ``before_kib``, in MiB, and its sample count."""
        top = max(kib for _, kib in self.samples)
        return {
            "sampled_peak_increase_mib": (top - before_kib) / 1024,
            "samples": len(self.samples),
        }

    def by_step(self, steps: dict[str, tuple[float, float]], before_kib: int) -> dict[str, Any]:
        """Per step (start, end): the largest RSS increase over ``before_kib`` sampled while it
        ran, and how far RSS rose while it ran (that maximum less the last sample before it
        started), in MiB; and the step during which the overall sampled maximum occurred."""
        peaks: dict[str, float] = {}
        rises: dict[str, float] = {}
        for stage, (start, end) in steps.items():
            inside = [kib for at, kib in self.samples if start <= at <= end]
            if inside:
                earlier = [kib for at, kib in self.samples if at < start]
                peaks[stage] = (max(inside) - before_kib) / 1024
                rises[stage] = (max(inside) - (earlier[-1] if earlier else before_kib)) / 1024
        at, _ = max(self.samples, key=lambda sample: sample[1])
        during = [stage for stage, (start, end) in steps.items() if start <= at <= end]
        return {
            "rss_peak_by_step_mib": peaks,
            "rss_rise_by_step_mib": rises,
            "rss_peak_step": during[0] if during else OUTSIDE_STEPS,
        }


@contextmanager
def _profiled(target: str | None) -> Iterator[None]:
    """Profile the timed section with pyinstrument when asked; write its text report."""
    if not target:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(
            profiler.output_text(unicode=False, color=False, show_all=False), encoding="utf-8"
        )


def plain(args: dict[str, Any]) -> dict[str, Any]:
    """The plain-function lifecycle on the frame already in memory."""
    from bench import data
    from bench.plain import StageClock, TrainingSettings, lifecycle, warm_imports

    info = data.DatasetInfo(**args["dataset"])
    frame = data.read(info)
    warm_imports()
    before = rss_kib("VmRSS")
    clock = StageClock()
    # The same sampling thread as the Dagster side's, so that both carry its cost alike.
    with RssSampler() as sampler:
        started = time.perf_counter()
        with _profiled(args.get("profile")):
            outcome = lifecycle(frame, info.md5, TrainingSettings(**args["training"]), clock)
        seconds = time.perf_counter() - started
    peak = rss_kib("VmHWM")
    return {
        "seconds": seconds,
        "stages": clock.seconds,
        "rss_before_mib": before / 1024,
        "peak_rss_mib": peak / 1024,
        "peak_increase_mib": (peak - before) / 1024,
        **sampler.peak(before),
        **outcome,
    }


def _step_spans(instance: Any, run_id: str, prefix: str = "") -> dict[str, tuple[float, float]]:
    """Per step, its (start, success) wall-clock times from the run's event log, by stage:
    the step key without the model's ``prefix`` (``breast_cancer__features`` -> ``features``),
    so that the stages compare with the plain side's and with earlier results."""
    starts: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        stage = event.step_key.removeprefix(prefix)
        if event.event_type_value == "STEP_START":
            starts[stage] = entry.timestamp
        elif event.event_type_value == "STEP_SUCCESS" and stage in starts:
            spans[stage] = (starts[stage], entry.timestamp)
    return spans


def dagster(args: dict[str, Any]) -> dict[str, Any]:
    """The lifecycle job for one partition, in process, on a fresh SQLite instance."""
    import dagster as dg

    from bench.plain import SAMPLE_MODEL, TrainingSettings, warm_imports

    # The libraries both sides use (skops, model-signing, scikit-learn) are imported before
    # either clock starts; DVC's import stays inside: reading from the registry is ours alone.
    warm_imports()
    key = args["partition"]
    # The job as a deployment runs it: `execute_job` with the in-process executor, in this
    # process. `execute_in_process` would also keep every step's output value in memory for
    # its result object (Dagster always captures them there), which no deployed run does: at
    # 1M rows that held the snapshot, the features and the model until the run ended.
    os.environ |= {
        "LIFECYCLE_MODEL": SAMPLE_MODEL.name,
        "LIFECYCLE_REGISTRY_URL": args["registry"],
        "LIFECYCLE_ARTIFACT_ROOT": args["artifacts"],
        "LIFECYCLE_EXECUTOR": "in_process",
    }
    from lifecycle_pipeline.definitions import lifecycle_job_from_env

    lifecycle_job_from_env()  # built once before the clock, as the code location has it
    run_config = TrainingSettings(**args["training"]).run_config()
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME: a fresh folder per measurement
        instance.add_dynamic_partitions(SAMPLE_MODEL.scoped("data_versions"), [key])
        before = rss_kib("VmRSS")
        with RssSampler() as sampler:  # started before the clock, stopped after it
            started = time.perf_counter()
            with _profiled(args.get("profile")):
                result = dg.execute_job(
                    dg.reconstructable(lifecycle_job_from_env),
                    instance=instance,
                    run_config=run_config,
                    tags={"dagster/partition": key},
                    raise_on_error=False,
                )
            seconds = time.perf_counter() - started
        peak = rss_kib("VmHWM")
        if not result.success:
            raise RuntimeError(f"lifecycle run failed: {_failure(result)}")
        spans = _step_spans(instance, result.run_id, f"{SAMPLE_MODEL.name}__")
        model = instance.fetch_materializations(SAMPLE_MODEL.key("trained_model"), limit=1).records
        materialization = model[0].asset_materialization
        assert materialization is not None  # fetch_materializations returns materializations
        fingerprint = materialization.metadata["model/fingerprint"].value
    return {
        "seconds": seconds,
        "stages": {stage: end - start for stage, (start, end) in spans.items()},
        "rss_before_mib": before / 1024,
        "peak_rss_mib": peak / 1024,
        "peak_increase_mib": (peak - before) / 1024,
        **sampler.peak(before),
        **sampler.by_step(spans, before),
        "fingerprint": fingerprint,
    }


def noop_lifecycle_job() -> Any:
    """The lifecycle job's graph with every step doing nothing: the same assets, partitions,
    dependencies and checks (blocking as declared), each step only reporting its
    materialization or a passed check. A reconstructable target (``floor`` runs it)."""
    import dagster as dg

    from lifecycle_pipeline.definitions import lifecycle_job_from_env

    real = lifecycle_job_from_env()
    selected = real.asset_layer.selected_asset_keys
    assets: list[Any] = []
    checks: list[Any] = []
    for node in real.asset_layer.asset_graph.assets_defs:
        specs = [
            dg.AssetSpec(s.key, deps=s.deps, partitions_def=s.partitions_def)
            for s in node.specs
            if s.key in selected
        ]
        check_specs = [c for c in node.check_specs if c.asset_key in selected]
        if specs:
            assets.append(_noop_asset(node.node_def.name, specs, check_specs))
        elif check_specs:
            checks.append(_noop_checks(node.node_def.name, check_specs))
    job = dg.define_asset_job("floor", executor_def=dg.in_process_executor)
    defs = dg.Definitions(assets=assets, asset_checks=checks, jobs=[job])
    return defs.resolve_job_def("floor")


def _noop_asset(name: str, specs: list[Any], check_specs: list[Any]) -> Any:
    import dagster as dg

    @dg.multi_asset(name=name, specs=specs, check_specs=check_specs)
    def _asset() -> Iterator[Any]:
        for spec in specs:
            yield dg.MaterializeResult(asset_key=spec.key)
        for check in check_specs:
            yield dg.AssetCheckResult(asset_key=check.asset_key, check_name=check.name, passed=True)

    return _asset


def _noop_checks(name: str, check_specs: list[Any]) -> Any:
    import dagster as dg

    @dg.multi_asset_check(name=name, specs=check_specs)
    def _checks() -> Iterator[Any]:
        for check in check_specs:
            yield dg.AssetCheckResult(asset_key=check.asset_key, check_name=check.name, passed=True)

    return _checks


def floor(args: dict[str, Any]) -> dict[str, Any]:
    """Dagster's own cost of one lifecycle run: ``noop_lifecycle_job`` for one partition,
    timed like ``dagster`` (a fresh process and SQLite instance, ``execute_job`` in process)."""
    import dagster as dg

    from bench.plain import SAMPLE_MODEL

    os.environ |= {
        "LIFECYCLE_MODEL": SAMPLE_MODEL.name,
        "LIFECYCLE_REGISTRY_URL": args["registry"],
        "LIFECYCLE_EXECUTOR": "in_process",
    }
    job = noop_lifecycle_job()  # built once before the clock, as ``dagster`` builds its job
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME: a fresh folder per measurement
        instance.add_dynamic_partitions(SAMPLE_MODEL.scoped("data_versions"), ["data-v1"])
        started = time.perf_counter()
        result = dg.execute_job(
            dg.reconstructable(noop_lifecycle_job),
            instance=instance,
            tags={"dagster/partition": "data-v1"},
            raise_on_error=False,
        )
        seconds = time.perf_counter() - started
        if not result.success:
            raise RuntimeError(f"the no-op lifecycle run failed: {_failure(result)}")
        steps = len(result.get_step_success_events())
    return {
        "seconds": seconds,
        "assets": len(job.asset_layer.selected_asset_keys),
        "checks": len(job.asset_layer.asset_graph.asset_check_keys),
        "steps": steps,
    }


def _failure(result: Any) -> str:
    from lifecycle_pipeline.demo import failure_summary

    return str(failure_summary(result))


def _timed(work: Callable[[], Any], repetitions: int) -> list[float]:
    values = []
    for _ in range(repetitions):
        started = time.perf_counter()
        work()
        values.append(time.perf_counter() - started)
    return values


def many_versions(args: dict[str, Any]) -> dict[str, Any]:
    """Sensor tick, status/history and one version's lineage, in process, repeated."""
    import dagster as dg
    from dagster._core.definitions.sensor_definition import SensorEvaluationContext

    from bench.plain import SAMPLE_MODEL
    from lifecycle_pipeline import governance_log
    from lifecycle_pipeline.definitions import build_definitions
    from lifecycle_pipeline.lineage.audit import AuditLog
    from lifecycle_pipeline.lineage.query import latest, summarize
    from lifecycle_pipeline.lineage.trace import Materialization, trace
    from lifecycle_pipeline.resources.registry import DataRegistry

    repetitions = int(args["repetitions"])
    defs = build_definitions(model=SAMPLE_MODEL, registry=DataRegistry(url=args["registry"]))
    sensor = defs.resolve_sensor_def(SAMPLE_MODEL.scoped("new_data_version_sensor"))
    requested: list[int] = []

    def tick(cursor: str | None) -> None:
        context: SensorEvaluationContext
        with (
            dg.build_sensor_context(
                instance=instance,
                instance_ref=instance.get_ref(),
                cursor=cursor,
                resources=defs.resources,
                definitions=defs,
            ) as context,
            dg.partition_loading_context(dynamic_partitions_store=instance),
        ):
            requested.append(len(sensor.evaluate_tick(context).run_requests or []))

    def lineage() -> None:
        summary = summarize(instance, SAMPLE_MODEL.name, args["version"])
        record = latest(instance, SAMPLE_MODEL.key("deployment_package"), args["version"])
        traced = trace(instance, Materialization.from_record(record))
        if summary is None or len(traced) != 6:
            raise RuntimeError(f"lineage of {args['version']} incomplete: {sorted(traced)}")

    log = AuditLog.for_model(SAMPLE_MODEL.name)
    with dg.DagsterInstance.get() as instance:
        tick(None)  # warm-up: first use of the SQLite connection and the git object store
        return {
            "tick_steady": _timed(lambda: tick(None), repetitions),
            "tick_requests_steady": requested[-1],
            "status": _timed(lambda: governance_log.status_lines(log), repetitions),
            "history": _timed(lambda: governance_log.history(log), repetitions),
            "lineage": _timed(lineage, repetitions),
            "changes": len(governance_log.history(log)),
            "partitions": len(
                instance.get_dynamic_partitions(SAMPLE_MODEL.scoped("data_versions"))
            ),
        }


def populate(args: dict[str, Any]) -> dict[str, Any]:
    """Figure 5's state: every tag a partition, the given versions materialized and promoted.

    Adds to what earlier calls left in the same instance and audit log (figure 5 grows its
    state step by step); returns the wall seconds of each version's materialization.
    """
    import dagster as dg

    from bench.plain import SAMPLE_MODEL, TrainingSettings
    from lifecycle_pipeline import governance
    from lifecycle_pipeline.definitions import build_definitions
    from lifecycle_pipeline.lineage.audit import AuditLog
    from lifecycle_pipeline.resources.artifact_store import ArtifactStore
    from lifecycle_pipeline.resources.registry import DataRegistry
    from lifecycle_pipeline.resources.signing import PackageSigner

    model = SAMPLE_MODEL
    defs = build_definitions(
        model=model,
        registry=DataRegistry(url=args["registry"]),
        artifact_store=ArtifactStore(root=args["artifacts"]),
    )
    job = defs.resolve_job_def(model.scoped("lifecycle"))
    run_config = TrainingSettings(**args["training"]).run_config()
    # Figure 5 measures operations over many recorded versions, not model quality: the small
    # generated versions (600 rows) can miss the demo's gates (data-v014 missed gate_recall),
    # and a failed gate stops the package that promotions need. The gates still run.
    run_config.setdefault("ops", {})[model.op("evaluation")] = {
        "config": {"gates": {"roc_auc": 0.0, "f1": 0.0, "recall": 0.0, "brier": 1.0}}
    }
    materialized: list[str] = args["materialize"]
    log = AuditLog.for_model(model.name)
    _, public = PackageSigner().key_pair()
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(model.scoped("data_versions"), list(args["tags"]))
        seconds = []
        for key in materialized:
            started = time.perf_counter()
            result = job.execute_in_process(
                partition_key=key, instance=instance, run_config=run_config, raise_on_error=False
            )
            seconds.append(time.perf_counter() - started)
            if not result.success:
                raise RuntimeError(f"{key}: {_failure(result)}")
        changes = 0
        for round_ in range(int(args["promotion_rounds"])):
            for key in materialized:
                governance.promote(instance, model, log, key, "bench", f"round {round_}", public)
                changes += 1
            governance.rollback(instance, model, log, "bench", f"round {round_} rollback", public)
            changes += 1
    return {"materialized": materialized, "changes": changes, "seconds": seconds}


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "plain": plain,
    "dagster": dagster,
    "floor": floor,
    "many_versions": many_versions,
    "populate": populate,
}
