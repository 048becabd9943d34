"""Processes that import the package skip the garbage collections of interpreter shutdown,
and still flush what they wrote (the exit hook in ``lifecycle_pipeline/__init__.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# The atexit callback registered before the import runs after the package's own (atexit is
# last in, first out), so it sees the state the interpreter tears down.
PROGRAM = """
import atexit, gc, sys
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0, flush=True))
import lifecycle_pipeline
print("frozen before exit:", gc.get_freeze_count() > 0, flush=True)
log = open(sys.argv[1], "w")  # never closed: teardown must still flush it
log.write("written before exit\\n" * 1000)
cycle = []
cycle.append(cycle)  # cyclic garbage alive at exit
"""


def test_exit_freezes_the_heap_and_unclosed_files_are_still_flushed(tmp_path: Path) -> None:
    written = tmp_path / "log.txt"
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(written)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["frozen before exit: False", "frozen at exit: True"]
    assert written.read_text() == "written before exit\n" * 1000
