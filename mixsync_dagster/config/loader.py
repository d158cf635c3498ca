"""Loading syncs.yaml: read, resolve {env: VAR}, validate, and report problems by field.

Loading is all-or-nothing: `load_config` either returns a fully validated `MixsyncConfig` (every
`{env: VAR}` resolved, every cross-reference checked) or raises one `ConfigError` listing every
problem, each naming the file, the sync, the field and the fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mixsync_dagster.config.models import (
    AzureBlobConnection,
    GCSConnection,
    GoogleDriveConnection,
    LocalConnection,
    MixsyncConfig,
    MuxConnection,
    S3Connection,
)
from mixsync_dagster.errors import ConfigError, ConfigProblem

CONFIG_ENV_VAR = "MIXSYNC_CONFIG"
DEFAULT_CONFIG_NAME = "syncs.yaml"


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`-c/--config`, else `$MIXSYNC_CONFIG`, else `./syncs.yaml`."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV_VAR)
    return Path(env) if env else Path(DEFAULT_CONFIG_NAME)


def load_config(path: str | os.PathLike[str] | None = None) -> MixsyncConfig:
    """Read, resolve and validate a syncs.yaml. Raises ConfigError listing every problem."""
    p = config_path(path)
    shown = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            shown,
            [
                ConfigProblem(
                    field="(file)",
                    message="file not found",
                    fix=f"create it, pass -c PATH, or set {CONFIG_ENV_VAR}",
                )
            ],
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(
            shown,
            [
                ConfigProblem(
                    field="(file)", message=f"not valid YAML: {e}", fix="correct the syntax"
                )
            ],
        ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            shown,
            [
                ConfigProblem(
                    field="(file)",
                    message="the top level must be a mapping",
                    fix="start with keys such as 'connections:', 'buckets:' and 'syncs:'",
                )
            ],
        )
    return parse_config(raw, source_file=shown, base_dir=str(p.resolve().parent))


def parse_config(raw: dict[str, Any], *, source_file: str, base_dir: str) -> MixsyncConfig:
    """Validate an already-parsed YAML document (see load_config)."""
    problems: list[ConfigProblem] = []
    secrets: dict[str, str] = {}
    resolved = _resolve_env(raw, (), raw, problems, secrets)
    unset = {(p.sync, p.field) for p in problems}
    for key in ("base_dir", "source_file"):
        if key in resolved:
            problems.append(ConfigProblem(field=key, message="unknown key", fix=f"remove '{key}'"))
    cfg: MixsyncConfig | None = None
    try:
        cfg = MixsyncConfig.model_validate(
            {**resolved, "base_dir": base_dir, "source_file": source_file}
        )
    except ValidationError as e:
        # A field whose variable is unset is already reported; its placeholder adds nothing.
        found = [_problem(err, raw) for err in e.errors()]
        problems += [p for p in found if (p.sync, p.field) not in unset]
    if cfg is not None and not problems:
        problems += _cross_check(cfg)
    if problems:
        raise ConfigError(source_file, [_scrub(p, secrets) for p in problems])
    assert cfg is not None
    return cfg


def _scrub(p: ConfigProblem, secrets: dict[str, str]) -> ConfigProblem:
    """Values read from the environment never appear in an error, even about their own field."""
    message, fix = p.message, p.fix
    for value, var in secrets.items():
        message = message.replace(value, f"${{{var}}}")
        fix = fix.replace(value, f"${{{var}}}")
    return ConfigProblem(sync=p.sync, field=p.field, message=message, fix=fix)


def _resolve_env(
    node: Any,
    loc: tuple[Any, ...],
    raw: Any,
    problems: list[ConfigProblem],
    secrets: dict[str, str],
) -> Any:
    """Replace every `{env: VAR}` with the variable's value, remembering values to scrub."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            var = node["env"]
            value = os.environ.get(var)
            if value is None:
                sync, field = _where(loc, raw)
                problems.append(
                    ConfigProblem(
                        sync=sync,
                        field=field,
                        message=f"environment variable {var} is not set",
                        fix=f"export {var}=... before starting Dagster or mixsync",
                    )
                )
                return ""
            if value:
                secrets[value] = var
            return value
        return {k: _resolve_env(v, (*loc, k), raw, problems, secrets) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_env(v, (*loc, i), raw, problems, secrets) for i, v in enumerate(node)]
    return node


def _where(loc: tuple[Any, ...], raw: Any) -> tuple[str | None, str]:
    """Turn a pydantic location into (sync name, dotted field)."""
    parts = list(loc)
    sync: str | None = None
    if len(parts) >= 2 and parts[0] == "syncs" and isinstance(parts[1], int):
        try:
            name = raw["syncs"][parts[1]].get("name")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = None
        sync = str(name) if name else f"#{parts[1] + 1}"
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
}

