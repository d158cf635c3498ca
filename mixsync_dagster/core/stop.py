"""A stop request (SIGINT, SIGTERM) that a pass honours at its next safe point."""

from __future__ import annotations

import threading

_stop = threading.Event()
_signal: list[int] = []


def request(signum: int) -> None:
    """Ask the running pass to stop after its current group of files is committed."""
    _signal.append(signum)
    _stop.set()


def requested() -> bool:
    return _stop.is_set()


def signal_number() -> int | None:
    return _signal[0] if _signal else None


def reset() -> None:
    _signal.clear()
    _stop.clear()
