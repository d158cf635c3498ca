"""Schema mapping: the feature page's `field_mappings` and the richer `mappings` form.

Table-driven: each case is a schema_mapping dict (validated with SchemaMapping.model_validate,
as syncs.yaml is) applied to a FileItem, with the exact fields and blobs expected. Config-time
errors are checked both on the model and through `parse_config`, which must name the field.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mixsync_dagster.config import SchemaMapping, parse_config
from mixsync_dagster.config.paths import MISSING, parse_path, resolve
from mixsync_dagster.core.mapping import Mapped, compile_mapping, mapping_needs_metadata
from mixsync_dagster.core.records import FileItem
from mixsync_dagster.errors import ConfigError, PermanentFileError
from mixsync_dagster.targets.base import BlobSpec

MODIFIED = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))

ITEM = FileItem(
    key="inbox/2025/spring/SKU-123_hero_v2.mp4",
    rel_path="2025/spring/SKU-123_hero_v2.mp4",
    size=4096,
    modified_at=MODIFIED,
    fingerprint="fp-4096",
    content_type=None,
    etag='"abc123"',
    url="file:///data/inbox/2025/spring/SKU-123_hero_v2.mp4",
    metadata={
        "title": "Spring Hero",
        "tags": ["hero", "b-roll", "final"],
        "empty": [],
        "nothing": None,
        "count": 3,
        "meta": {"title": "  Nested Title  ", "json": '{"a": [1, 2]}', "bad_json": "{nope"},
        "caption": "  Mixed Case  ",
    },
)

TAGGED = FileItem(
    key="k/a.mov",
    rel_path="a.mov",
    size=1,
    modified_at=datetime(2025, 1, 1, tzinfo=UTC),
    fingerprint="fp",
    content_type="Video/QuickTime; foo=bar",
    metadata={"tags": {"env": "prod", "Owner": "Ana"}, "title": "x"},
)

BARE = FileItem(
    key="k/root.mp4",
    rel_path="root.mp4",
    size=0,
    modified_at=datetime(2025, 1, 1, tzinfo=UTC),
    fingerprint="fp0",
)
"""At the source root, no metadata, no etag, no url."""


def fm(**targets: str) -> dict[str, Any]:
    return {"field_mappings": {t: {"source": s} for t, s in targets.items()}}


def rich(target: str, source: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"mappings": {target: {"source": source, **more}}}


def mcase(
    id: str,
    schema: dict[str, Any],
    fields: dict[str, Any],
    blobs: dict[str, str] | None = None,
    it: FileItem = ITEM,
    xfail: str | None = None,
) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(schema, it, fields, blobs or {}, id=id, marks=marks)


CASES = [
    # ---- the feature page, verbatim
    mcase(
        "page/field_mappings",
        {
            "field_mappings": {
                "product_name": {"source": "metadata.title"},
                "category": {"source": "metadata.tags[0]"},
            }
        },
        {"product_name": "Spring Hero", "category": "hero"},
    ),
    mcase(
        "page/field_mappings_without_metadata_omits_both",
        {
            "field_mappings": {
                "product_name": {"source": "metadata.title"},
                "category": {"source": "metadata.tags[0]"},
            }
        },
        {},
        it=BARE,
    ),
    # ---- every root path
    mcase("root/name", fm(f="name"), {"f": "SKU-123_hero_v2.mp4"}),
    mcase("root/path", fm(f="path"), {"f": "2025/spring/SKU-123_hero_v2.mp4"}),
    mcase("root/key", fm(f="key"), {"f": "inbox/2025/spring/SKU-123_hero_v2.mp4"}),
    mcase("root/size", fm(f="size"), {"f": 4096}),
    mcase("root/size_zero_is_kept", fm(f="size"), {"f": 0}, it=BARE),
    mcase("root/modified_at", fm(f="modified_at"), {"f": MODIFIED.isoformat()}),
    mcase("root/mime_type_guessed", fm(f="mime_type"), {"f": "video/mp4"}),
    mcase(
        "root/mime_type_from_content_type", fm(f="mime_type"), {"f": "video/quicktime"}, it=TAGGED
    ),
    mcase("root/etag", fm(f="etag"), {"f": '"abc123"'}),
    mcase("root/etag_none_omitted", fm(f="etag"), {}, it=BARE),
    mcase("root/fingerprint", fm(f="fingerprint"), {"f": "fp-4096"}),
    mcase("root/metadata_whole", fm(f="metadata"), {"f": TAGGED.metadata}, it=TAGGED),
    mcase(
        "root/all_at_once",
        fm(n="name", p="path", s="size", fp="fingerprint"),
        {"n": "root.mp4", "p": "root.mp4", "s": 0, "fp": "fp0"},
        it=BARE,
    ),
    # ---- indexes and missing values
    mcase("index/last", fm(f="metadata.tags[-1]"), {"f": "final"}),
    mcase("index/negative_second", fm(f="metadata.tags[-2]"), {"f": "b-roll"}),
    mcase("index/out_of_range_omitted", fm(f="metadata.tags[3]"), {}),
    mcase("index/negative_out_of_range_omitted", fm(f="metadata.tags[-4]"), {}),
    mcase("index/empty_list_omitted", fm(f="metadata.empty[0]"), {}),
    mcase("index/on_a_string_omitted", fm(f="metadata.title[0]"), {}),
    mcase("missing/key_omitted", fm(f="metadata.absent", g="name"), {"g": "SKU-123_hero_v2.mp4"}),
    mcase("missing/null_omitted", fm(f="metadata.nothing"), {}),
    mcase("missing/through_a_string", fm(f="metadata.title.x"), {}),
    mcase("nested/dotted", fm(f="metadata.meta.title"), {"f": "  Nested Title  "}),
    # ---- rich form: metadata source
    mcase("metadata/key", rich("t", {"type": "metadata", "key": "title"}), {"t": "Spring Hero"}),
    mcase(
        "metadata/dotted_key",
        rich("t", {"type": "metadata", "key": "meta.title"}),
        {"t": "  Nested Title  "},
    ),
    mcase("metadata/missing_omitted", rich("t", {"type": "metadata", "key": "meta.absent"}), {}),
    mcase(
        "metadata/list_value",
        rich("t", {"type": "metadata", "key": "tags"}),
        {"t": ITEM.metadata["tags"]},
    ),
    # ---- tag source: item.metadata["tags"] as a dict
    mcase("tag/hit", rich("t", {"type": "tag", "key": "env"}), {"t": "prod"}, it=TAGGED),
    mcase("tag/case_sensitive_key", rich("t", {"type": "tag", "key": "owner"}), {}, it=TAGGED),
    mcase("tag/missing_key", rich("t", {"type": "tag", "key": "team"}), {}, it=TAGGED),
    mcase("tag/tags_is_a_list", rich("t", {"type": "tag", "key": "hero"}), {}),
    mcase("tag/no_tags", rich("t", {"type": "tag", "key": "env"}), {}, it=BARE),
    # ---- filename_regex
    mcase(
        "regex/default_first_group",
        rich("sku", {"type": "filename_regex", "pattern": r"^(SKU-\d+)_"}),
        {"sku": "SKU-123"},
    ),
    mcase(
        "regex/default_whole_match_without_groups",
        rich("sku", {"type": "filename_regex", "pattern": r"SKU-\d+"}),
        {"sku": "SKU-123"},
    ),
    mcase(
        "regex/numbered_group",
        rich("v", {"type": "filename_regex", "pattern": r"^(SKU)-(\d+)_", "group": 2}),
        {"v": "123"},
    ),
    mcase(
        "regex/group_zero_is_whole_match",
        rich("v", {"type": "filename_regex", "pattern": r"_(hero)_", "group": 0}),
        {"v": "_hero_"},
    ),
    mcase(
        "regex/named_group",
        rich(
            "v", {"type": "filename_regex", "pattern": r"_v(?P<version>\d+)\.", "group": "version"}
        ),
        {"v": "2"},
    ),
    mcase(
        "regex/no_match_omitted",
        rich("v", {"type": "filename_regex", "pattern": r"^ZZZ-(\d+)"}),
        {},
    ),
    mcase(
        "regex/group_out_of_range_omitted",
        rich("v", {"type": "filename_regex", "pattern": r"^(SKU)", "group": 5}),
        {},
    ),
    mcase(
        "regex/unknown_named_group_omitted",
        rich("v", {"type": "filename_regex", "pattern": r"^(?P<a>SKU)", "group": "b"}),
        {},
    ),
    mcase(
        "regex/optional_group_unmatched_omitted",
        rich("v", {"type": "filename_regex", "pattern": r"^SKU(-x)?", "group": 1}),
        {},
    ),
    mcase(
        "regex/default_when_no_match",
        rich("v", {"type": "filename_regex", "pattern": r"^ZZZ-(\d+)", "default": "none"}),
        {"v": "none"},
    ),
    mcase(
        "regex/default_unused_on_match",
        rich("v", {"type": "filename_regex", "pattern": r"^(SKU-\d+)", "default": "none"}),
        {"v": "SKU-123"},
    ),
    mcase(
        "regex/default_when_group_unmatched",
        rich("v", {"type": "filename_regex", "pattern": r"^SKU(-x)?", "group": 1, "default": "-"}),
        {"v": "-"},
    ),
    mcase(
        "regex/matches_name_not_path",
        rich("v", {"type": "filename_regex", "pattern": r"^(\d{4})/"}),
        {},
    ),
    # ---- folder_path
    mcase("folder/index_0", rich("f", {"type": "folder_path", "index": 0}), {"f": "2025"}),
    mcase("folder/index_-1", rich("f", {"type": "folder_path", "index": -1}), {"f": "spring"}),
    mcase("folder/index_out_of_range", rich("f", {"type": "folder_path", "index": 2}), {}),
    mcase("folder/index_-3_out_of_range", rich("f", {"type": "folder_path", "index": -3}), {}),
    mcase("folder/no_index_whole_path", rich("f", {"type": "folder_path"}), {"f": "2025/spring"}),
    # Mixpeek v0.82's spellings: segment (= index), full_path, and the parent by default.
    mcase("folder/segment_0", rich("f", {"type": "folder_path", "segment": 0}), {"f": "2025"}),
    mcase("folder/segment_-1", rich("f", {"type": "folder_path", "segment": -1}), {"f": "spring"}),
    mcase(
        "folder/full_path_true",
        rich("f", {"type": "folder_path", "full_path": True}),
        {"f": "2025/spring"},
    ),
    mcase(
        "folder/full_path_false_is_the_parent",
        rich("f", {"type": "folder_path", "full_path": False}),
        {"f": "spring"},
    ),
    mcase(
        "folder/full_path_false_segment_0",
        rich("f", {"type": "folder_path", "full_path": False, "segment": 0}),
        {"f": "2025"},
    ),
    mcase(
        "folder/full_path_at_root_omitted",
        rich("f", {"type": "folder_path", "full_path": True}),
        {},
        it=BARE,
    ),
    mcase("folder/at_root_omitted", rich("f", {"type": "folder_path"}), {}, it=BARE),
    mcase(
        "folder/at_root_index_0_omitted",
        rich("f", {"type": "folder_path", "index": 0}),
        {},
        it=BARE,
    ),
    # ---- constant
    mcase(
        "constant/text",
        rich("c", {"type": "constant", "value": "spring-campaign"}),
        {"c": "spring-campaign"},
    ),
    mcase("constant/number", rich("c", {"type": "constant", "value": 0}), {"c": 0}),
    mcase("constant/false", rich("c", {"type": "constant", "value": False}), {"c": False}),
    mcase("constant/dict", rich("c", {"type": "constant", "value": {"a": 1}}), {"c": {"a": 1}}),
    # ---- file
    mcase("file/url", rich("u", {"type": "file"}), {"u": ITEM.url}),
    mcase("file/no_url_omitted", rich("u", {"type": "file"}), {}, it=BARE),
    mcase("file/key_size", rich("s", {"type": "file", "key": "size"}), {"s": 4096}),
    mcase(
        "file/key_name", rich("s", {"type": "file", "key": "name"}), {"s": "SKU-123_hero_v2.mp4"}
    ),
    mcase(
        "file/key_metadata_index",
        rich("s", {"type": "file", "key": "metadata.tags[1]"}),
        {"s": "b-roll"},
    ),
    # ---- transforms
    mcase(
        "transform/lowercase",
        rich("t", {"type": "metadata", "key": "title"}, transform="lowercase"),
        {"t": "spring hero"},
    ),
    mcase(
        "transform/uppercase",
        rich("t", {"type": "metadata", "key": "title"}, transform="uppercase"),
        {"t": "SPRING HERO"},
    ),
    mcase(
        "transform/trim",
        rich("t", {"type": "metadata", "key": "caption"}, transform="trim"),
        {"t": "Mixed Case"},
    ),
    mcase(
        "transform/lowercase_non_text_passes",
        rich("t", {"type": "metadata", "key": "count"}, transform="lowercase"),
        {"t": 3},
    ),
    mcase(
        "transform/json_parse",
        rich("t", {"type": "metadata", "key": "meta.json"}, transform="json_parse"),
        {"t": {"a": [1, 2]}},
    ),
    mcase(
        "transform/json_parse_constant",
        rich("t", {"type": "constant", "value": "[1, 2]"}, transform="json_parse"),
        {"t": [1, 2]},
    ),
    mcase(
        "transform/json_parse_invalid_not_required_omitted",
        rich("t", {"type": "metadata", "key": "meta.bad_json"}, transform="json_parse"),
        {},
    ),
    mcase(
        "transform/on_missing_value_omitted",
        rich("t", {"type": "metadata", "key": "absent"}, transform="uppercase"),
        {},
    ),
    mcase(
        "transform/regex_then_lowercase",
        rich("t", {"type": "filename_regex", "pattern": r"^(SKU)"}, transform="lowercase"),
        {"t": "sku"},
    ),
    # ---- blobs
    mcase(
        "blob/file_url",
        rich("video", {"type": "file"}, target_type="blob"),
        {},
        {"video": ITEM.url or ""},
    ),
    mcase(
        "blob/from_metadata_is_stringified",
        rich("thumb", {"type": "metadata", "key": "count"}, target_type="blob"),
        {},
        {"thumb": "3"},
    ),
    mcase(
        "blob/missing_not_required_omitted",
        rich("video", {"type": "file"}, target_type="blob"),
        {},
        it=BARE,
    ),
    # ---- required with a value is fine
    mcase(
        "required/present",
        rich("t", {"type": "metadata", "key": "title"}, required=True),
        {"t": "Spring Hero"},
    ),
    # ---- both forms together
    mcase(
        "both_forms",
        {
            "field_mappings": {"product_name": {"source": "metadata.title"}},
            "mappings": {
                "sku": {"source": {"type": "filename_regex", "pattern": r"^(SKU-\d+)"}},
                "video": {"target_type": "blob", "source": {"type": "file"}},
                "season": {
                    "source": {"type": "folder_path", "index": -1},
                    "transform": "uppercase",
                },
            },
        },
        {"product_name": "Spring Hero", "sku": "SKU-123", "season": "SPRING"},
        {"video": ITEM.url or ""},
    ),
    mcase("empty_schema", {}, {}),
]


@pytest.mark.parametrize(("schema", "it", "fields", "blobs"), CASES)
def test_mapping_table(
    schema: dict[str, Any], it: FileItem, fields: dict[str, Any], blobs: dict[str, str]
) -> None:
    apply = compile_mapping(SchemaMapping.model_validate(schema))
    out = apply(it)
    assert isinstance(out, Mapped)
    assert out.fields == fields
    assert {b.property: b.value for b in out.blobs} == blobs


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 60
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids))


def test_mapping_does_not_mutate_the_item() -> None:
    before = ITEM.to_json()
    compile_mapping(
        SchemaMapping.model_validate(
            rich("t", {"type": "metadata", "key": "meta.title"}, transform="trim")
        )
    )(ITEM)
    assert ITEM.to_json() == before


# ---------------------------------------------------------------- required → PermanentFileError

REQUIRED_FAILURES = [
    pytest.param(
        rich("sku", {"type": "metadata", "key": "sku"}, required=True), ITEM, id="metadata_missing"
    ),
    pytest.param(
        rich("sku", {"type": "metadata", "key": "nothing"}, required=True), ITEM, id="metadata_null"
    ),
    pytest.param(
        rich("sku", {"type": "filename_regex", "pattern": r"^ZZZ"}, required=True),
        ITEM,
        id="regex_no_match",
    ),
    pytest.param(rich("sku", {"type": "tag", "key": "env"}, required=True), BARE, id="tag_missing"),
    pytest.param(
        rich("sku", {"type": "folder_path", "index": 7}, required=True),
        ITEM,
        id="folder_out_of_range",
    ),
    pytest.param(rich("sku", {"type": "file"}, required=True), BARE, id="file_without_url"),
    pytest.param(
        rich("sku", {"type": "file"}, required=True, target_type="blob"),
        BARE,
        id="blob_without_url",
    ),
    pytest.param(
        rich(
            "sku",
            {"type": "metadata", "key": "meta.bad_json"},
            transform="json_parse",
            required=True,
        ),
        ITEM,
        id="json_parse_invalid",
    ),
    pytest.param(
        rich("sku", {"type": "constant", "value": "null"}, transform="json_parse", required=True),
        ITEM,
        id="json_parse_to_null",
    ),
]


@pytest.mark.parametrize(("schema", "it"), REQUIRED_FAILURES)
def test_required_without_value_is_a_permanent_file_error(
    schema: dict[str, Any], it: FileItem
) -> None:
    apply = compile_mapping(SchemaMapping.model_validate(schema))
    with pytest.raises(PermanentFileError) as e:
        apply(it)
    assert "'sku'" in str(e.value)


def test_required_error_names_the_source() -> None:
    apply = compile_mapping(
        SchemaMapping.model_validate(
            rich("product_sku", {"type": "metadata", "key": "sku.code"}, required=True)
        )
    )
    with pytest.raises(PermanentFileError, match=r"product_sku.*required.*sku\.code"):
        apply(ITEM)


def test_invalid_json_required_names_the_transform() -> None:
    apply = compile_mapping(
        SchemaMapping.model_validate(
            rich(
                "spec",
                {"type": "metadata", "key": "meta.bad_json"},
                transform="json_parse",
                required=True,
            )
        )
    )
    with pytest.raises(PermanentFileError, match=r"'spec'.*json_parse.*\{nope"):
        apply(ITEM)


def test_required_failure_is_per_file() -> None:
    """One file missing a required value does not poison the compiled mapping."""
    apply = compile_mapping(
        SchemaMapping.model_validate(rich("t", {"type": "metadata", "key": "title"}, required=True))
    )
    with pytest.raises(PermanentFileError):
        apply(BARE)
    assert apply(ITEM).fields == {"t": "Spring Hero"}


# ---------------------------------------------------------------- config-time errors

BAD_SCHEMAS = [
    pytest.param(
        fm(f="metadata..x"), "field_mappings.f.source", "field path", id="path_empty_segment"
    ),
    pytest.param(
        fm(f="foo.bar"), "field_mappings.f.source", "must start with", id="path_unknown_root"
    ),
    pytest.param(
        fm(f="name.x"), "field_mappings.f.source", "only 'metadata'", id="path_subfield_of_name"
    ),
    pytest.param(
        fm(f="metadata.tags[x]"), "field_mappings.f.source", "field path", id="path_bad_index"
    ),
    pytest.param(fm(f=""), "field_mappings.f.source", "field path", id="path_empty"),
    pytest.param(fm(f=" name"), "field_mappings.f.source", "field path", id="path_leading_space"),
    pytest.param(
        fm(f="metadata.tags["), "field_mappings.f.source", "field path", id="path_open_bracket"
    ),
    pytest.param(fm(f="tags[0]"), "field_mappings.f.source", "must start with", id="path_no_root"),
    pytest.param(
        rich("t", {"type": "filename_regex"}),
        "mappings.t.source",
        "needs 'pattern'",
        id="regex_without_pattern",
    ),
    pytest.param(
        rich("t", {"type": "filename_regex", "pattern": "(unclosed"}),
        "mappings.t.source",
        "not a valid regular expression",
        id="regex_invalid",
    ),
    pytest.param(
        rich("t", {"type": "metadata"}),
        "mappings.t.source",
        "needs 'key'",
        id="metadata_without_key",
    ),
    pytest.param(
        rich("t", {"type": "tag"}), "mappings.t.source", "needs 'key'", id="tag_without_key"
    ),
    pytest.param(
        rich("t", {"type": "constant"}),
        "mappings.t.source",
        "needs 'value'",
        id="constant_without_value",
    ),
    pytest.param(
        rich("t", {"type": "s3_object"}), "mappings.t.source.type", "", id="unknown_source_type"
    ),
    pytest.param(
        rich("t", {"type": "metadata", "key": "a"}, transform="titlecase"),
        "mappings.t.transform",
        "",
        id="unknown_transform",
    ),
    pytest.param(
        rich("t", {"type": "metadata", "key": "a"}, target_type="vector"),
        "mappings.t.target_type",
        "",
        id="unknown_target_type",
    ),
    pytest.param(
        {
            "field_mappings": {"product_name": {"source": "metadata.title"}},
            "mappings": {"product_name": {"source": {"type": "metadata", "key": "title"}}},
        },
        "schema_mapping",
        "mapped twice",
        id="same_target_in_both_forms",
    ),
    pytest.param(
        {"field_mappings": {"f": "metadata.title"}},
        "field_mappings.f",
        "",
        id="field_mapping_not_a_mapping",
    ),
    pytest.param(
        rich("t", {"type": "folder_path", "segment": 0, "index": 0}),
        "mappings.t.source",
        "not both",
        id="folder_segment_and_index",
    ),
    pytest.param(
        rich("t", {"type": "folder_path", "segment": 1, "full_path": True}),
        "mappings.t.source",
        "drop the segment",
        id="folder_full_path_with_segment",
    ),
    pytest.param(
        rich("t", {"type": "metadata", "key": "a", "default": "x"}),
        "mappings.t.source",
        "filename_regex",
        id="default_outside_filename_regex",
    ),
    pytest.param(
        rich("t", {"type": "filename_regex", "pattern": "x", "segment": 0}),
        "mappings.t.source",
        "folder_path",
        id="segment_outside_folder_path",
    ),
    pytest.param(
        rich("t", {"type": "folder_path", "depth": 2}),
        "mappings.t.source.depth",
        "",
        id="unknown_source_key",
    ),
    pytest.param(
        rich("t", {"type": "metadata", "key": "a"}, blob_type="video"),
        "mappings.t",
        "target_type: blob",
        id="blob_type_on_a_field_mapping",
    ),
    pytest.param(
        rich("t", {"type": "file"}, target_type="blob", blob_type="document"),
        "mappings.t.blob_type",
        "",
        id="unknown_blob_type",
    ),
    pytest.param(
        rich("t", {"type": "file"}, target_type="blob", mime_type_override="mp4"),
        "mappings.t",
        "not a mime type",
        id="bad_mime_type_override",
    ),
    pytest.param(
        rich("t", {"type": "file", "key": "foo.bar"}),
        "mappings.t.source",
        "foo.bar",
        id="file_key_bad_path",
    ),
]


@pytest.mark.parametrize(("schema", "where", "says"), BAD_SCHEMAS)
def test_bad_schema_fails_on_the_model(schema: dict[str, Any], where: str, says: str) -> None:
    with pytest.raises(ValidationError) as e:
        SchemaMapping.model_validate(schema)
    assert says.lower() in str(e.value).lower()


def _doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "connections": {"inbox": {"provider": "local", "root": "./data"}},
        "buckets": {"media": {"target": "local"}},
        "syncs": [
            {
                "name": "catalog",
                "bucket": "media",
                "connection_id": "inbox",
                "source_path": "incoming/",
                "schema_mapping": schema,
            }
        ],
    }


@pytest.mark.parametrize(("schema", "where", "says"), BAD_SCHEMAS)
def test_bad_schema_fails_at_load_naming_sync_and_field(
    tmp_path: Path, schema: dict[str, Any], where: str, says: str
) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(_doc(schema), source_file="syncs.yaml", base_dir=str(tmp_path))
    problems = e.value.problems
    assert problems, e.value
    full = "schema_mapping" if where == "schema_mapping" else f"schema_mapping.{where}"
    hits = [p for p in problems if p.sync == "catalog" and p.field.startswith(full)]
    assert hits, [str(p) for p in problems]
    assert any(says.lower() in (p.message + " " + p.fix).lower() for p in hits), [
        str(p) for p in hits
    ]
    assert "syncs.yaml" in str(e.value)


def test_good_schema_loads(tmp_path: Path) -> None:
    schema = {
        "field_mappings": {
            "product_name": {"source": "metadata.title"},
            "category": {"source": "metadata.tags[0]"},
        },
        "mappings": {
            "sku": {
                "source": {"type": "filename_regex", "pattern": r"^(SKU-\d+)", "group": 1},
                "required": True,
            },
            "video": {"target_type": "blob", "source": {"type": "file"}},
            "size": {"source": {"type": "file", "key": "size"}},
        },
    }
    cfg = parse_config(_doc(schema), source_file="syncs.yaml", base_dir=str(tmp_path))
    sm = cfg.sync("catalog").schema_mapping
    assert set(sm.field_mappings) == {"product_name", "category"}
    assert compile_mapping(sm)(ITEM) == Mapped(
        {"product_name": "Spring Hero", "category": "hero", "sku": "SKU-123", "size": 4096},
        (BlobSpec("video", ITEM.url or ""),),
    )


# ---------------------------------------------------------------- mapping_needs_metadata


@pytest.mark.parametrize(
    ("schema", "needs"),
    [
        pytest.param({}, False, id="empty"),
        pytest.param(fm(p="metadata.title"), True, id="field_mapping_metadata"),
        pytest.param(fm(p="metadata"), True, id="field_mapping_whole_metadata"),
        pytest.param(fm(n="name", s="size", m="mime_type"), False, id="field_mapping_roots_only"),
        pytest.param(
            {**fm(n="name"), **rich("t", {"type": "metadata", "key": "a"})},
            True,
            id="rich_metadata",
        ),
        pytest.param(rich("t", {"type": "tag", "key": "env"}), True, id="rich_tag"),
        pytest.param(rich("t", {"type": "filename_regex", "pattern": "x"}), False, id="rich_regex"),
        pytest.param(rich("t", {"type": "folder_path", "index": 0}), False, id="rich_folder"),
        pytest.param(rich("t", {"type": "constant", "value": 1}), False, id="rich_constant"),
        pytest.param(rich("t", {"type": "file"}), False, id="rich_file_url"),
        pytest.param(rich("t", {"type": "file", "key": "size"}), False, id="rich_file_size"),
        pytest.param(
            rich("t", {"type": "file", "key": "metadata.title"}),
            True,
            id="rich_file_key_metadata",
        ),
    ],
)
def test_mapping_needs_metadata(schema: dict[str, Any], needs: bool) -> None:
    assert mapping_needs_metadata(SchemaMapping.model_validate(schema)) is needs


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("name", ("name",)),
        ("metadata.title", ("metadata", "title")),
        ("metadata.tags[0]", ("metadata", "tags", 0)),
        ("metadata.tags[-1]", ("metadata", "tags", -1)),
        ("metadata.a.b[2][0]", ("metadata", "a", "b", 2, 0)),
        ("metadata.vidéo 日本", ("metadata", "vidéo 日本")),
    ],
)
def test_parse_path(path: str, steps: tuple[Any, ...]) -> None:
    assert parse_path(path) == steps


def test_resolve_missing_is_not_none() -> None:
    rec = {"metadata": {"a": None, "l": [1]}}
    assert resolve(rec, ("metadata", "a")) is None
    assert resolve(rec, ("metadata", "b")) is MISSING
    assert resolve(rec, ("metadata", "l", 1)) is MISSING
    assert resolve(rec, ("metadata", "l", -1)) == 1


def test_blob_mapping_carries_property_type_and_mime_type() -> None:
    schema = {
        "mappings": {
            "poster": {
                "target_type": "blob",
                "source": {"type": "metadata", "key": "poster_url"},
                "blob_type": "image",
                "mime_type_override": "image/jpeg",
            },
            "main": {
                "target_type": "blob",
                "source": {"type": "file"},
                "blob_property": "content",
                "blob_type": "video",
            },
            "absent": {"target_type": "blob", "source": {"type": "metadata", "key": "nope"}},
        }
    }
    item = replace(ITEM, metadata={"poster_url": "https://x/p.jpg"})
    out = compile_mapping(SchemaMapping.model_validate(schema))(item)
    assert out.fields == {}
    assert out.blobs == (
        BlobSpec("poster", "https://x/p.jpg", blob_type="image", mime_type_override="image/jpeg"),
        BlobSpec("content", ITEM.url or "", blob_type="video"),
    )
