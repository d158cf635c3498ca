"""Read ahead: the next pages of a listing are fetched while this one is processed, and a
listing a scan has started can be handed to the run that carries the pass on in this process.

The hand-over is what lets `mixsync sync` keep listing while Dagster loads for the run: the
scan stops at the first page with work, the run (in the same process) takes the listing where
the scan left it instead of listing from the same position again. A run in another process (the
daemon's) simply lists; nothing is shared across processes.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Prefetcher(Generic[T]):
    """Iterate `source` in a background thread, at most `depth` items ahead.

    Memory stays bounded by `depth` items; an exception in the source is raised in the consumer
    at the item where it happened; `close()` stops the producer."""

    def __init__(self, source: Iterable[T], depth: int = 1):
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(source,), name="mixsync-list", daemon=True
        )
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, source: Iterable[T]) -> None:
        it = iter(source)
        try:
            for item in it:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as e:  # handed to the consumer, raised there
            self._put(_Failed(e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class Inline(Generic[T]):
    """`source` iterated in the consumer's own thread, with a Prefetcher's interface.

    For a listing that is CPU work (a local walk): a reading thread would only take turns with
    the consumer for the GIL, and each turn costs a switch interval."""

    def __init__(self, source: Iterable[T]):
        self._it = iter(source)

    def __iter__(self) -> Iterator[T]:
        return self._it

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            # ValueError: still running in another thread; it ends with that thread.
            with contextlib.suppress(ValueError):
                close()


def read_ahead(source: Iterable[T], depth: int, background: bool) -> Prefetcher[T] | Inline[T]:
    """A Prefetcher when reading ahead overlaps a wait (`background`: a network listing), else
    the source as it is."""
    return Prefetcher(source, depth) if background else Inline(source)


@contextmanager
def prefetched(
    source: Iterable[T], depth: int = 1, background: bool = True
) -> Iterator[Iterator[T]]:
    """`read_ahead` for the duration of a `with` block."""
    p = read_ahead(source, depth, background)
    try:
        yield iter(p)
    finally:
        p.close()


@dataclass
class Handoff:
    """A listing in progress: `first` is the page at `position`, `rest` the pages after it."""

    sync_id: int
    pass_uid: str
    position: str | None
    page_size: int
    first: Any
    rest: Iterator[Any]
    source: Prefetcher[Any] | Inline[Any]


_slot: list[Handoff] = []
_slot_lock = threading.Lock()


def hand_over(h: Handoff) -> None:
    """Leave a started listing for the run that carries this pass on (one at a time)."""
    with _slot_lock:
        for old in _slot:
            old.source.close()
        _slot[:] = [h]


def take_over(sync_id: int, pass_uid: str, position: str | None, page_size: int) -> Any:
    """The pages a scan of this very pass left at `position`, as an iterator, or None."""
    with _slot_lock:
        if not _slot:
            return None
        h = _slot.pop()
    if (h.sync_id, h.pass_uid, h.position, h.page_size) != (
        sync_id,
        pass_uid,
        position,
        page_size,
    ):
        h.source.close()
        return None

    def pages() -> Iterator[Any]:
        try:
            yield h.first
            yield from h.rest
        finally:
            h.source.close()

    return pages()


def discard() -> None:
    """Stop a listing nobody took over."""
    with _slot_lock:
        for old in _slot:
            old.source.close()
        _slot.clear()
