"""The line between a refusal and a bug, which the `lifecycle` exit status reports.

A :class:`LifecycleError` is raised when the input, the configuration or the recorded evidence
does not allow what was asked (a bad data file, a tampered artifact, a promotion without
passing gates): the message says what is wrong and what to do, and the CLI exits 2. Any other
exception is a defect in this code or an environment failure nobody anticipated: the CLI exits
3 with the traceback, so scripts and tests can tell the two apart.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What `lifecycle` tells a script; the table is printed by `lifecycle --help`."""

    OK = 0
    NEGATIVE = 1
    REFUSED = 2
    INTERNAL = 3


EXIT_CODES_HELP = """\
exit status:
  0  done: the command succeeded, or its verdict is positive (verified, identical)
  1  a negative verdict: not verified, different, not reproducible, nothing found at a time
  2  refused: invalid input, configuration or identifier, or an action the evidence does
     not allow (the message says what is wrong and what to do)
  3  internal error: a defect or an unexpected environment failure; the traceback is
     printed: please report it
"""


class LifecycleError(Exception):
    """Rejected input or a refused action; the message names the problem and the fix."""


class SettingError(LifecycleError, ValueError):
    """An environment variable or command argument holds a value this project cannot use."""
