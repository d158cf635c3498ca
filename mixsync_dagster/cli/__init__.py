"""The `mixsync` command line. Importing the command modules registers their commands."""

from mixsync_dagster.cli import ops as _ops  # noqa: F401
from mixsync_dagster.cli import sync as _sync  # noqa: F401
from mixsync_dagster.cli.app import main

__all__ = ["main"]
