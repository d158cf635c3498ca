"""File filters: every filter is AND-ed; the first one that rejects a file names the reason.

Cheap checks (extension, size, time, MIME type, patterns) run before metadata filters, which may
need provider metadata that costs a request per file. A pass stops at the first rejection (the
fast path); `preview` asks for every filter that rejects a file (`CompiledFilters.rejections`).
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mixsync_dagster.config import FileFilters, MetadataFilter
from mixsync_dagster.config.globs import GLOB_CHARS, compile_patterns, normalize_pattern
from mixsync_dagster.config.paths import MISSING, resolve
from mixsync_dagster.core.records import FileItem


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    filter: str | None = None
    reason: str | None = None


ACCEPT = Verdict(True)


def filters_hash(f: FileFilters) -> str:
    """Changes whenever the filters change, so earlier verdicts are re-evaluated."""
    return hashlib.sha256(f.model_dump_json().encode()).hexdigest()[:32]


def mime_type_of(item: FileItem) -> str | None:
    if item.content_type:
        return item.content_type.split(";", 1)[0].strip().lower()
    guessed, _ = mimetypes.guess_type(item.name, strict=False)
    return guessed


def literal_prefix(patterns: list[str], case_sensitive: bool = True) -> str:
    """The folder prefix every include pattern starts with (`2025/q1/`), or '' if none.

    Pushed down to the provider's listing so it only lists what can match.
    """
    if not patterns or not case_sensitive:
        return ""
    prefixes = []
    for raw in patterns:
        p = normalize_pattern(raw)
        cut = min((i for i, ch in enumerate(p) if ch in GLOB_CHARS), default=len(p))
        head = p[:cut]
        prefixes.append(head[: head.rfind("/") + 1] if "/" in head else "")
    common = prefixes[0]
    for other in prefixes[1:]:
        while not other.startswith(common):
            common = (
                common[: common.rstrip("/").rfind("/") + 1] if "/" in common.rstrip("/") else ""
            )
    return common


Check = Callable[[FileItem], Verdict]


@dataclass(frozen=True)
class CompiledFilters:
    """Cheap checks (from the listing alone) and metadata checks (may need a provider call)."""

    cheap: Check
    """The first cheap rejection, or ACCEPT (the fast path of a pass)."""
    metadata: Check
    needs_metadata: bool
    cheap_checks: tuple[Check, ...] = ()
    metadata_checks: tuple[Check, ...] = ()

    def __call__(self, item: FileItem) -> Verdict:
        v = self.cheap(item)
        return self.metadata(item) if v.ok else v

    def rejections(self, item: FileItem, *, with_metadata: bool = True) -> list[Verdict]:
        """Every filter that rejects the file, in evaluation order ([] = accepted). Metadata
        filters are judged only `with_metadata` (when the file's metadata is at hand)."""
        checks = self.cheap_checks + (self.metadata_checks if with_metadata else ())
        return [v for v in (check(item) for check in checks) if not v.ok]


def _all(checks: list[Check]) -> Check:
    def run(item: FileItem) -> Verdict:
        for check in checks:
            v = check(item)
            if not v.ok:
                return v
        return ACCEPT

    return run


def compile_filters(f: FileFilters) -> CompiledFilters:
    """Turn a FileFilters into cheap and metadata checks; each returns the first rejection."""
    checks: list[Check] = []
    if f.extensions:
        exts = tuple(f.extensions)

        def ext(item: FileItem) -> Verdict:
            if item.name.lower().endswith(exts):
                return ACCEPT
            return Verdict(
                False, "extensions", f"'{item.name}' does not end with any of {list(exts)}"
            )

        checks.append(ext)
    if f.min_size_bytes is not None:
        lo = f.min_size_bytes
        checks.append(
            lambda item: (
                ACCEPT
                if item.size >= lo
                else Verdict(False, "min_size_bytes", f"size {item.size} < {lo}")
            )
        )
    if f.max_size_bytes is not None:
        hi = f.max_size_bytes
        checks.append(
            lambda item: (
                ACCEPT
                if item.size <= hi
                else Verdict(False, "max_size_bytes", f"size {item.size} > {hi}")
            )
        )
    if f.modified_after is not None:
        after = f.modified_after
        checks.append(
            lambda item: (
                ACCEPT
                if item.modified_at > after
                else Verdict(
                    False,
                    "modified_after",
                    f"modified {item.modified_at.isoformat()} is not after {after.isoformat()}",
                )
            )
        )
    if f.modified_before is not None:
        before = f.modified_before
        checks.append(
            lambda item: (
                ACCEPT
                if item.modified_at < before
                else Verdict(
                    False,
                    "modified_before",
                    f"modified {item.modified_at.isoformat()} is not before {before.isoformat()}",
                )
            )
        )
    if f.mime_types:
        exact = {m.lower() for m in f.mime_types if not m.endswith("/*")}
        families = tuple(m[:-1].lower() for m in f.mime_types if m.endswith("/*"))

        def mime(item: FileItem) -> Verdict:
            mt = mime_type_of(item)
            if mt and (mt in exact or (families and mt.startswith(families))):
                return ACCEPT
            return Verdict(
                False, "mime_types", f"MIME type {mt or 'unknown'} not in {f.mime_types}"
            )

        checks.append(mime)
    # The compile the config validation ran: a pattern that validated is the one that matches.
    if f.include_patterns:
        inc = compile_patterns(tuple(f.include_patterns), f.case_sensitive)
        checks.append(
            lambda item: (
                ACCEPT
                if inc.match(item.rel_path)
                else Verdict(
                    False,
                    "include_patterns",
                    f"'{item.rel_path}' matches none of {f.include_patterns}",
                )
            )
        )
    if f.exclude_patterns:
        pats = [(p, compile_patterns((p,), f.case_sensitive)) for p in f.exclude_patterns]

        def exclude(item: FileItem) -> Verdict:
            for p, m in pats:
                if m.match(item.rel_path):
                    return Verdict(False, "exclude_patterns", f"'{item.rel_path}' matches '{p}'")
            return ACCEPT

        checks.append(exclude)
    meta = [_metadata_check(mf) for mf in f.metadata_filters]
    return CompiledFilters(_all(checks), _all(meta), bool(meta), tuple(checks), tuple(meta))


def _metadata_check(mf: MetadataFilter) -> Check:
    steps = tuple(s for part in mf.field.split(".") for s in ([part] if part else []))
    label = f"metadata_filters[{mf.field} {mf.operator}]"

    def check(item: FileItem) -> Verdict:
        actual = resolve(item.metadata, steps)
        ok, why = _compare(mf.operator, actual, mf.value)
        return ACCEPT if ok else Verdict(False, label, why)

    return check


def _compare(op: str, actual: Any, expected: Any) -> tuple[bool, str]:
    shown = "missing" if actual is MISSING else repr(actual)
    if op == "exists":
        want = True if expected is None else bool(expected)
        present = actual is not MISSING and actual is not None
        return present == want, f"value is {shown}"
    if actual is MISSING:
        return op in ("not_equals", "not_contains"), "value is missing"
    if op == "equals":
        return _eq(actual, expected), f"{shown} != {expected!r}"
    if op == "not_equals":
        return not _eq(actual, expected), f"{shown} == {expected!r}"
    if op in ("contains", "not_contains"):
        if isinstance(actual, str):
            hit = str(expected) in actual
        elif isinstance(actual, list | tuple | set):
            hit = any(_eq(a, expected) for a in actual)
        elif isinstance(actual, dict):
            hit = expected in actual
        else:
            return False, f"{shown} is neither text nor a list"
        if op == "contains":
            return hit, f"{shown} does not contain {expected!r}"
        return not hit, f"{shown} contains {expected!r}"
    a, b = _orderable(actual, expected)
    if a is None or b is None:
        return False, f"cannot compare {shown} with {expected!r}"
    result = {"gt": a > b, "lt": a < b, "gte": a >= b, "lte": a <= b}[op]
    return result, f"{shown} is not {op} {expected!r}"


def _eq(a: Any, b: Any) -> bool:
    if a == b:
        return True
    x, y = _orderable(a, b)
    return x is not None and x == y


def _orderable(a: Any, b: Any) -> tuple[Any, Any]:
    """Coerce both sides to numbers, else to aware datetimes; (None, None) if impossible."""
    for conv in (_num, _time):
        x, y = conv(a), conv(b)
        if x is not None and y is not None:
            return x, y
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    return None, None


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _time(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v if v.tzinfo else None
    if isinstance(v, str):
        try:
            t = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
        return t if t.tzinfo else None
    return None
