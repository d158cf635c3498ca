"""Values read from the environment never reach a person: one registry, one `redact()`.

The config loader registers every value it reads from `{env: VAR}` (and forms derived from it,
such as a local root resolved to an absolute path). Text on its way to a person or a store
passes through `redact()`, which replaces any registered value (in any letter case, URL-quoted,
JSON- or repr-escaped) with `${VAR}` and masks the userinfo of every URL (`https://***@host`).

The choke points that call it, so that callers need not remember to:
- `MixsyncError.__init__` (errors.py): every message mixsync raises, and the text of the
  exception being handled when it is raised (it becomes the `__cause__` Dagster shows);
- `RedactingFilter` on mixsync's loggers, and `guard_streams()` around every CLI command (all of
  its output, Dagster's console log of an in-process run included);
- the failure text recorded as `last_error` (core.passes), the stored `uri` of an object
  (core.judge) and the `file://` URLs of the local provider.

The registry is process-wide on purpose: the process that holds a secret is the process that
loaded the config, and every message it builds afterwards must be masked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

MIN_SECRET_LENGTH = 4
"""Shorter values cannot be masked without mangling ordinary text; the loader refuses them."""

_lock = threading.Lock()
_forms: dict[str, str] = {}
"""Lower-cased form of a registered value → the variable it came from."""
_pattern: re.Pattern[str] | None = None

USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?:[^/?#@\s'\"<>]*@)+")
"""`scheme://user:password@` (greedy up to the authority's last `@`: unencoded `@` in passwords)."""


def _derived_forms(value: str) -> set[str]:
    """The value and the obvious transforms it may appear in (case is handled by the regex)."""
    forms = {
        value,
        quote(value, safe=""),
        quote(value, safe="/"),
        quote_plus(value),
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
    }
    # A multi-line value (a service-account JSON) can reach line-buffered output line by line.
    forms.update(line.strip() for line in value.splitlines())
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def register(value: str, var: str) -> None:
    """Remember a value read from `${var}`: from now on it is masked in every redacted text."""
    global _pattern
    forms = _derived_forms(value)
    with _lock:
        new = {f.lower(): var for f in forms if f.lower() not in _forms}
        if not new:
            return
        _forms.update(new)
        alternatives = sorted(_forms, key=len, reverse=True)  # longest first: no partial masks
        _pattern = re.compile("|".join(re.escape(f) for f in alternatives), re.IGNORECASE)


def registered() -> bool:
    """Whether any value from the environment is known to this process."""
    return _pattern is not None


def redact(text: str) -> str:
    """`text` with every registered value replaced by `${VAR}` and URL userinfo masked."""
    if not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(lambda m: "${" + _forms.get(m.group(0).lower(), "ENV") + "}", text)
    if "@" in text and "://" in text:
        text = USERINFO.sub(r"\g<scheme>***@", text)
    return text


def redact_value(value: Any) -> Any:
    """`redact` applied to every string inside a JSON-like value (dicts, lists)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def scrub_exception(exc: BaseException | None) -> None:
    """Redact, in place, the text of an exception and of its causes and contexts.

    Used on third-party exceptions that mixsync wraps: Dagster shows the wrapped one as the
    cause, message included (botocore puts the endpoint URL in its messages, `OSError` the
    path)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        with contextlib.suppress(Exception):  # an exotic exception with read-only args
            args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
            if args != exc.args:
                exc.args = args
            if isinstance(exc, OSError):
                for attr in ("filename", "filename2"):
                    name = getattr(exc, attr)
                    if isinstance(name, str) and redact(name) != name:
                        setattr(exc, attr, redact(name))
        exc = exc.__cause__ or exc.__context__


class RedactingFilter(logging.Filter):
    """Masks registered values in a record's message (formatted eagerly) and exception."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            scrub_exception(record.exc_info[1])
            record.exc_text = None
        return True


_FILTER = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)` with the redacting filter attached (logger filters apply only
    to records logged on that very logger, so each of mixsync's loggers gets one)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


class _RedactingStream:
    """A text stream that writes whole lines, redacted, to the stream it wraps.

    Line-buffered so that a value split over several `write` calls is still masked. No
    `buffer` attribute: click then writes through this object instead of around it."""

    def __init__(self, inner: TextIO):
        self._inner = inner
        self._pending = ""
        # Reentrant: `mixsync sync` writes from its SIGINT handler, which may interrupt a write.
        self._lock = threading.RLock()

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        with self._lock:
            self._pending += s
            if "\n" in self._pending:
                done, _, self._pending = self._pending.rpartition("\n")
                self._inner.write(redact(done + "\n"))
        return len(s)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._inner.write(redact(self._pending))
                self._pending = ""
        self._inner.flush()

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    @property
    def encoding(self) -> str:
        return self._inner.encoding

    @property
    def errors(self) -> str | None:
        return self._inner.errors

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False


@contextlib.contextmanager
def guard_streams() -> Iterator[None]:
    """Redact everything written to sys.stdout and sys.stderr until the block ends."""
    saved = sys.stdout, sys.stderr
    out, err = _RedactingStream(saved[0]), _RedactingStream(saved[1])
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        for stream in (out, err):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdout, sys.stderr = saved
