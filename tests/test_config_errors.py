"""syncs.yaml errors: every malformed file raises one ConfigError naming file, sync and field.

Table-driven: each case is a malformed document written to a real file and loaded with
`load_config(path)`. The assertions check where the problem is reported (sync + exact dotted
field) and that the message/fix tells the user what to do. A recognisable secret is always set
in the environment and referenced from `state.url`, so every case also proves that a resolved
secret never leaks into error text.
"""

from __future__ import annotations

import copy
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
        "env_unset_in_sync_metadata",
        SYNC,
        "metadata.api_token",
        [UNSET_VAR, "not set"],
        edit=sync_edit(
            metadata={"origin": {"env": SECRET_TOKEN_VAR}, "api_token": {"env": UNSET_VAR}}
        ),
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
]


def write(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / "conf dir" / f"{case.id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if case.missing_file:
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
def test_malformed_config_is_reported(tmp_path: Path, case: Case) -> None:
    path = write(tmp_path, case)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    text = str(err)

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
    doc["syncs"][0]["metadata"] = {"token": {"env": SECRET_TOKEN_VAR}}
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
    assert "Sup3r-Secret-Name" not in str(info.value)
    assert "${MIXSYNC_TEST_SECRET_NAME}" in str(info.value)


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
