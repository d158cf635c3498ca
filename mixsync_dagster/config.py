"""The syncs.yaml contract: pydantic models, loading, and errors that name file, sync and field.

Loading is all-or-nothing: `load_config` either returns a fully validated `MixsyncConfig` (every
`{env: VAR}` resolved, every cross-reference checked) or raises one `ConfigError` listing every
problem. Nothing downstream ever sees half a configuration.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from mixsync_dagster.errors import ConfigError, ConfigProblem
from mixsync_dagster.mapping_paths import parse_path

CONFIG_ENV_VAR = "MIXSYNC_CONFIG"
DEFAULT_CONFIG_NAME = "syncs.yaml"
SYNC_NAME_RE = re.compile(r"^[a-z0-9_]+$")
MIME_PATTERN_RE = re.compile(r"^[\w.+-]+/(\*|[\w.+-]+)$")

SYNC_MODE_ALIASES = {"scheduled": "continuous", "one_time": "initial_only"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvRef(_Model):
    """`{env: VAR}`: a value read from the environment when the config is loaded."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------- connections and buckets


class LocalConnection(_Model):
    provider: Literal["local"]
    root: str
    include_hidden: bool = False
    """Dot-files and dot-folders are skipped unless this is true (no .DS_Store in your bucket)."""


class S3Credentials(_Model):
    access_key_id: SecretStr
    secret_access_key: SecretStr
    session_token: SecretStr | None = None


class S3Connection(_Model):
    """S3 and every S3-compatible store (R2, MinIO, Wasabi, Backblaze B2, Tigris, SeaweedFS)."""

    provider: Literal["s3"]
    region: str = Field(min_length=1)
    endpoint_url: str | None = None
    credentials: S3Credentials | None = None
    """None: the default AWS credential chain (env, profile, instance role)."""
    use_ssl: bool = True
    verify_ssl: bool = True
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    presign_expiry_seconds: int = Field(default=3600, ge=60, le=604_800)
    metadata_concurrency: int = Field(default=8, ge=1, le=64)
    """Parallel HEAD / GetObjectTagging calls when a filter or mapping needs them."""


class GCSConnection(_Model):
    provider: Literal["gcs"]
    project: str | None = None
    credentials_json: SecretStr | None = None
    """Service-account JSON (write it as {env: VAR}); None: application default credentials."""
    endpoint_url: str | None = None
    """For emulators; production leaves it unset."""
    signed_url_expiry_seconds: int = Field(default=3600, ge=60, le=604_800)


class MuxConnection(_Model):
    provider: Literal["mux"]
    access_token_id: SecretStr
    access_token_secret: SecretStr
    webhook_secret: SecretStr | None = None
    api_base_url: str = "https://api.mux.com"
    stream_base_url: str = "https://stream.mux.com"
    page_size: int = Field(default=100, ge=1, le=100)


Connection = Annotated[
    LocalConnection | S3Connection | GCSConnection | MuxConnection,
    Field(discriminator="provider"),
]


class LocalBucket(_Model):
    target: Literal["local"]
    description: str | None = Field(default=None, max_length=500)


Bucket = LocalBucket


class StateConfig(_Model):
    url: SecretStr | None = None
    """Any SQLAlchemy URL. Kept secret: a PostgreSQL URL may carry a password."""


# ---------------------------------------------------------------- filters and mapping (shape)

MetadataOperator = Literal[
    "equals", "not_equals", "contains", "not_contains", "gt", "lt", "gte", "lte", "exists"
]


class MetadataFilter(_Model):
    field: str = Field(min_length=1)
    operator: MetadataOperator
    value: Any = None

    @model_validator(mode="after")
    def _value_needed(self) -> MetadataFilter:
        if self.operator != "exists" and self.value is None:
            raise ValueError(f"operator '{self.operator}' needs a 'value'")
        if (
            self.operator == "exists"
            and self.value is not None
            and not isinstance(self.value, bool)
        ):
            raise ValueError("operator 'exists' takes value true, false or no value")
        return self


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} needs a time zone, e.g. 2025-01-01T00:00:00Z")
    return value


class FileFilters(_Model):
    include_patterns: list[Annotated[str, Field(min_length=1)]] = []
    exclude_patterns: list[Annotated[str, Field(min_length=1)]] = []
    case_sensitive: bool = True
    min_size_bytes: int | None = Field(default=None, ge=0)
    max_size_bytes: int | None = Field(default=None, ge=0)
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    mime_types: list[str] = []
    extensions: list[str] = []
    metadata_filters: list[MetadataFilter] = []

    @field_validator("modified_after", "modified_before")
    @classmethod
    def _tz(cls, v: datetime | None, info: Any) -> datetime | None:
        return _aware(v, info.field_name)

    @field_validator("mime_types")
    @classmethod
    def _mime(cls, v: list[str]) -> list[str]:
        for m in v:
            if not MIME_PATTERN_RE.match(m):
                raise ValueError(f"'{m}' is not a MIME type like 'video/mp4' or 'video/*'")
        return v

    @field_validator("extensions")
    @classmethod
    def _ext(cls, v: list[str]) -> list[str]:
        out = []
        for e in v:
            e = e.strip().lower()
            if not e or "/" in e or e == ".":
                raise ValueError(f"'{e}' is not a file extension like '.mp4'")
            out.append(e if e.startswith(".") else "." + e)
        return out

    def range_problems(self) -> list[tuple[str, str, str]]:
        """(field, message, fix) for ranges that can never match a file."""
        out = []
        lo, hi = self.min_size_bytes, self.max_size_bytes
        if lo is not None and hi is not None and lo > hi:
            out.append(
                (
                    "file_filters.max_size_bytes",
                    f"max_size_bytes ({hi}) < min_size_bytes ({lo}), so no file matches",
                    "make max_size_bytes >= min_size_bytes",
                )
            )
        a, b = self.modified_after, self.modified_before
        if a is not None and b is not None and a >= b:
            out.append(
                (
                    "file_filters.modified_before",
                    "modified_before is not later than modified_after, so no file matches",
                    "make modified_before later than modified_after",
                )
            )
        return out


