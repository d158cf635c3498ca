"""The syncs.yaml contract as pydantic models (field names, defaults and ranges as Mixpeek's)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from mixsync_dagster.config.base import _Model
from mixsync_dagster.config.rules import (
    MIME_PATTERN_RE,
    BlobType,
    FieldMapping,
    FileFilters,
    Mapping,
    MappingSource,
    MetadataFilter,
    MetadataOperator,
    SchemaMapping,
)

SYNC_NAME_RE = re.compile(r"[a-z0-9_]+")
"""Matched whole (fullmatch: `$` would let a trailing newline through). Dagster's own rule for
the names made from it (`mixsync_<name>`, `mixsync_<name>_job`) is [A-Za-z0-9_]+."""
KEY_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
"""Names of connections and buckets: shown in messages and stored (at most 64 characters)."""
STATE_BACKENDS = ("sqlite", "postgresql")

SYNC_MODE_ALIASES = {"scheduled": "continuous", "one_time": "initial_only"}


class EnvRef(_Model):
    """`{env: VAR}`: a value read from the environment when the config is loaded."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------- connections and buckets


class LocalConnection(_Model):
    provider: Literal["local"]
    root: str = Field(min_length=1)
    include_hidden: StrictBool = False
    """Dot-files and dot-folders are skipped unless this is true (no .DS_Store in your bucket)."""


class S3Credentials(_Model):
    """Access keys, or a role to assume (Mixpeek's `{role_arn, external_id}` form).

    A role is assumed with STS using the default AWS credential chain (the pod's, the
    instance's, a profile's) and its temporary credentials are refreshed before they expire."""

    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    role_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$"
    )
    external_id: str | None = Field(default=None, min_length=2, max_length=1224)
    """The role's trust policy condition (sts:ExternalId), as Mixpeek's setup guide writes it."""
    role_session_name: str = Field(default="mixsync", pattern=r"^[A-Za-z0-9_+=,.@-]{2,64}$")
    duration_seconds: StrictInt = Field(default=3600, ge=1800, le=43_200)
    """How long each set of temporary credentials lasts (the role's maximum session caps it).
    At least 30 minutes: botocore fetches new credentials 15 minutes before they expire, so
    STS's own minimum (15 minutes) would mean an AssumeRole call before every request."""
    sts_endpoint_url: str | None = None
    """STS for the role (default: AWS's in the connection's region); an S3-compatible store
    with its own AssumeRole (MinIO) names its endpoint here."""

    @model_validator(mode="after")
    def _one_way_in(self) -> S3Credentials:
        keys = self.access_key_id is not None or self.secret_access_key is not None
        if keys and self.role_arn is not None:
            raise ValueError(
                "give access_key_id / secret_access_key or role_arn, not both (the role is "
                "assumed with the default AWS credential chain)"
            )
        if self.role_arn is None:
            if self.access_key_id is None or self.secret_access_key is None:
                raise ValueError(
                    "give both access_key_id and secret_access_key, or role_arn (with "
                    "external_id), or leave credentials out for the default AWS credential chain"
                )
            if self.external_id is not None or self.sts_endpoint_url is not None:
                raise ValueError("external_id and sts_endpoint_url go with role_arn")
        elif self.session_token is not None:
            raise ValueError("session_token goes with access keys, not with role_arn")
        return self


class S3Connection(_Model):
    """S3 and every S3-compatible store (R2, MinIO, Wasabi, Backblaze B2, Tigris, SeaweedFS)."""

    provider: Literal["s3"]
    region: str = Field(min_length=1)
    endpoint_url: str | None = None
    credentials: S3Credentials | None = None
    """None: the default AWS credential chain (env, profile, instance role)."""
    use_ssl: StrictBool = True
    verify_ssl: StrictBool = True
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    presign_expiry_seconds: StrictInt = Field(default=3600, ge=60, le=604_800)
    metadata_concurrency: StrictInt = Field(default=8, ge=1, le=64)
    """Parallel HEAD / GetObjectTagging calls when a filter or mapping needs them."""


class GCSConnection(_Model):
    provider: Literal["gcs"]
    project: str | None = None
    credentials_json: SecretStr | None = None
    """Service-account JSON (write it as {env: VAR}); None: application default credentials."""
    endpoint_url: str | None = None
    """For emulators; production leaves it unset."""
    signed_url_expiry_seconds: StrictInt = Field(default=3600, ge=60, le=604_800)


