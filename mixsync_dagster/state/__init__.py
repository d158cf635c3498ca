"""The state store: the only code that reads or writes mixsync's tables."""

from mixsync_dagster.state.store import *  # noqa: F403
from mixsync_dagster.state.store import __all__, chunks, dumps  # noqa: F401