class FieldMapping(_Model):
    source: str

    @field_validator("source")
    @classmethod
    def _path(cls, v: str) -> str:
        parse_path(v)
        return v


class MappingSource(_Model):
    type: Literal["metadata", "tag", "filename_regex", "folder_path", "constant", "file"]
    key: str | None = None
    """metadata/tag: the (dotted) key to read."""
    pattern: str | None = None
    """filename_regex: a regex applied to the file name."""
    group: int | str | None = None
    """filename_regex: which group to take (default: the first group, else the whole match)."""
    index: int | None = None
    """folder_path: which folder of the relative path (0 = first, -1 = last)."""
    value: Any = None
    """constant: the value."""

    @model_validator(mode="after")
    def _needs(self) -> MappingSource:
        if self.type in ("metadata", "tag") and not self.key:
            raise ValueError(f"source type '{self.type}' needs 'key'")
        if self.type == "filename_regex":
            if not self.pattern:
                raise ValueError("source type 'filename_regex' needs 'pattern'")
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"pattern is not a valid regular expression: {e}") from e
        if self.type == "file" and self.key:
            parse_path(self.key)
        if self.type == "constant" and self.value is None:
            raise ValueError("source type 'constant' needs 'value'")
        return self


class Mapping(_Model):
    target_type: Literal["field", "blob"] = "field"
    source: MappingSource
    transform: Literal["lowercase", "uppercase", "trim", "json_parse"] | None = None
    required: bool = False


class SchemaMapping(_Model):
    field_mappings: dict[str, FieldMapping] = {}
    mappings: dict[str, Mapping] = {}

    @model_validator(mode="after")
    def _no_clash(self) -> SchemaMapping:
        both = set(self.field_mappings) & set(self.mappings)
        if both:
            raise ValueError(f"target(s) {sorted(both)} mapped twice (field_mappings and mappings)")
        return self


# ---------------------------------------------------------------- syncs


class SyncConfig(_Model):
    name: str = Field(min_length=1, max_length=64)
    bucket: str
    connection_id: str
    source_path: str
    sync_mode: Literal["continuous", "initial_only"] = "continuous"
    polling_interval_seconds: int = Field(default=300, ge=30, le=900)
    batch_size: int = Field(default=50, ge=1, le=100)
    skip_duplicates: bool = True
    reconcile_on_sync: bool = False
    skip_batch_submission: bool = False
    max_objects_per_run: int = Field(default=5_000, ge=1, le=100_000)
    """Files handed to one run; a larger pass is split across runs (Mixpeek caps a run at 100k)."""
    description: str | None = Field(default=None, max_length=500)
    metadata: dict[str, Any] = {}
    file_filters: FileFilters = FileFilters()
    schema_mapping: SchemaMapping = SchemaMapping()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SYNC_NAME_RE.match(v):
            raise ValueError(f"'{v}' may only contain a-z, 0-9 and _")
        return v

    @field_validator("sync_mode", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        return SYNC_MODE_ALIASES.get(v, v) if isinstance(v, str) else v

    @field_validator("metadata")
    @classmethod
    def _meta(cls, v: dict[str, Any]) -> dict[str, Any]:
        if len(v) > 50:
            raise ValueError(f"has {len(v)} keys; at most 50 are allowed")
        return v


class MixsyncConfig(_Model):
    state: StateConfig = StateConfig()
    connections: dict[str, Connection] = {}
    buckets: dict[str, Bucket] = {}
    syncs: list[SyncConfig] = []

    # Filled by load_config: where the file lives, so relative paths resolve against it.
    base_dir: str = "."
    source_file: str = DEFAULT_CONFIG_NAME

    def sync(self, name: str) -> SyncConfig:
        for s in self.syncs:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.syncs) or "none"
        from mixsync_dagster.errors import SyncNotFound

        raise SyncNotFound(f"{self.source_file}: no sync named '{name}' (declared: {known})")

    def connection_root(self, conn: LocalConnection) -> Path:
        """The absolute root of a local connection (relative roots resolve against the file)."""
        return (Path(self.base_dir) / conn.root).resolve()

    def state_url(self) -> str:
        if self.state.url is not None:
            return self.state.url.get_secret_value()
        return f"sqlite:///{Path(self.base_dir).resolve() / '.mixsync' / 'state.db'}"


# ---------------------------------------------------------------- loading


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
        tags = ("local", "s3", "gcs", "mux", "mixpeek")
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
}

_RANGES = {
    "polling_interval_seconds": "30..900",
    "batch_size": "1..100",
    "max_objects_per_run": "1..100000",
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
        fix = "use provider local, s3, gcs or mux; target local"
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
            message, fix = bad
            problems.append(
                ConfigProblem(sync=s.name, field="source_path", message=message, fix=fix)
            )
    return problems
