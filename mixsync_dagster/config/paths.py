"""Dotted paths with list indexes (`metadata.tags[0]`) into a file record, parsed once."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

ROOT_FIELDS = frozenset(
    {"metadata", "name", "path", "key", "size", "modified_at", "mime_type", "etag", "fingerprint"}
)
_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[-?\d+\])*)")
_INDEX = re.compile(r"\[(-?\d+)\]")

Step = str | int


def parse_path(path: str) -> tuple[Step, ...]:
    """Split `metadata.tags[0]` into ('metadata', 'tags', 0). Raises ValueError when malformed."""
    if not path or path != path.strip():
        raise ValueError(f"'{path}' is not a field path like 'metadata.title' or 'name'")
    steps: list[Step] = []
    for raw in path.split("."):
        m = _SEGMENT.fullmatch(raw)
        if not m:
            raise ValueError(f"'{path}' is not a field path like 'metadata.tags[0]'")
        steps.append(m.group(1))
        steps.extend(int(i) for i in _INDEX.findall(m.group(2)))
    if steps[0] not in ROOT_FIELDS:
        raise ValueError(
            f"'{path}' must start with one of {sorted(ROOT_FIELDS)} (e.g. 'metadata.title')"
        )
    if steps[0] != "metadata" and len(steps) > 1:
        raise ValueError(f"'{path}': only 'metadata' has sub-fields")
    return tuple(steps)


_MISSING = object()


def resolve(record: Mapping[str, Any], steps: Sequence[Step]) -> Any:
    """Follow parsed steps through dicts and lists; returns MISSING when any step is absent."""
    node: Any = record
    for step in steps:
        if isinstance(step, int):
            if not isinstance(node, list | tuple) or not -len(node) <= step < len(node):
                return MISSING
            node = node[step]
        else:
            if not isinstance(node, Mapping) or step not in node:
                return MISSING
            node = node[step]
    return node


MISSING: Any = _MISSING
