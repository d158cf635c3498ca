"""syncs.yaml errors: every malformed file raises one ConfigError naming file, sync and field.

Table-driven: each case is a malformed document written to a real file and loaded with
`load_config(path)`. The assertions check where the problem is reported (sync + exact dotted
field) and that the message/fix tells the user what to do. A recognisable secret is always set
in the environment and referenced from `state.url`, so every case also proves that a resolved
secret never leaks into error text.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixsync_dagster.config import (
    CONFIG_ENV_VAR,
    ReconcilePolicy,
    config_path,
    load_config,
)
from mixsync_dagster.errors import ConfigError, ConfigProblem

REPO = Path(__file__).resolve().parent.parent

SECRET_VAR = "MIXSYNC_TEST_DB_URL"
SECRET_VALUE = "postgresql://admin:Sup3rS3cret-hunter2-XYZZY@db.internal/mixsync"
SECRET_TOKEN_VAR = "MIXSYNC_TEST_API_TOKEN"
SECRET_TOKEN = "tok_9f8e7d6c5b4a-DO-NOT-LEAK"
UNSET_VAR = "MIXSYNC_TEST_DEFINITELY_UNSET"

SYNC = "inbox_files"


def base_doc() -> dict[str, Any]:
    """A valid document; every case breaks exactly one thing in a copy of it."""
    return {
        "state": {"url": {"env": SECRET_VAR}},
        "connections": {"inbox": {"provider": "local", "root": "./data"}},
        "buckets": {"media": {"target": "local"}},
        "syncs": [
            {
                "name": SYNC,
                "bucket": "media",
                "connection_id": "inbox",
                "source_path": "incoming/",
                "metadata": {"origin": "tests"},
            }
        ],
    }


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_VAR, SECRET_VALUE)
    monkeypatch.setenv(SECRET_TOKEN_VAR, SECRET_TOKEN)
    monkeypatch.delenv(UNSET_VAR, raising=False)
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)


def sync_edit(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or, with value ..., delete) keys on the first sync."""

    def edit(doc: dict[str, Any]) -> None:
        s = doc["syncs"][0]
        for k, v in changes.items():
            if v is ...:
                s.pop(k, None)
            else:
                s[k] = v

    return edit


def filters(**ff: Any) -> Callable[[dict[str, Any]], None]:
    return sync_edit(file_filters=ff)


