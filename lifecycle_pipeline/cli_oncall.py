"""The instance-care commands of `lifecycle`: doctor and instance rebuild."""

from __future__ import annotations

from typing import Any


def register(commands: Any) -> None:
    """Add the instance-care subcommands to the `lifecycle` parser."""