class MuxConnection(_Model):
    provider: Literal["mux"]
    access_token_id: SecretStr
    access_token_secret: SecretStr
    webhook_secret: SecretStr | None = None
    api_base_url: str = "https://api.mux.com"
    stream_base_url: str = "https://stream.mux.com"
    page_size: StrictInt = Field(default=100, ge=1, le=100)


class AzureBlobConnection(_Model):
    """Azure Blob Storage: an account URL with a key, a SAS token or Entra ID; or a connection
    string. No key and no SAS token: the default Azure credential chain (azure-identity)."""

    provider: Literal["azure_blob"]
    account_url: str | None = None
    """`https://ACCOUNT.blob.core.windows.net` (or an emulator's `http://HOST:PORT/ACCOUNT`)."""
    connection_string: SecretStr | None = None
    """The portal's connection string (it carries the key or a SAS); write it as {env: VAR}."""
    account_name: str | None = None
    """Only with account_key, when the name cannot be read from account_url (custom domains)."""
    account_key: SecretStr | None = None
    sas_token: SecretStr | None = None
    sas_expiry_seconds: StrictInt = Field(default=3600, ge=60, le=604_800)
    """Lifetime of the read-only SAS URLs handed to the bucket (user delegation keys: 7 days)."""
    api_version: str = Field(default="2025-11-05", pattern=r"^\d{4}-\d{2}-\d{2}$")
    """The Blob service version the client speaks: pinned, so an SDK upgrade cannot send one
    that an older server or emulator (Azurite) refuses."""

    @model_validator(mode="after")
    def _one_way_in(self) -> AzureBlobConnection:
        if (self.account_url is None) == (self.connection_string is None):
            raise ValueError("give exactly one of account_url or connection_string")
        if self.connection_string is not None and (
            self.account_key is not None or self.sas_token is not None
        ):
            raise ValueError(
                "connection_string carries its own key or SAS: drop account_key / sas_token"
            )
        if self.account_key is not None and self.sas_token is not None:
            raise ValueError("give account_key or sas_token, not both")
        if self.account_name is not None and self.account_key is None:
            raise ValueError("account_name is only used with account_key")
        return self


