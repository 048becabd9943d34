"""Named crash points, so crash-safety is tested at exact places instead of by lucky timing.

``LIFECYCLE_FAILPOINT=<name>`` makes the process SIGKILL itself when it reaches ``<name>``: no
``finally`` block, no atexit handler, no flush runs, exactly as with the OOM killer or a lost
node. Unset (always, outside the reliability tests) a failpoint is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "LIFECYCLE_FAILPOINT"

POINTS = {
    "training.fitted": "trained_model, after the fit and before anything is written",
    "artifact.temporary_written": "the artifact store, payload in a temporary file, not renamed",
    "tree.half_written:<asset>": "the artifact store, half of that asset's folder written "
    "(deployment_package: a package, model_card: a documentation bundle)",
    "audit.half_appended": "the audit log, half of a record's bytes written and none synced",
}


def failpoint(name: str) -> None:
    """Die here, now, if the environment names this point."""
    if os.environ.get(ENV) == name:
        known = {point.split(":")[0] for point in POINTS}
        if name.split(":")[0] not in known:  # a typo in a test, not a runtime path
            raise ValueError(f"unknown failpoint {name!r}; one of {sorted(POINTS)}")
        os.kill(os.getpid(), signal.SIGKILL)
