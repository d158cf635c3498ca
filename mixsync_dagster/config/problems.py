"""Turning a location in the document, and a pydantic error, into a ConfigProblem that names the
sync, the dotted field and the fix."""

from __future__ import annotations

from typing import Any

from mixsync_dagster.errors import ConfigProblem


def sync_label(raw: Any, index: int) -> str:
    """How a problem names the sync at `syncs[index]`: its name, else `#n`."""
    try:
        name = raw["syncs"][index].get("name")
    except (KeyError, IndexError, TypeError, AttributeError):
        name = None
    # A name with a newline or a control character is reported by position: a problem is
    # one line, and the name itself is what is wrong.
    return name if isinstance(name, str) and name and name.isprintable() else f"#{index + 1}"


def where(loc: tuple[Any, ...], raw: Any) -> tuple[str | None, str]:
    """Turn a pydantic location into (sync name, dotted field)."""
    parts = list(loc)
    sync: str | None = None
    if len(parts) >= 2 and parts[0] == "syncs" and isinstance(parts[1], int):
        sync = sync_label(raw, parts[1])
        parts = parts[2:]
    elif len(parts) >= 2 and parts[0] in ("connections", "buckets"):
        # Drop pydantic's union-tag segment so the field reads connections.inbox.root.
        tags = ("local", "s3", "gcs", "mux", "azure_blob", "google_drive", "mixpeek")
        parts = [p for i, p in enumerate(parts) if not (i == 2 and p in tags)]
    field = ""
    for p in parts:
        if isinstance(p, int):
            field += f"[{p}]"
        elif str(p).startswith(("function-after", "function-before")):
            continue
        else:
            field += ("." if field else "") + str(p)
    return sync, field or "(top level)"


_FIXES = {
    "extra_forbidden": "remove it or check its spelling",
    "missing": "add it",
    "greater_than_equal": "raise the value",
    "less_than_equal": "lower the value",
    "greater_than": "raise the value",
    "less_than": "lower the value",
    "literal_error": "use one of the allowed values",
    "string_too_long": "shorten it",
    "string_too_short": "give a non-empty value",
    "int_parsing": "give a whole number",
    "int_type": "give a whole number",
    "bool_parsing": "use true or false",
    "bool_type": "use true or false",
    "datetime_parsing": "use ISO-8601 with a zone, e.g. 2025-01-01T00:00:00Z",
    "datetime_from_date_parsing": "use ISO-8601 with a zone, e.g. 2025-01-01T00:00:00Z",
    "dict_type": "give a mapping (key: value)",
    "list_type": "give a list",
    "model_type": "give a mapping (key: value)",
    "string_type": "give a string",
    "string_pattern_mismatch": "use the documented format",
    "float_type": "give a number",
    "float_parsing": "give a number",
}

_FIX_BY_FIELD = {
    "name": "use lowercase letters, digits and _ only, e.g. inbox_videos",
    "metadata": "keep at most 50 keys",
    "mime_types": "use type/subtype or type/*, e.g. video/mp4 or video/*",
    "extensions": "use extensions like .mp4 or mp4",
    "modified_after": "use ISO-8601 with a zone, e.g. 2025-01-01T00:00:00Z",
    "modified_before": "use ISO-8601 with a zone, e.g. 2025-01-01T00:00:00Z",
    "source": "use a path such as metadata.title, metadata.tags[0], name, path or size",
    "pattern": "fix the regular expression",
    "env": "name an environment variable, e.g. {env: MIXPEEK_API_KEY}",
    "reconcile": "keep either reconcile: {on_delete, on_update, on_filter_drift} or "
    "reconcile_on_sync (README, 'reconcile'), not both",
    "mime_type_override": "use type/subtype, e.g. video/mp4",
    "include_patterns": "fix the pattern (README, 'Glob rules')",
    "exclude_patterns": "fix the pattern (README, 'Glob rules')",
    "file_filters": "fix the pattern (README, 'Glob rules')",
    "url": "give a SQLAlchemy URL of PostgreSQL or SQLite, e.g. {env: MIXSYNC_STATE_URL}",
    "connections": "rename it, e.g. s3_media",
    "buckets": "rename it, e.g. prod_media",
}

_RANGES = {
    "polling_interval_seconds": "30..86400",
    "sync_concurrency": "1..16",
    "batch_size": "1..100",
    "max_objects_per_run": "1 or more",
}


def from_pydantic(err: Any, raw: Any) -> ConfigProblem:
    sync, field = where(tuple(err["loc"]), raw)
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif kind in ("int_type", "float_type") and isinstance(err.get("input"), bool):
        msg = f"{str(err['input']).lower()} is a switch, not a number"
    elif kind in ("int_type", "float_type", "bool_type") and isinstance(err.get("input"), str):
        msg = f"{msg} (a quoted value is text)"
    leaf = field.rsplit(".", 1)[-1].split("[", 1)[0]
    fix = _FIXES.get(kind) or _FIX_BY_FIELD.get(leaf, "see the syncs.yaml reference in README.md")
    if kind in ("greater_than_equal", "less_than_equal") and leaf in _RANGES:
        fix = f"use a value in {_RANGES[leaf]}"
    if kind == "literal_error" and "expected" in err.get("ctx", {}):
        fix = f"use one of {err['ctx']['expected']}"
    if kind == "union_tag_invalid" or (kind == "literal_error" and leaf in ("provider", "target")):
        fix = (
            "use provider local, s3, gcs, azure_blob, google_drive or mux; target local or mixpeek"
        )
    return ConfigProblem(sync=sync, field=field, message=msg, fix=fix)
