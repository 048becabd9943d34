"""Named crash points, so crash-safety is tested at exact places instead of by lucky timing.

``LIFECYCLE_FAILPOINT=<name>`` makes the process SIGKILL itself when it reaches ``<name>``: no
``finally`` block, no atexit handler, no flush runs, exactly as with the OOM killer or a lost
node. ``LIFECYCLE_PAUSEPOINT=<name>`` makes it SIGSTOP itself there instead: a worker that is
alive but stalled at a known place, and not in the middle of a storage write (a pause sent
from outside at a lucky moment could land inside one and leave a SQLite file locked). Unset
(always, outside the reliability tests) a failpoint is two dictionary lookups.
"""

from __future__ import annotations

import os
import signal

ENV = "LIFECYCLE_FAILPOINT"
PAUSE_ENV = "LIFECYCLE_PAUSEPOINT"

POINTS = {
    "training.fitted": "trained_model, after the fit and before anything is written",
    "artifact.temporary_written": "the artifact store, payload in a temporary file, not renamed",
    "tree.half_written:<asset>": "the artifact store, half of that asset's folder written "
    "(deployment_package: a package, model_card: a documentation bundle)",
    "audit.half_appended": "the audit log, half of a record's bytes written and none synced",
    # A promotion or rollback, between its writes (governance_commit explains the order).
    "governance.intent_written": "a change's intent record appended, nothing else written",
    "governance.event_reported": "the production_model event written, no commit record",
    "governance.committed": "the commit record appended, no signed checkpoint of it",
}


def failpoint(name: str) -> None:
    """Die here, now, if the environment names this point; stop here if it pauses at it."""
    for variable, sent in ((ENV, signal.SIGKILL), (PAUSE_ENV, signal.SIGSTOP)):
        if os.environ.get(variable) == name:
            known = {point.split(":")[0] for point in POINTS}
            if name.split(":")[0] not in known:  # a typo in a test, not a runtime path
                raise ValueError(f"unknown failpoint {name!r}; one of {sorted(POINTS)}")
            os.kill(os.getpid(), sent)