class GoogleDriveOAuth(_Model):
    """An OAuth client and a user's refresh token (scope drive.readonly)."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    refresh_token: SecretStr
    token_uri: str = "https://oauth2.googleapis.com/token"


class GoogleDriveConnection(_Model):
    """Google Drive: a service account (optionally impersonating a user), a user's OAuth
    refresh token, or application default credentials when neither is given."""

    provider: Literal["google_drive"]
    credentials_json: SecretStr | None = None
    """A service-account key (JSON); write it as {env: VAR}."""
    subject: str | None = None
    """With credentials_json: the user to impersonate (domain-wide delegation)."""
    oauth: GoogleDriveOAuth | None = None
    export_formats: dict[Literal["document", "spreadsheet", "presentation", "drawing"], str] = {}
    """MIME type each Google Workspace type is exported as; PDF when not given."""
    endpoint_url: str | None = None
    """The API root (default https://www.googleapis.com/); for test doubles."""

    @model_validator(mode="after")
    def _credentials(self) -> GoogleDriveConnection:
        if self.credentials_json is not None and self.oauth is not None:
            raise ValueError("give credentials_json (a service account) or oauth, not both")
        if self.subject is not None and self.credentials_json is None:
            raise ValueError("subject (a user to impersonate) needs credentials_json")
        for kind, mime in self.export_formats.items():
            # Which formats Drive offers is Drive's answer (about.exportFormats), checked when
            # a file of that kind is listed; here only the shape.
            if not MIME_PATTERN_RE.match(mime) or mime.endswith("/*"):
                raise ValueError(f"export_formats.{kind}: '{mime}' is not a MIME type")
        return self


Connection = Annotated[
    LocalConnection
    | S3Connection
    | GCSConnection
    | MuxConnection
    | AzureBlobConnection
    | GoogleDriveConnection,
    Field(discriminator="provider"),
]


class LocalBucket(_Model):
    target: Literal["local"]
    description: str | None = Field(default=None, max_length=500)


class MixpeekBucket(_Model):
    """A bucket on the Mixpeek API (or anything that speaks its shape)."""

    target: Literal["mixpeek"]
    bucket_id: str = Field(min_length=1)
    namespace: SecretStr
    api_key: SecretStr
    base_url: str = "https://api.mixpeek.com"
    blob_property: str = Field(default="content", min_length=1)
    blob_type: Literal["auto", "video", "image", "audio", "text", "pdf", "excel"] = "auto"
    timeout_seconds: StrictFloat = Field(default=30.0, gt=0, le=600)
    description: str | None = Field(default=None, max_length=500)


Bucket = Annotated[LocalBucket | MixpeekBucket, Field(discriminator="target")]


class StateConfig(_Model):
    url: SecretStr | None = None
    """A SQLAlchemy URL of SQLite or PostgreSQL. Kept secret: it may carry a password."""

    @field_validator("url")
    @classmethod
    def _parse(cls, v: SecretStr | None) -> SecretStr | None:
        # Parsed now, so a bad URL is a config error and not a traceback at the first command.
        # The messages never quote the URL: it may carry a password.
        if v is None:
            return v
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            url = make_url(v.get_secret_value())
        except (ArgumentError, ValueError):
            raise ValueError(
                "is not a database URL like postgresql+psycopg://host:5432/db or "
                "sqlite:///path/state.db"
            ) from None
        if url.get_backend_name() not in STATE_BACKENDS:
            raise ValueError(
                "names a database mixsync does not support; use postgresql+psycopg://… or "
                "sqlite:///…"
            )
        try:
            url.get_dialect().import_dbapi()
        except (NoSuchModuleError, ImportError):
            raise ValueError(
                "names a database driver that is not installed; use postgresql+psycopg://… "
                "(installed) or sqlite:///…"
            ) from None
        return v


# ---------------------------------------------------------------- syncs


class ReconcileSettings(_Model):
    """Mixpeek v0.82's `reconcile` block (SyncCreateRequest.reconcile); every switch
    defaults to true there, and here."""

    on_delete: StrictBool = True
    """Delete the object of a file that is gone from the source."""
    on_update: StrictBool = True
    """Re-sync a file whose content changed (a new object, then the old one is deleted).
    False: the object stays as it was and the new version is only recorded (Action.KEEP)."""
    on_filter_drift: StrictBool = True
    """Delete the object of a file that no longer matches the filters."""
    re_extract_on_update: StrictBool = True
    """Accepted for compatibility: a changed file is always processed again."""
    re_extract_fields: list[str] | None = None
    """Accepted for compatibility: mixsync re-extracts on any change of the file."""


@dataclass(frozen=True, slots=True)
class ReconcilePolicy:
    """What the engine reads, whichever form the file used."""

    on_delete: bool
    on_update: bool
    on_filter_drift: bool

    @property
    def deletes(self) -> bool:
        """Whether a pass ends with a reconcile run at all."""
        return self.on_delete or self.on_filter_drift


class SyncConfig(_Model):
    name: str = Field(min_length=1, max_length=64)
    bucket: str
    connection_id: str
    source_path: str
    sync_mode: Literal["continuous", "initial_only"] = "continuous"
    polling_interval_seconds: StrictInt = Field(default=300, ge=30, le=86_400)
    """The feature page allows 30..900; Mixpeek v0.82 allows up to a day."""
    batch_size: StrictInt = Field(default=50, ge=1, le=100)
    skip_duplicates: StrictBool = True
    reconcile_on_sync: StrictBool | None = None
    """The feature page's switch (default false). Read `reconcile_policy`, not this."""
    reconcile: ReconcileSettings | None = None
    """Mixpeek v0.82's form; a file sets this or `reconcile_on_sync`, not both."""
    sync_concurrency: StrictInt = Field(default=1, ge=1, le=16)
    """Groups of `batch_size` files one run puts and submits at once (threads), under the one
    owner of the pass (Mixpeek v0.82's field)."""
    skip_batch_submission: StrictBool = False
    retry_backoff_seconds: StrictInt = Field(default=60, ge=0, le=86_400)
    """Dead-letter queue: wait before retrying a failed file (x4 after the second failure)."""
    max_consecutive_failures: StrictInt = Field(default=5, ge=1, le=1_000)
    """Auto-suspend after this many failed runs in a row."""
    max_deletes_per_pass: StrictInt | str = "10%"
    """Reconcile guard: at most this many deletions per pass, absolute or a % of tracked objects."""
    max_objects_per_run: StrictInt = Field(default=100_000, ge=1)
    """Files one run handles before it ends and the next run carries the pass on."""
    description: str | None = Field(default=None, max_length=500)
    metadata: dict[str, Any] = {}
    file_filters: FileFilters = FileFilters()
    schema_mapping: SchemaMapping = SchemaMapping()

    @field_validator("reconcile")
    @classmethod
    def _one_reconcile_form(cls, v: ReconcileSettings | None, info: Any) -> Any:
        if v is not None and info.data.get("reconcile_on_sync") is not None:
            raise ValueError(
                "reconcile and reconcile_on_sync are two forms of one setting; set only one"
            )
        return v

    @property
    def reconcile_policy(self) -> ReconcilePolicy:
        """What reconcile deletes and whether changed files are re-synced, from either form.

        `reconcile_on_sync: true` = delete the objects of files that are gone and of files that
        no longer match the filters; false (the default) = neither. Changed files are re-synced
        either way. `reconcile: {...}` says each one itself (each defaults to true, as in
        Mixpeek v0.82)."""
        if self.reconcile is not None:
            r = self.reconcile
            return ReconcilePolicy(r.on_delete, r.on_update, r.on_filter_drift)
        on = bool(self.reconcile_on_sync)
        return ReconcilePolicy(on_delete=on, on_update=True, on_filter_drift=on)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SYNC_NAME_RE.fullmatch(v):
            raise ValueError(f"{v!r} may only contain a-z, 0-9 and _")
        return v

    @field_validator("sync_mode", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        return SYNC_MODE_ALIASES.get(v, v) if isinstance(v, str) else v

    @field_validator("max_deletes_per_pass")
    @classmethod
    def _cap(cls, v: int | str) -> int | str:
        if isinstance(v, int):
            if v < 0:
                raise ValueError("must be 0 or more")
            return v
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", v)
        if not m or float(m.group(1)) > 100:
            raise ValueError(f"'{v}' is neither a number nor a percentage like '10%'")
        return f"{m.group(1)}%"

    def delete_cap(self, tracked_objects: int) -> int:
        """The most objects one reconcile pass may delete."""
        v = self.max_deletes_per_pass
        if isinstance(v, int):
            return v
        return int(tracked_objects * float(v[:-1]) / 100)

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
    source_file: str = "syncs.yaml"

    def sync(self, name: str) -> SyncConfig:
        for s in self.syncs:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.syncs) or "none"
        from mixsync_dagster.errors import SyncNotFound

        raise SyncNotFound(f"{self.source_file}: no sync named '{name}' (declared: {known})")

    @field_validator("connections", "buckets")
    @classmethod
    def _keys(cls, v: dict[str, Any], info: Any) -> dict[str, Any]:
        bad = [k for k in v if not KEY_NAME_RE.fullmatch(k)]
        if bad:
            shown = ", ".join(repr(k) for k in bad)
            raise ValueError(
                f"{info.field_name} named {shown}: a name is 1..64 letters, digits, _, . or -"
            )
        return v

    def connection_root(self, conn: LocalConnection) -> Path:
        """The absolute root of a local connection (relative roots resolve against the file)."""
        return resolve_root(self.base_dir, conn.root)

    def state_url(self) -> str:
        if self.state.url is not None:
            return self.state.url.get_secret_value()
        return f"sqlite:///{Path(self.base_dir).resolve() / '.mixsync' / 'state.db'}"


def resolve_root(base_dir: str, root: str) -> Path:
    """`root` made absolute against `base_dir`, symlinks resolved. Never raises for a symlink
    loop (Path.resolve does): the provider then reports the root as unreadable."""
    return Path(os.path.realpath(os.path.join(base_dir, root)))


__all__ = [
    "KEY_NAME_RE",
    "MIME_PATTERN_RE",
    "SYNC_MODE_ALIASES",
    "SYNC_NAME_RE",
    "AzureBlobConnection",
    "BlobType",
    "Bucket",
    "Connection",
    "EnvRef",
    "FieldMapping",
    "FileFilters",
    "GCSConnection",
    "GoogleDriveConnection",
    "GoogleDriveOAuth",
    "LocalBucket",
    "LocalConnection",
    "Mapping",
    "MappingSource",
    "MetadataFilter",
    "MetadataOperator",
    "MixpeekBucket",
    "MixsyncConfig",
    "MuxConnection",
    "ReconcilePolicy",
    "ReconcileSettings",
    "S3Connection",
    "S3Credentials",
    "SchemaMapping",
    "StateConfig",
    "SyncConfig",
    "_Model",
    "resolve_root",
]