def top(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc.update(changes)

    return edit


def bucket_edit(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """Make the bucket a Mixpeek one (with its required fields), then apply changes."""

    def edit(doc: dict[str, Any]) -> None:
        b = {
            "target": "mixpeek",
            "bucket_id": "bkt_1",
            "namespace": "ns_1",
            "api_key": {"env": SECRET_TOKEN_VAR},
        }
        b.update(changes)
        doc["buckets"]["media"] = b

    return edit


def state(url: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["state"] = {"url": url}

    return edit


def dup_names(doc: dict[str, Any]) -> None:
    doc["syncs"].append({**copy.deepcopy(doc["syncs"][0]), "source_path": "other/"})


def conn_edit(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        c = doc["connections"]["inbox"]
        for k, v in changes.items():
            if v is ...:
                c.pop(k, None)
            else:
                c[k] = v

    return edit


AZ = {
    "provider": "azure_blob",
    "account_url": "https://acct.blob.core.windows.net",
    "account_key": {"env": SECRET_TOKEN_VAR},
}
DRIVE = {"provider": "google_drive", "credentials_json": {"env": SECRET_TOKEN_VAR}}
S3 = {"provider": "s3", "region": "us-east-1"}


def replace_conn(base: dict[str, Any], **changes: Any) -> Callable[[dict[str, Any]], None]:
    """Make the connection `inbox` a copy of `base` with `changes`."""

    def edit(doc: dict[str, Any]) -> None:
        doc["connections"]["inbox"] = {**copy.deepcopy(base), **changes}

    return edit


@dataclass
class Case:
    id: str
    sync: str | None
    field: str
    expect: list[str] = field(default_factory=list)
    """Substrings (case-insensitive) expected in the problem's message + fix."""
    edit: Callable[[dict[str, Any]], None] | None = None
    text: str | None = None
    """Raw file text instead of an edited base document."""
    missing_file: bool = False
    data: bytes | None = None
    """Raw bytes of the file (not UTF-8, too large)."""
    make: Callable[[Path], Path] | None = None
    """Builds something that is not a plain file (a folder, a FIFO) and returns its path."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the case."""
    absent: list[str] = field(default_factory=list)
    """Substrings that must not appear anywhere in the error (values from the environment,
    passwords written in the file)."""


CASES = [
    # ---- unknown keys
    Case(
        "unknown_sync_key",
        SYNC,
        "colour",
        ["unknown key", "spelling"],
        edit=sync_edit(colour="red"),
    ),
    Case("unknown_top_level_key", None, "extras", ["unknown key"], edit=top(extras={"a": 1})),
    Case(
        "reserved_top_level_base_dir",
        None,
        "base_dir",
        ["unknown key", "remove"],
        edit=top(base_dir="/etc"),
    ),
    Case(
        "unknown_connection_key",
        None,
        "connections.inbox.rooot",
        ["unknown key"],
        edit=conn_edit(rooot="./x"),
    ),
    Case(
        "unknown_filter_key",
        SYNC,
        "file_filters.include_pattern",
        ["unknown key"],
        edit=filters(include_pattern=["*.mp4"]),
    ),
    # ---- ranges
    Case(
        "polling_29",
        SYNC,
        "polling_interval_seconds",
        ["30..86400"],
        edit=sync_edit(polling_interval_seconds=29),
    ),
    Case(
        "polling_over_a_day",
        SYNC,
        "polling_interval_seconds",
        ["30..86400"],
        edit=sync_edit(polling_interval_seconds=86_401),
    ),
    Case(
        "sync_concurrency_0",
        SYNC,
        "sync_concurrency",
        ["1..16"],
        edit=sync_edit(sync_concurrency=0),
    ),
    Case(
        "sync_concurrency_17",
        SYNC,
        "sync_concurrency",
        ["1..16"],
        edit=sync_edit(sync_concurrency=17),
    ),
    Case(
        "reconcile_both_forms",
        SYNC,
        "reconcile",
        ["set only one", "reconcile_on_sync", "not both"],
        edit=sync_edit(reconcile_on_sync=True, reconcile={"on_delete": False}),
    ),
    Case(
        "reconcile_unknown_key",
        SYNC,
        "reconcile.on_delet",
        ["unknown key", "spelling"],
        edit=sync_edit(reconcile={"on_delet": True}),
    ),
    Case(
        "reconcile_not_a_bool",
        SYNC,
        "reconcile.on_filter_drift",
        ["true or false"],
        edit=sync_edit(reconcile={"on_filter_drift": "sometimes"}),
    ),
    Case(
        "polling_not_a_number",
        SYNC,
        "polling_interval_seconds",
        ["whole number"],
        edit=sync_edit(polling_interval_seconds="often"),
    ),
    Case("batch_size_0", SYNC, "batch_size", ["1..100"], edit=sync_edit(batch_size=0)),
    Case("batch_size_101", SYNC, "batch_size", ["1..100"], edit=sync_edit(batch_size=101)),
    Case(
        "description_501",
        SYNC,
        "description",
        ["500", "shorten"],
        edit=sync_edit(description="d" * 501),
    ),
    Case(
        "metadata_51_keys",
        SYNC,
        "metadata",
        ["51", "50"],
        edit=sync_edit(metadata={f"k{i}": i for i in range(51)}),
    ),
    # ---- cross references
    Case(
        "missing_connection",
        SYNC,
        "connection_id",
        ["nowhere", "connections:", "inbox"],
        edit=sync_edit(connection_id="nowhere"),
    ),
    Case(
        "undeclared_bucket",
        SYNC,
        "bucket",
        ["videos", "buckets:", "media"],
        edit=sync_edit(bucket="videos"),
    ),
    Case("bucket_key_missing", SYNC, "bucket", ["required", "add it"], edit=sync_edit(bucket=...)),
    Case("duplicate_sync_names", SYNC, "name", ["unique"], edit=dup_names),
    Case(
        "source_path_escapes_root",
        SYNC,
        "source_path",
        ["../outside", "leaves", "inbox", ".."],
        edit=sync_edit(source_path="../outside"),
    ),
    Case(
        "source_path_escapes_root_nested",
        SYNC,
        "source_path",
        ["leaves", ".."],
        edit=sync_edit(source_path="a/b/../../../x"),
    ),
    # ---- required fields / names / enums
    Case(
        "source_path_missing",
        SYNC,
        "source_path",
        ["required", "add it"],
        edit=sync_edit(source_path=...),
    ),
    Case("name_missing", "#1", "name", ["required", "add it"], edit=sync_edit(name=...)),
    Case("name_uppercase", "Inbox", "name", ["a-z, 0-9 and _"], edit=sync_edit(name="Inbox")),
    Case(
        "name_dash", "inbox-files", "name", ["a-z, 0-9 and _"], edit=sync_edit(name="inbox-files")
    ),
    Case(
        "sync_mode_invalid",
        SYNC,
        "sync_mode",
        ["continuous", "initial_only"],
        edit=sync_edit(sync_mode="hourly"),
    ),
    Case(
        "connection_root_missing",
        None,
        "connections.inbox.root",
        ["required", "add it"],
        edit=conn_edit(root=...),
    ),
    Case(
        "connection_provider_unsupported",
        None,
        "connections.inbox",
        ["dropbox", "local", "s3"],
        edit=conn_edit(provider="dropbox"),
    ),
    Case(
        "s3_connection_missing_region",
        None,
        "connections.inbox.region",
        ["required"],
        edit=conn_edit(provider="s3"),
    ),
    Case(
        "s3_keys_and_role",
        None,
        "connections.inbox.credentials",
        ["role_arn, not both", "default aws credential chain"],
        edit=replace_conn(
            S3,
            credentials={
                "access_key_id": "AKIA0000",
                "secret_access_key": {"env": SECRET_TOKEN_VAR},
                "role_arn": "arn:aws:iam::123456789012:role/reader",
            },
        ),
    ),
    Case(
        "s3_half_keys",
        None,
        "connections.inbox.credentials",
        ["both access_key_id and secret_access_key", "role_arn"],
        edit=replace_conn(S3, credentials={"access_key_id": "AKIA0000"}),
    ),
    Case(
        "s3_role_arn_not_an_arn",
        None,
        "connections.inbox.credentials.role_arn",
        ["arn:aws"],
        edit=replace_conn(S3, credentials={"role_arn": "reader"}),
    ),
    Case(
        "s3_external_id_without_role",
        None,
        "connections.inbox.credentials",
        ["external_id and sts_endpoint_url go with role_arn"],
        edit=replace_conn(
            S3,
            credentials={
                "access_key_id": "AKIA0000",
                "secret_access_key": "x",
                "external_id": "ext-1",
            },
        ),
    ),
    Case(
        "s3_role_session_too_short",
        None,
        "connections.inbox.credentials.duration_seconds",
        ["1800"],
        edit=replace_conn(
            S3,
            credentials={
                "role_arn": "arn:aws:iam::123456789012:role/reader",
                "duration_seconds": 900,
            },
        ),
    ),
    Case(
        "bool_not_bool",
        SYNC,
        "skip_duplicates",
        ["true or false"],
        edit=sync_edit(skip_duplicates="maybe"),
    ),
    # ---- file filters
    Case(
        "naive_modified_after",
        SYNC,
        "file_filters.modified_after",
        ["time zone", "2025-01-01T00:00:00Z"],
        edit=filters(modified_after="2025-01-01T00:00:00"),
    ),
    Case(
        # Unquoted in YAML: parsed by the YAML loader into a naive datetime.
        "naive_modified_before_yaml_timestamp",
        SYNC,
        "file_filters.modified_before",
        ["modified_before", "time zone"],
        edit=filters(modified_before=datetime(2025, 1, 1, 12, 0)),
    ),
    Case(
        # A cross-field rule: reported on the field to change, naming both fields.
        "min_size_gt_max_size",
        SYNC,
        "file_filters.max_size_bytes",
        ["min_size_bytes (2048)", "max_size_bytes (1024)", "no file matches"],
        edit=filters(min_size_bytes=2048, max_size_bytes=1024),
    ),
    Case(
        "max_size_negative",
        SYNC,
        "file_filters.max_size_bytes",
        ["greater than or equal to 0", "raise"],
        edit=filters(max_size_bytes=-1),
    ),
    Case(
        "modified_after_not_before_modified_before",
        SYNC,
        "file_filters.modified_before",
        ["modified_after", "later", "modified_before"],
        edit=filters(modified_after="2025-06-01T00:00:00Z", modified_before="2025-01-01T00:00:00Z"),
    ),
    Case(
        "bad_mime_type",
        SYNC,
        "file_filters.mime_types",
        ["'video'", "video/mp4"],
        edit=filters(mime_types=["video"]),
    ),
    Case(
        "unknown_metadata_operator",
        SYNC,
        "file_filters.metadata_filters[0].operator",
        ["equals", "not_contains", "exists"],
        edit=filters(metadata_filters=[{"field": "status", "operator": "like", "value": "x"}]),
    ),
    Case(
        "metadata_filter_without_value",
        SYNC,
        "file_filters.metadata_filters[0]",
        ["equals", "needs a 'value'"],
        edit=filters(metadata_filters=[{"field": "status", "operator": "equals"}]),
    ),
    Case(
        "second_metadata_filter_without_value",
        SYNC,
        "file_filters.metadata_filters[1]",
        ["gt", "needs a 'value'"],
        edit=filters(
            metadata_filters=[
                {"field": "status", "operator": "exists"},
                {"field": "rank", "operator": "gt"},
            ]
        ),
    ),
    # ---- schema mapping
    Case(
        "bad_schema_mapping_root",
        SYNC,
        "schema_mapping.field_mappings.x.source",
        ["'title'", "metadata.title"],
        edit=sync_edit(schema_mapping={"field_mappings": {"x": {"source": "title"}}}),
    ),
    Case(
        "bad_schema_mapping_subfield",
        SYNC,
        "schema_mapping.field_mappings.x.source",
        ["name.first", "only 'metadata' has sub-fields"],
        edit=sync_edit(schema_mapping={"field_mappings": {"x": {"source": "name.first"}}}),
    ),
    Case(
        "bad_schema_mapping_brackets",
        SYNC,
        "schema_mapping.field_mappings.cat.source",
        ["metadata.tags[x]", "field path"],
        edit=sync_edit(schema_mapping={"field_mappings": {"cat": {"source": "metadata.tags[x]"}}}),
    ),
    Case(
        "filename_regex_invalid",
        SYNC,
        "schema_mapping.mappings.y.source",
        ["not a valid regular expression"],
        edit=sync_edit(
            schema_mapping={
                "mappings": {"y": {"source": {"type": "filename_regex", "pattern": "(unclosed"}}}
            }
        ),
    ),
    Case(
        "filename_regex_without_pattern",
        SYNC,
        "schema_mapping.mappings.y.source",
        ["filename_regex", "needs 'pattern'"],
        edit=sync_edit(schema_mapping={"mappings": {"y": {"source": {"type": "filename_regex"}}}}),
    ),
    # ---- secrets
    Case(
        "env_unset_connection_root",
        None,
        "connections.inbox.root",
        [UNSET_VAR, "not set", f"export {UNSET_VAR}"],
        edit=conn_edit(root={"env": UNSET_VAR}),
    ),
    Case(
        "env_unset_bucket_api_key",
        None,
        "buckets.media.api_key",
        [UNSET_VAR, "not set"],
        edit=bucket_edit(api_key={"env": UNSET_VAR}, namespace={"env": SECRET_TOKEN_VAR}),
    ),
    # ---- the file itself
    Case(
        "top_level_not_a_mapping",
        None,
        "(file)",
        ["top level must be a mapping", "syncs:"],
        text="- connections\n- syncs\n",
    ),
    Case(
        "top_level_scalar",
        None,
        "(file)",
        ["top level must be a mapping"],
        text="just a string\n",
    ),
    Case(
        "invalid_yaml",
        None,
        "(file)",
        ["not valid yaml", "line 3", "syntax"],
        text="syncs:\n  - name: a\n   bucket: [unclosed\n",
    ),
    Case(
        "syncs_not_a_list",
        None,
        "syncs",
        ["list"],
        edit=top(syncs={"inbox_files": {"bucket": "media"}}),
    ),
    Case("missing_file", None, "(file)", ["not found", CONFIG_ENV_VAR], missing_file=True),
    # ---- Azure Blob and Google Drive connections
    Case(
        "azure_url_and_connection_string",
        None,
        "connections.inbox",
        ["exactly one of account_url or connection_string"],
        edit=replace_conn(AZ, connection_string={"env": SECRET_TOKEN_VAR}),
    ),
    Case(
        "azure_key_and_sas",
        None,
        "connections.inbox",
        ["account_key or sas_token, not both"],
        edit=replace_conn(AZ, sas_token={"env": SECRET_TOKEN_VAR}),
    ),
    Case(
        "azure_sas_expiry_too_long",
        None,
        "connections.inbox.sas_expiry_seconds",
        ["604800", "lower the value"],
        edit=replace_conn(AZ, sas_expiry_seconds=10**7),
    ),
    Case(
        "azure_source_path_not_a_container",
        SYNC,
        "source_path",
        ["azure container name", "container/prefix"],
        edit=lambda d: (replace_conn(AZ)(d), sync_edit(source_path="Media_Bucket/x/")(d)),
    ),
    Case(
        "drive_source_path_not_drive",
        SYNC,
        "source_path",
        ["not a google drive source", "drive://FOLDER_ID", "drive://shared/DRIVE_ID"],
        edit=lambda d: (replace_conn(DRIVE)(d), sync_edit(source_path="drive:/abc")(d)),
    ),
    Case(
        "drive_two_credentials",
        None,
        "connections.inbox",
        ["credentials_json (a service account) or oauth, not both"],
        edit=replace_conn(
            DRIVE,
            oauth={
                "client_id": "c",
                "client_secret": "s",
                "refresh_token": {"env": SECRET_TOKEN_VAR},
            },
        ),
    ),
    Case(
        "drive_subject_without_key",
        None,
        "connections.inbox",
        ["subject", "needs credentials_json"],
        edit=replace_conn({"provider": "google_drive"}, subject="a@example.com"),
    ),
    Case(
        "drive_export_format_kind",
        None,
        "connections.inbox.export_formats.form.[key]",
        ["document", "spreadsheet"],
        edit=replace_conn(DRIVE, export_formats={"form": "application/pdf"}),
    ),
    Case(
        "drive_export_format_not_a_mime_type",
        None,
        "connections.inbox",
        ["export_formats.document", "not a mime type"],
        edit=replace_conn(DRIVE, export_formats={"document": "pdf"}),
    ),
    # ---- hostile files: each is one clear line, never a traceback
    Case(
        "latin1_byte",
        None,
        "(file)",
        ["not utf-8", "0xe9", "line 2", "save the file as utf-8"],
        data=b"syncs: []\n# caf\xe9\n",
    ),
    Case(
        "folder_given",
        None,
        "(file)",
        ["is a folder", "syncs.yaml"],
        make=lambda tmp: tmp,
    ),
    Case(
        "fifo_given",
        None,
        "(file)",
        ["not a regular file"],
        make=lambda tmp: (os.mkfifo(tmp / "fifo.yaml"), tmp / "fifo.yaml")[1],
    ),
    Case(
        "config_is_a_symlink_loop",
        None,
        "(file)",
        ["cannot be opened", "symbolic links"],
        make=lambda tmp: ((tmp / "loop.yaml").symlink_to(tmp / "loop.yaml"), tmp / "loop.yaml")[1],
    ),
    Case(
        "larger_than_a_mebibyte",
        None,
        "(file)",
        ["larger than 1,048,576 bytes"],
        data=b"#" * (1 << 20) + b"\nsyncs: []\n",
    ),
    Case(
        "flow_nesting_3000_deep",
        None,
        "(file)",
        ["deeper than 64 levels", "flatten"],
        text="x: " + "[" * 3000 + "]" * 3000 + "\n",
    ),
    Case(
        "block_nesting_3000_deep",
        None,
        "(file)",
        ["deeper than 64 levels"],
        text="".join("  " * i + f"k{i}:\n" for i in range(200)),
    ),
    Case(
        "alias_bomb",
        None,
        "(file)",
        ["expands to more than 100,000 values", "aliases"],
        text='a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
            for i in range(9)
        ),
    ),
    Case(
        "alias_depth_bomb",
        None,
        "(file)",
        ["deeper than 64 levels once aliases are expanded"],
        text="a0: &a0 [[[[[[[[[[x]]]]]]]]]]\n"
        + "".join(f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]\n" for i in range(1, 10)),
    ),
    Case(
        "recursive_alias",
        None,
        "(file)",
        ["contains it", "never end"],
        text="syncs: &s [*s]\n",
    ),
    Case(
        "python_object_tag",
        None,
        "(file)",
        ["line 1", "constructor", "python/object"],
        text='syncs: !!python/object/apply:os.system ["echo pwned"]\n',
    ),
    Case(
        "raw_nul_character",
        None,
        "(file)",
        ["unacceptable character #x0000"],
        text="syncs: []\nx: a\x00b\n",
    ),
    Case(
        "yaml_error_does_not_quote_the_file",
        None,
        "(file)",
        ["line 3"],
        text="state: {url: 'postgresql://u:Pl41nPassw0rd@h/db'}\nsyncs: [\n",
        absent=["Pl41nPassw0rd"],
    ),
    # ---- duplicate keys: YAML keeps the last one silently; mixsync refuses
    Case(
        "duplicate_top_level_syncs",
        None,
        "syncs",
        ["written twice", "lines 1 and 7", "keep one"],
        text="syncs:\n  - {name: a, bucket: media, connection_id: inbox, source_path: x}\n"
        "connections: {inbox: {provider: local, root: ./data}}\n"
        "buckets: {media: {target: local}}\n"
        "state: {url: {env: MIXSYNC_TEST_DB_URL}}\n"
        "\n"
        "syncs:\n  - {name: b, bucket: media, connection_id: inbox, source_path: y}\n",
    ),
    Case(
        "duplicate_connection",
        None,
        "connections.inbox",
        ["written twice", "lines 2 and 3"],
        text="connections:\n  inbox: {provider: local, root: ./a}\n"
        "  inbox: {provider: local, root: ./b}\n"
        "buckets: {media: {target: local}}\n"
        "syncs: [{name: s, bucket: media, connection_id: inbox, source_path: x}]\n",
    ),
    Case(
        "duplicate_key_in_a_sync",
        "s",
        "batch_size",
        ["written twice", "lines 5 and 6"],
        text="connections: {inbox: {provider: local, root: ./a}}\n"
        "buckets: {media: {target: local}}\n"
        "syncs:\n"
        "  - name: s\n"
        "    batch_size: 10\n"
        "    batch_size: 20\n"
        "    bucket: media\n    connection_id: inbox\n    source_path: x\n",
    ),
    Case(
        "duplicate_key_in_a_flow_mapping",
        "s",
        "metadata.k",
        ["written twice", "lines 3 and 3"],
        text="connections: {inbox: {provider: local, root: ./a}}\n"
        "buckets: {media: {target: local}}\n"
        "syncs: [{name: s, bucket: media, connection_id: inbox, source_path: x, "
        "metadata: {k: 1, k: 2}}]\n",
    ),
    # ---- strict switches and numbers
    Case("batch_size_true", SYNC, "batch_size", ["whole number"], edit=sync_edit(batch_size=True)),
    Case(
        "batch_size_float",
        SYNC,
        "batch_size",
        ["whole number"],
        edit=sync_edit(batch_size=10.0),
    ),
    Case(
        "polling_false",
        SYNC,
        "polling_interval_seconds",
        ["whole number"],
        edit=sync_edit(polling_interval_seconds=False),
    ),
    Case(
        "polling_numeric_string",
        SYNC,
        "polling_interval_seconds",
        ["whole number"],
        edit=sync_edit(polling_interval_seconds="300"),
    ),
    Case(
        "include_hidden_string",
        None,
        "connections.inbox.include_hidden",
        ["true or false"],
        edit=conn_edit(include_hidden="true"),
    ),
    Case(
        "skip_duplicates_one",
        SYNC,
        "skip_duplicates",
        ["true or false"],
        edit=sync_edit(skip_duplicates=1),
    ),
    Case(
        "timeout_true",
        None,
        "buckets.media.timeout_seconds",
        ["number"],
        edit=bucket_edit(timeout_seconds=True),
    ),
    # ---- names Dagster can take
    Case(
        "name_trailing_newline",
        "#1",
        "name",
        ["a-z, 0-9 and _", "\\n"],
        edit=sync_edit(name="inbox_files\n"),
    ),
    Case(
        "name_with_space", "inbox files", "name", ["a-z, 0-9"], edit=sync_edit(name="inbox files")
    ),
    Case("name_65_chars", "a" * 65, "name", ["64"], edit=sync_edit(name="a" * 65)),
    Case(
        "connection_name_with_newline",
        None,
        "connections",
        ["'in\\nbox'", "1..64 letters"],
        edit=lambda doc: doc["connections"].update({"in\nbox": {"provider": "local", "root": "."}}),
    ),
    Case(
        "bucket_name_too_long",
        None,
        "buckets",
        ["1..64 letters"],
        edit=lambda doc: doc["buckets"].update({"b" * 65: {"target": "local"}}),
    ),
    # ---- globs, compiled at validation with the matcher's own code
    Case(
        "include_unclosed_bracket",
        SYNC,
        "file_filters.include_patterns",
        ["'['", "never closes", "\\["],
        edit=filters(include_patterns=["["]),
    ),
    Case(
        "include_unclosed_brace",
        SYNC,
        "file_filters.include_patterns",
        ["'{a,b'", "'{'", "never closes"],
        edit=filters(include_patterns=["*.mp4", "{a,b"]),
    ),
    Case(
        "exclude_brace_bomb",
        SYNC,
        "file_filters.exclude_patterns",
        ["cannot be compiled", "limit"],
        edit=filters(exclude_patterns=["{a,b}" * 12]),
    ),
    Case(
        "include_only_a_slash",
        SYNC,
        "file_filters.include_patterns",
        ["names no file"],
        edit=filters(include_patterns=["/"]),
    ),
    # ---- the state URL, parsed at validation; never quoted (it may carry a password)
    Case(
        "state_url_not_a_url",
        None,
        "state.url",
        ["not a database url", "postgresql+psycopg://"],
        edit=state("notaurl"),
    ),
    Case(
        "state_url_unsupported_database",
        None,
        "state.url",
        ["does not support", "sqlite:///"],
        edit=state("mysql://admin:Pl41nPassw0rd@db.internal/mixsync"),
        absent=["Pl41nPassw0rd", "admin", "db.internal"],
    ),
    Case(
        "state_url_unknown_driver",
        None,
        "state.url",
        ["driver", "not installed"],
        edit=state("postgresql+nodriver://admin:Pl41nPassw0rd@db.internal/mixsync"),
        absent=["Pl41nPassw0rd", "nodriver"],
    ),
    Case(
        "state_url_from_env_not_a_url",
        None,
        "state.url",
        ["not a database url"],
        edit=state({"env": "MIXSYNC_TEST_BAD_URL"}),
        env={"MIXSYNC_TEST_BAD_URL": "Sekrit-not-a-url-Value"},
        absent=["Sekrit-not-a-url-Value", "sekrit-not-a-url-value"],
    ),
    # ---- NUL characters
    Case(
        "nul_in_source_path",
        SYNC,
        "source_path",
        ["nul character"],
        edit=sync_edit(source_path="in\x00box/"),
    ),
    Case(
        "nul_in_root",
        None,
        "connections.inbox.root",
        ["nul character"],
        edit=conn_edit(root="./da\x00ta"),
    ),
    # ---- {env: VAR}: only where the value can stay hidden
    Case(
        "env_in_sync_metadata_refused",
        SYNC,
        "metadata.token",
        ["cannot be read from the environment", "credentials"],
        edit=sync_edit(metadata={"token": {"env": SECRET_TOKEN_VAR}}),
    ),
    Case(
        "env_in_extensions_refused",
        SYNC,
        "file_filters.extensions[0]",
        ["cannot be read from the environment"],
        edit=filters(extensions=[{"env": SECRET_TOKEN_VAR}]),
        absent=[SECRET_TOKEN.lower()],
    ),
    Case(
        "env_in_sync_name_refused",
        "#1",
        "name",
        ["cannot be read from the environment"],
        edit=sync_edit(name={"env": SECRET_TOKEN_VAR}),
    ),
    Case(
        "env_in_a_number_refused",
        None,
        "buckets.media.timeout_seconds",
        ["cannot be read from the environment"],
        edit=bucket_edit(timeout_seconds={"env": SECRET_TOKEN_VAR}),
    ),
    Case(
        "env_var_name_invalid",
        None,
        "buckets.media.namespace",
        ["must name an environment variable"],
        edit=bucket_edit(namespace={"env": "not a name"}),
    ),
    Case(
        "env_value_empty",
        None,
        "buckets.media.namespace",
        ["MIXSYNC_TEST_EMPTY", "is empty"],
        edit=bucket_edit(namespace={"env": "MIXSYNC_TEST_EMPTY"}),
        env={"MIXSYNC_TEST_EMPTY": ""},
    ),
    Case(
        "env_value_too_short",
        None,
        "buckets.media.namespace",
        ["MIXSYNC_TEST_SHORT", "fewer than 4 characters"],
        edit=bucket_edit(namespace={"env": "MIXSYNC_TEST_SHORT"}),
        env={"MIXSYNC_TEST_SHORT": "ab"},
    ),
    Case(
        # The leak: validation echoed the root resolved from the environment.
        "source_path_escapes_a_root_from_env",
        SYNC,
        "source_path",
        ["leaves the connection root ${MIXSYNC_TEST_ROOT}"],
        edit=lambda doc: (
            conn_edit(root={"env": "MIXSYNC_TEST_ROOT"})(doc),
            sync_edit(source_path="../../x")(doc),
        ),
        env={"MIXSYNC_TEST_ROOT": "./Hidden-Root-Dir"},
        absent=["Hidden-Root-Dir", "hidden-root-dir"],
    ),
]


def write(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / "conf dir" / f"{case.id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if case.missing_file:
        return path
    if case.make is not None:
        return case.make(path.parent)
    if case.data is not None:
        path.write_bytes(case.data)
        return path
    if case.text is not None:
        path.write_text(case.text, encoding="utf-8")
        return path
    doc = base_doc()
    assert case.edit is not None
    case.edit(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def find(problems: list[ConfigProblem], sync: str | None, fld: str) -> ConfigProblem:
    for p in problems:
        if p.sync == sync and p.field == fld:
            return p
    raise AssertionError(
        f"no problem for sync={sync!r} field={fld!r}; got {[(p.sync, p.field) for p in problems]}"
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_config_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    path = write(tmp_path, case)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    # Bombs fail fast: nothing is expanded before the limits are checked.
    assert time.monotonic() - started < 1.0
    err = info.value
    text = str(err)

    # One header line, then exactly one line per problem.
    assert text.count("\n") == len(err.problems)
    assert all(line.startswith("  - ") for line in text.splitlines()[1:])
    for needle in case.absent:
        assert needle not in text

    assert str(path) in text
    assert err.path == str(path)
    assert err.problems, "a ConfigError must carry at least one problem"

    problem = find(err.problems, case.sync, case.field)
    assert problem.message and problem.fix
    useful = f"{problem.message} {problem.fix}".lower()
    for needle in case.expect:
        assert needle.lower() in useful, f"{needle!r} not in {useful!r}"

    # The one-line rendering names sync and field too.
    assert f"field '{case.field}'" in text
    if case.sync is not None:
        assert f"sync '{case.sync}'" in text

    # A resolved secret never reaches error text (state.url and metadata.origin hold secrets).
    assert SECRET_VALUE not in text
    assert "Sup3rS3cret" not in text
    assert SECRET_TOKEN not in text
    assert SECRET_VALUE not in repr(err.problems)


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------- secrets, in detail


def test_unset_env_names_variable_and_never_echoes_set_secrets(tmp_path: Path) -> None:
    doc = base_doc()
    bucket_edit(namespace={"env": SECRET_TOKEN_VAR})(doc)
    doc["connections"]["inbox"]["root"] = {"env": UNSET_VAR}
    path = tmp_path / "syncs.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert UNSET_VAR in text
    assert [(p.sync, p.field) for p in info.value.problems] == [(None, "connections.inbox.root")]
    for secret in (SECRET_VALUE, SECRET_TOKEN):
        assert secret not in text
        assert secret not in repr(info.value.problems)


def test_set_secrets_do_not_leak_when_other_fields_are_invalid(tmp_path: Path) -> None:
    doc = base_doc()
    doc["syncs"][0].update(
        metadata={"token": {"env": SECRET_TOKEN_VAR}},
        polling_interval_seconds=5,
        batch_size={"env": SECRET_TOKEN_VAR},  # not a number: the value must not be echoed
    )
    path = tmp_path / "syncs.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    fields = {p.field for p in info.value.problems}
    assert {"polling_interval_seconds", "batch_size"} <= fields
    assert SECRET_TOKEN not in str(info.value)
    assert SECRET_VALUE not in str(info.value)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    doc = base_doc()
    second = {**copy.deepcopy(doc["syncs"][0]), "name": "second", "batch_size": 101}
    doc["syncs"][0]["polling_interval_seconds"] = 29
    doc["syncs"].append(second)
    path = tmp_path / "syncs.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    got = {(p.sync, p.field) for p in info.value.problems}
    assert got == {(SYNC, "polling_interval_seconds"), ("second", "batch_size")}
    assert "2 problem(s)" in str(info.value)


def test_cross_references_are_reported_with_field_errors(tmp_path: Path) -> None:
    """A missing bucket or connection is reported in the same run as field errors elsewhere
    (it used to show up only once every field was fixed), with duplicates and NULs."""
    path = tmp_path / "syncs.yaml"
    path.write_text(
        "connections: {inbox: {provider: local, root: ./data, rooot: x}}\n"
        "buckets: {media: {target: local}}\n"
        "syncs:\n"
        "  - {name: a, bucket: nowhere, connection_id: inbox, source_path: x, batch_size: true}\n"
        "  - {name: b, bucket: media, connection_id: ghost, source_path: x,\n"
        "     file_filters: {include_patterns: ['[']}}\n"
        "  - {name: c, bucket: media, connection_id: inbox, source_path: '../..', "
        "polling_interval_seconds: 5, polling_interval_seconds: 6}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    got = {(p.sync, p.field) for p in info.value.problems}
    assert got == {
        (None, "connections.inbox.rooot"),
        ("a", "bucket"),
        ("a", "batch_size"),
        ("b", "connection_id"),
        ("b", "file_filters.include_patterns"),
        ("c", "polling_interval_seconds"),  # written twice, and 6 < 30: one line each
        ("c", "source_path"),
    }
    assert len(info.value.problems) == 8


# ---------------------------------------------------------------- valid files


def write_doc(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_repo_syncs_yaml_loads() -> None:
    cfg = load_config(REPO / "syncs.yaml")
    s = cfg.sync("inbox_files")
    assert s.bucket == "media" and s.connection_id == "examples"
    assert s.sync_mode == "continuous"
    assert s.polling_interval_seconds == 30
    assert s.batch_size == 50
    assert s.file_filters.exclude_patterns == ["*_temp.*"]
    assert s.schema_mapping.field_mappings["file_name"].source == "name"
    assert cfg.connection_root(cfg.connections["examples"]) == (REPO / "examples").resolve()
    assert cfg.state_url().startswith("sqlite:///")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("one_time", "initial_only"),
        ("scheduled", "continuous"),
        ("initial_only", "initial_only"),
        ("continuous", "continuous"),
    ],
)
def test_sync_mode_aliases(tmp_path: Path, given: str, expected: str) -> None:
    doc = base_doc()
    doc["syncs"][0]["sync_mode"] = given
    cfg = load_config(write_doc(tmp_path / "syncs.yaml", doc))
    assert cfg.syncs[0].sync_mode == expected


def test_defaults_match_feature_page(tmp_path: Path) -> None:
    doc = base_doc()
    del doc["syncs"][0]["metadata"]
    cfg = load_config(write_doc(tmp_path / "syncs.yaml", doc))
    s = cfg.syncs[0]
    assert s.sync_mode == "continuous"
    assert s.polling_interval_seconds == 300
    assert s.batch_size == 50
    assert s.skip_duplicates is True
    assert s.reconcile_policy == ReconcilePolicy(
        on_delete=False, on_update=True, on_filter_drift=False
    )
    assert s.sync_concurrency == 1
    assert s.skip_batch_submission is False
    assert s.metadata == {}
    assert s.description is None
    assert cfg.connections["inbox"].include_hidden is False


@pytest.mark.parametrize(
    "edit",
    [
        {"polling_interval_seconds": 30},
        {"polling_interval_seconds": 900},
        {"polling_interval_seconds": 86_400},
        {"sync_concurrency": 1},
        {"sync_concurrency": 16},
        {"reconcile": {}},
        {"reconcile_on_sync": True},
        {"reconcile": {"re_extract_on_update": False, "re_extract_fields": ["title"]}},
        {"batch_size": 1},
        {"batch_size": 100},
        {"metadata": {f"k{i}": i for i in range(50)}},
        {"description": "d" * 500},
        {"file_filters": {"min_size_bytes": 1024, "max_size_bytes": 1024}},
        {"file_filters": {"modified_after": "2025-01-01T00:00:00Z"}},
        {"file_filters": {"metadata_filters": [{"field": "x", "operator": "exists"}]}},
        {"source_path": "a/../incoming"},
        {"source_path": "/incoming"},
    ],
    ids=lambda e: ",".join(e),
)
def test_boundary_values_load(tmp_path: Path, edit: dict[str, Any]) -> None:
    doc = base_doc()
    doc["syncs"][0].update(edit)
    load_config(write_doc(tmp_path / "syncs.yaml", doc))


def test_env_secret_resolves_and_stays_hidden(tmp_path: Path) -> None:
    cfg = load_config(write_doc(tmp_path / "syncs.yaml", base_doc()))
    assert cfg.state_url() == SECRET_VALUE
    assert SECRET_VALUE not in repr(cfg)
    assert SECRET_VALUE not in str(cfg.state)


def test_relative_root_resolves_against_the_file_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_doc(tmp_path / "cfg" / "syncs.yaml", base_doc())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(path)
    assert cfg.connection_root(cfg.connections["inbox"]) == (tmp_path / "cfg" / "data").resolve()


def _named(name: str) -> dict[str, Any]:
    doc = base_doc()
    doc["syncs"][0]["name"] = name
    return doc


def test_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    write_doc(cwd / "syncs.yaml", _named("from_cwd"))
    env_file = write_doc(tmp_path / "env" / "custom.yaml", _named("from_env"))
    explicit = write_doc(tmp_path / "explicit" / "mine.yaml", _named("from_arg"))
    monkeypatch.chdir(cwd)

    # ./syncs.yaml when nothing else is given
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    assert config_path() == Path("syncs.yaml")
    assert load_config().syncs[0].name == "from_cwd"

    # $MIXSYNC_CONFIG beats ./syncs.yaml
    monkeypatch.setenv(CONFIG_ENV_VAR, str(env_file))
    assert config_path() == env_file
    assert load_config().syncs[0].name == "from_env"

    # an explicit path beats both
    assert config_path(explicit) == explicit
    assert load_config(explicit).syncs[0].name == "from_arg"
    assert load_config(str(explicit)).syncs[0].name == "from_arg"


def test_missing_default_file_names_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "syncs.yaml" in str(info.value)
    assert CONFIG_ENV_VAR in info.value.problems[0].fix


def test_unset_env_var_does_not_hide_other_problems(tmp_path, monkeypatch):
    monkeypatch.delenv("MIXSYNC_TEST_UNSET_URL", raising=False)
    path = tmp_path / "syncs.yaml"
    path.write_text(
        """
state: {url: {env: MIXSYNC_TEST_UNSET_URL}}
connections: {c: {provider: local, root: .}}
buckets: {b: {target: local}}
syncs:
  - {name: s, bucket: b, connection_id: c, source_path: x, batch_size: 500}
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    fields = {(p.sync, p.field) for p in info.value.problems}
    assert fields == {(None, "state.url"), ("s", "batch_size")}


def test_secret_value_is_scrubbed_even_from_errors_about_its_own_field(tmp_path, monkeypatch):
    """The error is about the root read from the environment, and shows `${VAR}` for it, in
    every form it takes (as written, resolved to an absolute path)."""
    monkeypatch.setenv("MIXSYNC_TEST_SECRET_ROOT", str(tmp_path / "Sup3r-Secret-Root"))
    path = tmp_path / "syncs.yaml"
    path.write_text(
        """
connections: {c: {provider: local, root: {env: MIXSYNC_TEST_SECRET_ROOT}}}
buckets: {b: {target: local}}
syncs:
  - {name: s, bucket: b, connection_id: c, source_path: ../../elsewhere}
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "Sup3r-Secret-Root".lower() not in str(info.value).lower()
    assert "${MIXSYNC_TEST_SECRET_ROOT}" in str(info.value)


def test_sync_settings_are_never_read_from_the_environment(tmp_path, monkeypatch):
    """A refused `{env: VAR}` is not even read: the value is nowhere in the process's text."""
    monkeypatch.setenv("MIXSYNC_TEST_SECRET_NAME", "Sup3r-Secret-Name")
    path = tmp_path / "syncs.yaml"
    path.write_text(
        """
connections: {c: {provider: local, root: .}}
buckets: {b: {target: local}}
syncs:
  - {name: {env: MIXSYNC_TEST_SECRET_NAME}, bucket: b, connection_id: c, source_path: x}
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [(p.sync, p.field) for p in info.value.problems] == [("#1", "name")]
    assert "Sup3r-Secret-Name" not in str(info.value)


@pytest.mark.parametrize(
    ("edit", "policy"),
    [
        pytest.param({}, (False, True, False), id="neither_form"),
        pytest.param({"reconcile_on_sync": False}, (False, True, False), id="on_sync_false"),
        pytest.param({"reconcile_on_sync": True}, (True, True, True), id="on_sync_true"),
        pytest.param({"reconcile": {}}, (True, True, True), id="v082_defaults_all_true"),
        pytest.param(
            {"reconcile": {"on_delete": True, "on_update": False, "on_filter_drift": False}},
            (True, False, False),
            id="v082_each_switch",
        ),
    ],
)
def test_reconcile_forms_map_to_one_policy(
    tmp_path: Path, edit: dict[str, Any], policy: tuple[bool, bool, bool]
) -> None:
    doc = base_doc()
    doc["syncs"][0].update(edit)
    s = load_config(write_doc(tmp_path / "syncs.yaml", doc)).syncs[0]
    assert s.reconcile_policy == ReconcilePolicy(*policy)
    assert s.reconcile_policy.deletes == (policy[0] or policy[2])


# ---------------------------------------------------------------- names Dagster can take

NAMES = [
    "inbox",
    "a",
    "inbox_files_2",
    "_private",
    "a" * 64,
    "Inbox",
    "in-box",
    "in box",
    "inbox\n",
    "\ninbox",
    "inbox\r",
    "é",
    "a" * 65,
    "",
    "in\tbox",
]


@pytest.mark.parametrize("name", NAMES, ids=[repr(n) for n in NAMES])
def test_an_accepted_sync_name_builds_dagster_definitions(tmp_path: Path, name: str) -> None:
    """Every name validation accepts is a name Dagster accepts for the sensor, the job and the
    asset made from it (building the definitions proves it); the others are one problem on
    `name`, never a DagsterInvalidDefinitionError later."""
    from dagster._core.definitions.utils import is_valid_name

    from mixsync_dagster.dagster.definitions import build_definitions

    doc = base_doc()
    doc["state"] = {"url": f"sqlite:///{tmp_path / 'state.db'}"}
    doc["syncs"][0]["name"] = name
    path = write_doc(tmp_path / "syncs.yaml", doc)
    dagster_ok = is_valid_name(f"mixsync_{name}") and is_valid_name(f"mixsync_{name}_job")
    try:
        load_config(path)
    except ConfigError as e:
        assert [p.field for p in e.problems] == ["name"]
        assert "\n" not in str(e.problems[0])
        return
    assert dagster_ok, f"{name!r} validated, but Dagster refuses it"
    defs = build_definitions(path)
    assert defs.get_job_def(f"mixsync_{name}_job") is not None
