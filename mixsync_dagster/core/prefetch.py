"""Read a page ahead: the next page of a listing is fetched while this one is processed."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


@contextmanager
def prefetched(source: Iterable[T], depth: int = 1) -> Iterator[Iterator[T]]:
    """Iterate `source` in a background thread, at most `depth` items ahead.

    Memory stays bounded by `depth` pages; an exception in the source is raised in the
    consumer at the item where it happened; leaving the block early stops the producer.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(source)
        try:
            for item in it:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer, raised there
            put(_Failed(e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="mixsync-list", daemon=True)
    thread.start()

    def consume() -> Iterator[T]:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    try:
        yield consume()
    finally:
        stop.set()
        thread.join(timeout=30)
