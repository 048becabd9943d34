"""How every figure is measured: fresh child processes, pinned threads, medians and ranges.

A measurement runs in its own interpreter (``python -m bench.lifecycle --child KIND ARGS``) so
that its peak RSS (``VmHWM``) belongs to that computation alone and no import, cache or
allocator state leaks from one measurement into the next.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PINNED_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
QUIET = {"DVC_NO_ANALYTICS": "1", "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONHASHSEED": "0"}


class ChildError(RuntimeError):
    """A measurement's child process failed; the message carries the end of its stderr."""


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment with threads pinned and telemetry off, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= PINNED_THREADS | QUIET
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env | dict(extra or {})


def run_child(
    kind: str, args: Mapping[str, Any], env: Mapping[str, str], timeout: float = 3600
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its last stdout line is its JSON result."""
    command = [sys.executable, "-m", "bench.lifecycle", "--child", kind, json.dumps(args)]
    done = subprocess.run(
        command, cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise ChildError(f"{kind} {args}: exit {done.returncode}: {done.stderr.strip()[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def timed_process(
    command: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = 3600
) -> float:
    """Wall seconds of a whole process, start to exit (interpreter start-up included)."""
    started = time.perf_counter()
    done = subprocess.run(
        list(command), cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-3000:]
        raise ChildError(f"{' '.join(command[:6])} exit {done.returncode}: {tail}")
    return seconds


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median and range of repeated measurements (the values are kept for re-analysis)."""
    clean = [float(v) for v in values]
    return {
        "median": statistics.median(clean),
        "min": min(clean),
        "max": max(clean),
        "n": len(clean),
        "values": clean,
    }


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    den = sum((x - mx) ** 2 for x in lx)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / den


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return float("nan")


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> dict[str, Any]:
    release = {}
    os_release = Path("/etc/os-release")
    if os_release.exists():
        for line in os_release.read_text().splitlines():
            key, _, value = line.partition("=")
            release[key] = value.strip('"')
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _mem_total_gib(),
        "os": release.get("PRETTY_NAME", platform.system()),
        "kernel": platform.release(),
        "threads_pinned": PINNED_THREADS,
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in ("dagster", "dvc", "pandas", "scikit-learn", "numpy", "pyarrow"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    # The harness's own outputs (results, profiles, BENCHMARKS.md) change during a run and
    # say nothing about the code measured: only other changes make the tree "dirty".
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
         ":(exclude)bench/results", ":(exclude)BENCHMARKS.md"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    found["git_commit"] = commit or "unknown"
    found["git_dirty"] = "yes" if dirty else "no"
    return found
