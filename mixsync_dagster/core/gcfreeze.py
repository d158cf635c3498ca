"""Keeping a loaded process's objects out of the garbage collector's way while a pass works."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def long_lived_frozen() -> Iterator[None]:
    """Keep what the process holds when a scan or run starts (Dagster, its instance, the job;
    about a million objects) out of the garbage collector's full collections meanwhile.

    A pass allocates a few container objects per file, which triggers a full collection every
    few thousand files, and each one walked every object loaded: 17% of a local first pass
    (3.3 s of 18.9 s at 100,000 files; 0.2 s frozen). `gc.unfreeze` gives the objects back
    afterwards, so a process that runs many passes leaks nothing."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
