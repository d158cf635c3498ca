"""`{env: VAR}`: where a value may be read from the environment, and reading it.

A value read from the environment is never shown (see `mixsync_dagster.redaction`). That is
only possible for settings mixsync keeps to itself: credentials, endpoints, account ids, the
state URL and a local root. Everything under `syncs:` is copied by design into Dagster names,
object metadata, source keys or filter reasons a person reads, so it cannot come from the
environment; neither can numbers, switches and fixed choices (the environment only holds text,
and masking a word like `path` everywhere would mangle every message).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from mixsync_dagster.errors import ConfigProblem
from mixsync_dagster.redaction import MIN_SECRET_LENGTH, register

ENV_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

CONNECTION_ENV_FIELDS = frozenset(
    {
        ("root",),
        ("region",),
        ("endpoint_url",),
        ("project",),
        ("credentials_json",),
        ("access_token_id",),
        ("access_token_secret",),
        ("webhook_secret",),
        ("api_base_url",),
        ("stream_base_url",),
        ("credentials", "access_key_id"),
        ("credentials", "secret_access_key"),
        ("credentials", "session_token"),
        ("credentials", "role_arn"),
        ("credentials", "external_id"),
        ("credentials", "sts_endpoint_url"),
        # azure_blob
        ("account_url",),
        ("connection_string",),
        ("account_name",),
        ("account_key",),
        ("sas_token",),
        # google_drive (credentials_json and endpoint_url above)
        ("subject",),
        ("oauth", "client_id"),
        ("oauth", "client_secret"),
        ("oauth", "refresh_token"),
        ("oauth", "token_uri"),
    }
)
BUCKET_ENV_FIELDS = frozenset({("bucket_id",), ("namespace",), ("api_key",), ("base_url",)})

Loc = tuple[Any, ...]
Where = Callable[[Loc], tuple[str | None, str]]
"""Turns a location in the document into (sync name, dotted field) for a problem."""


def env_allowed(loc: Loc) -> bool:
    """Whether the setting at `loc` may be written `{env: VAR}`."""
    if loc == ("state", "url"):
        return True
    if len(loc) >= 3 and loc[0] == "connections":
        return tuple(loc[2:]) in CONNECTION_ENV_FIELDS
    if len(loc) >= 3 and loc[0] == "buckets":
        return tuple(loc[2:]) in BUCKET_ENV_FIELDS
    return False


def is_env_ref(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and "env" in node


def resolve_env(
    node: Any, where: Where, problems: list[ConfigProblem], loc: Loc = ()
) -> tuple[Any, dict[Loc, str]]:
    """The document with every permitted `{env: VAR}` replaced by its value (registered for
    redaction the moment it is read), and the variable read at each location."""
    read: dict[Loc, str] = {}

    def walk(node: Any, loc: Loc) -> Any:
        if is_env_ref(node):
            return _read(node["env"], loc)
        if isinstance(node, dict):
            return {k: walk(v, (*loc, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(node)]
        return node

    def problem(loc: Loc, message: str, fix: str) -> str:
        sync, field = where(loc)
        problems.append(ConfigProblem(sync=sync, field=field, message=message, fix=fix))
        return ""

    def _read(var: Any, loc: Loc) -> Any:
        if not isinstance(var, str) or not ENV_VAR_RE.fullmatch(var):
            return problem(
                loc,
                "{env: ...} must name an environment variable",
                "write e.g. {env: MIXPEEK_API_KEY} (letters, digits and _)",
            )
        if not env_allowed(loc):
            section = "sync settings" if loc and loc[0] == "syncs" else "this setting"
            return problem(
                loc,
                f"{section} cannot be read from the environment ({{env: {var}}}): they are "
                "shown in names, keys, object metadata or messages, and values from the "
                "environment never are",
                "write the value in the file; {env: VAR} is for credentials, endpoints, "
                "account ids, a local root and the state URL (README, 'Secrets')",
            )
        value = os.environ.get(var)
        if value is None:
            return problem(
                loc,
                f"environment variable {var} is not set",
                f"export {var}=... before starting Dagster or mixsync",
            )
        if len(value) < MIN_SECRET_LENGTH:
            what = "is empty" if not value else f"holds fewer than {MIN_SECRET_LENGTH} characters"
            return problem(
                loc,
                f"environment variable {var} {what}; a value from the environment is masked "
                "wherever it appears, which needs a longer value",
                f"set {var} to the real value, or write a short non-secret value in the file",
            )
        register(value, var)
        read[loc] = var
        return value

    return walk(node, loc), read