_RANGES = {
    "polling_interval_seconds": "30..86400",
    "sync_concurrency": "1..16",
    "batch_size": "1..100",
    "max_objects_per_run": "1 or more",
}


def _problem(err: Any, raw: Any) -> ConfigProblem:
    sync, field = _where(tuple(err["loc"]), raw)
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
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


def split_bucket_path(source_path: str) -> tuple[str, str]:
    """`bucket/prefix/` → ('bucket', 'prefix/') for S3 and GCS source paths."""
    path = source_path.strip().lstrip("/")
    for scheme in ("s3://", "gs://", "gcs://"):
        if path.startswith(scheme):
            path = path[len(scheme) :]
    bucket, _, prefix = path.partition("/")
    return bucket, prefix


MUX_PREFIX = "mux://"
DRIVE_PREFIX = "drive://"
DRIVE_SHARED = "shared/"
AZURE_CONTAINER_RE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
"""Azure container names: 3-63 of a-z, 0-9 and single hyphens, starting and ending alnum."""
DRIVE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")


def split_drive_path(source_path: str) -> tuple[str | None, str] | None:
    """`drive://FOLDER_ID` → (None, folder); `drive://shared/DRIVE_ID` → (drive, drive).

    A shared drive's id is also the id of its root folder. None when the path is malformed.
    """
    if not source_path.startswith(DRIVE_PREFIX):
        return None
    rest = source_path[len(DRIVE_PREFIX) :].rstrip("/")
    drive: str | None = None
    if rest.startswith(DRIVE_SHARED):
        drive = rest = rest[len(DRIVE_SHARED) :]
    if not DRIVE_ID_RE.fullmatch(rest):
        return None
    return drive, rest


def source_path_problem(conn: Any, source_path: str, cfg: MixsyncConfig) -> tuple[str, str] | None:
    """(message, fix) when source_path does not fit its connection's provider."""
    if isinstance(conn, LocalConnection):
        root = cfg.connection_root(conn)
        if not (root / source_path.lstrip("/")).resolve().is_relative_to(root):
            return (
                f"'{source_path}' leaves the connection root {root}",
                "stay inside the connection root (no '..' above it)",
            )
    elif isinstance(conn, S3Connection | GCSConnection):
        bucket, _ = split_bucket_path(source_path)
        if not bucket or not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,254}", bucket):
            return (
                f"'{source_path}' does not start with a bucket name",
                "write it as bucket/prefix, e.g. media-bucket/videos/2025/",
            )
    elif isinstance(conn, AzureBlobConnection):
        container, _ = split_bucket_path(source_path)
        if not AZURE_CONTAINER_RE.fullmatch(container):
            return (
                f"'{source_path}' does not start with an Azure container name",
                "write it as container/prefix, e.g. media/videos/2025/ (a container name is "
                "3-63 lowercase letters, digits and single hyphens)",
            )
    elif isinstance(conn, GoogleDriveConnection):
        if split_drive_path(source_path) is None:
            return (
                f"'{source_path}' is not a Google Drive source",
                "use drive://FOLDER_ID (the id in the folder's URL, listed recursively) or "
                "drive://shared/DRIVE_ID for a whole shared drive",
            )
    elif isinstance(conn, MuxConnection) and (
        not source_path.startswith(MUX_PREFIX) or "/" in source_path[len(MUX_PREFIX) :]
    ):
        return (
            f"'{source_path}' is not a Mux source",
            "use mux:// for all assets or mux://ASSET_ID for one asset",
        )
    return None


def _cross_check(cfg: MixsyncConfig) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    seen: set[str] = set()
    for s in cfg.syncs:
        for field, message, fix in s.file_filters.range_problems():
            problems.append(ConfigProblem(sync=s.name, field=field, message=message, fix=fix))
        if s.name in seen:
            problems.append(
                ConfigProblem(
                    sync=s.name,
                    field="name",
                    message="the name is used by another sync",
                    fix="give every sync a unique name",
                )
            )
        seen.add(s.name)
        if s.bucket not in cfg.buckets:
            problems.append(
                ConfigProblem(
                    sync=s.name,
                    field="bucket",
                    message=f"bucket '{s.bucket}' is not declared under 'buckets:'",
                    fix=f"declare it or use one of {sorted(cfg.buckets) or '[none declared]'}",
                )
            )
        conn = cfg.connections.get(s.connection_id)
        if conn is None:
            problems.append(
                ConfigProblem(
                    sync=s.name,
                    field="connection_id",
                    message=f"connection '{s.connection_id}' is not declared under 'connections:'",
                    fix=f"declare it or use one of {sorted(cfg.connections) or '[none declared]'}",
                )
            )
            continue
        bad = source_path_problem(conn, s.source_path, cfg)
        if bad:
            message, fix = bad[0], f"{bad[1]} of connection '{s.connection_id}'"
            problems.append(
                ConfigProblem(sync=s.name, field="source_path", message=message, fix=fix)
            )
    return problems
