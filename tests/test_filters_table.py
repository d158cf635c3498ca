"""File filters, table-driven: every case is (FileFilters dict, FileItem) -> expected Verdict.

Filters are built with `FileFilters.model_validate({...})`, exactly as a syncs.yaml section is
parsed, so config normalisation (extensions, time zones, MIME patterns) is exercised too. Each
rejection also names the filter that rejected the file (Verdict.filter), and for a few cases
the reason must show the compared values.

The spec lives in the feature page (/work/shared/seed/syncs-feature-page.txt) and in the
docstring of `mixsync_dagster.core.filters.normalize_pattern`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from mixsync_dagster.config import FileFilters
from mixsync_dagster.core.filters import (
    ACCEPT,
    Verdict,
    compile_filters,
    literal_prefix,
    normalize_pattern,
)
from mixsync_dagster.core.records import FileItem

# ---------------------------------------------------------------- helpers

T0 = datetime(2025, 1, 1, tzinfo=UTC)
"""The feature page's modified_after."""
LATER = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))
GIB5 = 5368709120


def item(
    rel_path: str = "clip.mp4",
    *,
    size: int = 10_000,
    modified_at: datetime = LATER,
    content_type: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> FileItem:
    return FileItem(
        key="src/" + rel_path,
        rel_path=rel_path,
        size=size,
        modified_at=modified_at,
        fingerprint=f"{size}-{modified_at.timestamp()}",
        content_type=content_type,
        metadata=metadata if metadata is not None else {},
    )


def case(
    id: str,
    filters: dict[str, Any],
    it: FileItem,
    ok: bool,
    rejected_by: str | None = None,
    *reason_has: str,
    xfail: str | None = None,
) -> Any:
    assert ok == (rejected_by is None), f"{id}: give rejected_by exactly for rejections"
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(filters, it, ok, rejected_by, reason_has, id=id, marks=marks)


# ---------------------------------------------------------------- the feature page's examples

PAGE = {
    "include_patterns": ["*.mp4", "*.mov", "*.webm"],
    "exclude_patterns": ["*/drafts/*", "*_temp.*"],
    "min_size_bytes": 1024,
    "max_size_bytes": 5368709120,
    "modified_after": "2025-01-01T00:00:00Z",
    "mime_types": ["video/mp4", "video/quicktime"],
}
PAGE_META = {
    "metadata_filters": [
        {"field": "status", "operator": "equals", "value": "approved"},
        {"field": "tags", "operator": "contains", "value": "hero"},
    ]
}

PAGE_CASES = [
    case("page/mp4_at_root", PAGE, item("launch.mp4"), True),
    case("page/mov_nested", PAGE, item("campaigns/spring/hero.mov"), True),
    case("page/mov_mime_guessed_from_extension", PAGE, item("a/b.mov"), True),
    # .webm passes the patterns but its MIME type is not in the list: filters are AND-ed
    case("page/webm_not_in_mime_list", PAGE, item("promo.webm"), False, "mime_types", "webm"),
    case("page/mkv_rejected_by_mime_first", PAGE, item("a.mkv"), False, "mime_types"),
    case(
        "page/txt_labelled_video_fails_include",
        PAGE,
        item("notes.txt", content_type="video/mp4"),
        False,
        "include_patterns",
        "notes.txt",
    ),
    case(
        "page/upper_MP4_case_sensitive_default",
        PAGE,
        item("CLIP.MP4"),
        False,
        "include_patterns",
    ),
    case("page/drafts_at_root", PAGE, item("drafts/cut.mp4"), False, "exclude_patterns", "drafts"),
    case("page/drafts_one_deep", PAGE, item("2025/drafts/cut.mp4"), False, "exclude_patterns"),
    case(
        "page/drafts_deep_and_below",
        PAGE,
        item("x/y/drafts/sub/a.mp4"),
        False,
        "exclude_patterns",
        "*/drafts/*",
    ),
    case("page/drafts_is_a_file_name", PAGE, item("drafts.mp4"), True),
    case("page/mydrafts_folder_not_drafts", PAGE, item("x/mydrafts/a.mp4"), True),
    case("page/drafts_in_file_name_only", PAGE, item("x/drafts_v2.mp4"), True),
    case("page/temp_at_root", PAGE, item("clip_temp.mp4"), False, "exclude_patterns", "*_temp.*"),
    case("page/temp_nested", PAGE, item("a/b/clip_temp.mov"), False, "exclude_patterns"),
    case("page/temporary_is_not_temp", PAGE, item("clip_temporary.mp4"), True),
    case("page/size_min_minus_1", PAGE, item(size=1023), False, "min_size_bytes", "1023", "1024"),
    case("page/size_min_exact", PAGE, item(size=1024), True),
    case("page/size_zero_bytes", PAGE, item(size=0), False, "min_size_bytes", "0"),
    case("page/size_max_exact", PAGE, item(size=GIB5), True),
    case(
        "page/size_max_plus_1",
        PAGE,
        item(size=GIB5 + 1),
        False,
        "max_size_bytes",
        str(GIB5 + 1),
        str(GIB5),
    ),
    case(
        "page/time_exactly_at_modified_after",
        PAGE,
        item(modified_at=T0),
        False,
        "modified_after",
        T0.isoformat(),
    ),
    case("page/time_1us_after", PAGE, item(modified_at=T0 + US), True),
    case("page/time_1us_before", PAGE, item(modified_at=T0 - US), False, "modified_after"),
    case(
        "page/time_same_instant_in_+05:30",
        PAGE,
        item(modified_at=datetime(2025, 1, 1, 5, 30, tzinfo=IST)),
        False,
        "modified_after",
    ),
    case(
        "page/time_later_instant_in_-08:00",
        PAGE,
        # 2024-12-31T16:00:01-08:00 is 2025-01-01T00:00:01Z
        item(modified_at=datetime(2024, 12, 31, 16, 0, 1, tzinfo=PST)),
        True,
    ),
    case(
        "page/meta_approved_hero",
        PAGE_META,
        item(metadata={"status": "approved", "tags": ["hero", "b-roll"]}),
        True,
    ),
    case(
        "page/meta_status_draft",
        PAGE_META,
        item(metadata={"status": "draft", "tags": ["hero"]}),
        False,
        "metadata_filters[status equals]",
        "'draft'",
        "'approved'",
    ),
    case(
        "page/meta_tags_without_hero",
        PAGE_META,
        item(metadata={"status": "approved", "tags": ["b-roll"]}),
        False,
        "metadata_filters[tags contains]",
        "'hero'",
    ),
    case(
        "page/meta_no_metadata",
        PAGE_META,
        item(metadata={}),
        False,
        "metadata_filters[status equals]",
        "missing",
    ),
    case(
        "page/meta_tags_as_text",
        PAGE_META,
        item(metadata={"status": "approved", "tags": "hero,b-roll"}),
        True,
    ),
    case(
        "page/both_sections_together",
        {**PAGE, **PAGE_META},
        item("2025/hero.mp4", metadata={"status": "approved", "tags": ["hero"]}),
        True,
    ),
]

# ---------------------------------------------------------------- patterns

MP4 = {"include_patterns": ["*.mp4"]}

PATTERN_CASES = [
    # empty filters accept everything
    case("empty/anything", {}, item("x/y/.z/whatever.bin", size=0, modified_at=T0), True),
    case("empty/no_ext_no_metadata", {}, item("README", size=1), True),
    case("empty_lists/accept", {"include_patterns": [], "exclude_patterns": []}, item(), True),
    # a name pattern matches at any depth
    case("name/root", MP4, item("a.mp4"), True),
    case("name/deep", MP4, item("a/b/c.mp4"), True),
    case("name/other_ext", MP4, item("a/b/c.mov"), False, "include_patterns", "a/b/c.mov"),
    case("name/ext_is_suffix_only", MP4, item("a.mp4.part"), False, "include_patterns"),
    case("name/hidden_file", MP4, item(".hidden.mp4"), True),
    case("name/hidden_folder", MP4, item(".cache/x/a.mp4"), True),
    # unicode and spaces
    case("unicode/name", MP4, item("vidéo 日本.mp4"), True),
    case("unicode/folder", MP4, item("フォルダ/vidéo 日本.mp4"), True),
    case(
        "unicode/in_pattern", {"include_patterns": ["vidéo*.mp4"]}, item("x/vidéo 日本.mp4"), True
    ),
    case(
        "unicode/in_pattern_miss",
        {"include_patterns": ["vidéo*.mp4"]},
        item("x/video 日本.mp4"),
        False,
        "include_patterns",
    ),
    case(
        "spaces/folder_pattern",
        {"include_patterns": ["my folder/*.mp4"]},
        item("my folder/a b.mp4"),
        True,
    ),
    case(
        "spaces/exclude_copy",
        {"exclude_patterns": ["* copy.*"]},
        item("shoot/clip copy.mp4"),
        False,
        "exclude_patterns",
    ),
    # `*` never crosses `/`
    case("star/one_level", {"include_patterns": ["clips/*.mp4"]}, item("clips/a.mp4"), True),
    case(
        "star/not_two_levels",
        {"include_patterns": ["clips/*.mp4"]},
        item("clips/sub/a.mp4"),
        False,
        "include_patterns",
    ),
    case(
        "star/clips_is_anchored",
        {"include_patterns": ["clips/*.mp4"]},
        item("x/clips/a.mp4"),
        False,
        "include_patterns",
    ),
    # `**` at the start, in the middle, at the end
    case(
        "globstar/start_zero_dirs", {"include_patterns": ["**/raw/*.mp4"]}, item("raw/a.mp4"), True
    ),
    case(
        "globstar/start_deep", {"include_patterns": ["**/raw/*.mp4"]}, item("x/y/raw/a.mp4"), True
    ),
    case(
        "globstar/start_star_stays_in_folder",
        {"include_patterns": ["**/raw/*.mp4"]},
        item("x/raw/sub/a.mp4"),
        False,
        "include_patterns",
    ),
    case(
        "globstar/middle_zero_dirs",
        {"include_patterns": ["2025/**/final.mp4"]},
        item("2025/final.mp4"),
        True,
    ),
    case(
        "globstar/middle_deep",
        {"include_patterns": ["2025/**/final.mp4"]},
        item("2025/a/b/final.mp4"),
        True,
    ),
    case(
        "globstar/middle_wrong_root",
        {"include_patterns": ["2025/**/final.mp4"]},
        item("2024/a/final.mp4"),
        False,
        "include_patterns",
    ),
    case("globstar/end_deep", {"include_patterns": ["2025/**"]}, item("2025/q1/w2/a.mp4"), True),
    case(
        "globstar/end_other_folder",
        {"include_patterns": ["2025/**"]},
        item("2026/a.mp4"),
        False,
        "include_patterns",
    ),
    case(
        "globstar/end_similar_folder_name",
        {"include_patterns": ["2025/**"]},
        item("20251/a.mp4"),
        False,
        "include_patterns",
    ),
    # `?`
    case("qmark/one_char", {"include_patterns": ["clip?.mp4"]}, item("clip1.mp4"), True),
    case("qmark/any_depth", {"include_patterns": ["clip?.mp4"]}, item("x/clip1.mp4"), True),
    case(
        "qmark/two_chars",
        {"include_patterns": ["clip?.mp4"]},
        item("clip12.mp4"),
        False,
        "include_patterns",
    ),
    case(
        "qmark/zero_chars",
        {"include_patterns": ["clip?.mp4"]},
        item("clip.mp4"),
        False,
        "include_patterns",
    ),
    case(
        "qmark/not_a_slash",
        {"include_patterns": ["a?b/*.mp4"]},
        item("a/b/c.mp4"),
        False,
        "include_patterns",
    ),
    # character classes
    case("class/range_hit", {"include_patterns": ["take[0-9].mp4"]}, item("take3.mp4"), True),
    case(
        "class/range_miss",
        {"include_patterns": ["take[0-9].mp4"]},
        item("takeX.mp4"),
        False,
        "include_patterns",
    ),
    case("class/set_hit", {"include_patterns": ["[abc]*.mov"]}, item("d/b-roll.mov"), True),
    case(
        "class/negated_miss",
        {"include_patterns": ["[!a]*.mp4"]},
        item("a.mp4"),
        False,
        "include_patterns",
    ),
    case("class/negated_hit", {"include_patterns": ["[!a]*.mp4"]}, item("b.mp4"), True),
    # braces
    case("brace/ext_hit", {"include_patterns": ["*.{mp4,mov}"]}, item("x/a.mov"), True),
    case(
        "brace/ext_miss",
        {"include_patterns": ["*.{mp4,mov}"]},
        item("a.webm"),
        False,
        "include_patterns",
    ),
    case(
        "brace/folder_hit", {"include_patterns": ["{raw,final}/*.mp4"]}, item("final/a.mp4"), True
    ),
    case(
        "brace/folder_miss",
        {"include_patterns": ["{raw,final}/*.mp4"]},
        item("other/a.mp4"),
        False,
        "include_patterns",
    ),
    # a leading `/` anchors at source_path
    case("anchored/root_hit", {"include_patterns": ["/*.mp4"]}, item("a.mp4"), True),
    case(
        "anchored/nested_miss",
        {"include_patterns": ["/*.mp4"]},
        item("x/a.mp4"),
        False,
        "include_patterns",
    ),
    case(
        "anchored/folder_exclude_root",
        {"exclude_patterns": ["/drafts/"]},
        item("drafts/a.mp4"),
        False,
        "exclude_patterns",
    ),
    case(
        "anchored/folder_exclude_nested_kept",
        {"exclude_patterns": ["/drafts/"]},
        item("x/drafts/a.mp4"),
        True,
    ),
    # a trailing `/` is that folder at any depth and everything below
    case(
        "folder/root",
        {"exclude_patterns": ["drafts/"]},
        item("drafts/a.mp4"),
        False,
        "exclude_patterns",
    ),
    case(
        "folder/deep_and_below",
        {"exclude_patterns": ["drafts/"]},
        item("x/y/drafts/sub/a.mp4"),
        False,
        "exclude_patterns",
    ),
    case(
        "folder/file_named_like_folder", {"exclude_patterns": ["drafts/"]}, item("x/drafts"), True
    ),
    case("folder/prefix_of_name", {"exclude_patterns": ["drafts/"]}, item("drafts.mp4"), True),
    case(
        "folder/suffix_of_folder", {"exclude_patterns": ["drafts/"]}, item("olddrafts/a.mp4"), True
    ),
    # a leading `*/` means any depth including none, also combined with a trailing `/`
    case(
        "star_folder_slash/one_deep",
        {"exclude_patterns": ["*/drafts/"]},
        item("x/drafts/a.mp4"),
        False,
        "exclude_patterns",
    ),
    case(
        "star_folder_slash/at_root",
        {"exclude_patterns": ["*/drafts/"]},
        item("drafts/a.mp4"),
        False,
        "exclude_patterns",
    ),
    case(
        "star_folder_slash/two_deep",
        {"exclude_patterns": ["*/drafts/"]},
        item("x/y/drafts/a.mp4"),
        False,
        "exclude_patterns",
    ),
    # case sensitivity
    case(
        "case/sensitive_default_miss",
        {"include_patterns": ["*.MP4"]},
        item("a.mp4"),
        False,
        "include_patterns",
    ),
    case(
        "case/sensitive_explicit_miss",
        {"include_patterns": ["Raw/*.mp4"], "case_sensitive": True},
        item("raw/a.mp4"),
        False,
        "include_patterns",
    ),
    case(
        "case/insensitive_hit",
        {"include_patterns": ["*.MP4"], "case_sensitive": False},
        item("x/a.mp4"),
        True,
    ),
    case(
        "case/insensitive_folder_hit",
        {"include_patterns": ["Raw/*.mp4"], "case_sensitive": False},
        item("RAW/a.MP4"),
        True,
    ),
    case(
        "case/insensitive_exclude",
        {"exclude_patterns": ["*/DRAFTS/*"], "case_sensitive": False},
        item("x/drafts/a.mp4"),
        False,
        "exclude_patterns",
    ),
    case(
        "case/sensitive_exclude_misses",
        {"exclude_patterns": ["*/DRAFTS/*"]},
        item("x/drafts/a.mp4"),
        True,
    ),
    # exclude wins over include
    case(
        "exclude_wins/same_pattern",
        {"include_patterns": ["*.mp4"], "exclude_patterns": ["*.mp4"]},
        item("a.mp4"),
        False,
        "exclude_patterns",
        "*.mp4",
    ),
    case(
        "exclude_wins/temp_in_included_folder",
        {"include_patterns": ["raw/**"], "exclude_patterns": ["*_temp.*"]},
        item("raw/a/clip_temp.mp4"),
        False,
        "exclude_patterns",
        "*_temp.*",
    ),
    case(
        "exclude_wins/names_the_matching_pattern",
        {"exclude_patterns": ["*.mov", "*/drafts/*"]},
        item("drafts/a.mp4"),
        False,
        "exclude_patterns",
        "'*/drafts/*'",
    ),
    case(
        "exclude_only/others_kept",
        {"exclude_patterns": ["*.tmp"]},
        item("a/b.mp4"),
        True,
    ),
]

# ---------------------------------------------------------------- extensions, MIME types

EXT = {"extensions": ["mp4", ".MOV"]}
VIDEO_FAMILY = {"mime_types": ["video/*"]}

EXT_MIME_CASES = [
    case("ext/no_dot_in_config", EXT, item("a.mp4"), True),
    case("ext/upper_file_name", EXT, item("x/A.MP4"), True),
    case("ext/upper_in_config", EXT, item("b.mov"), True),
    case("ext/miss", EXT, item("c.webm"), False, "extensions", "c.webm"),
    case("ext/bare_name_is_not_ext", EXT, item("mp4"), False, "extensions"),
    case("ext/double_ext", EXT, item("a.mp4.part"), False, "extensions"),
    case("ext/unicode_name", EXT, item("vidéo 日本.MOV"), True),
    case(
        "mime/content_type_exact",
        {"mime_types": ["video/mp4"]},
        item("a.bin", content_type="video/mp4"),
        True,
    ),
    case(
        "mime/content_type_params_and_case",
        {"mime_types": ["video/mp4"]},
        item("a", content_type="Video/MP4; charset=utf-8"),
        True,
    ),
    case(
        "mime/config_upper_case",
        {"mime_types": ["VIDEO/QuickTime"]},
        item("a.mov", content_type="video/quicktime"),
        True,
    ),
    case(
        "mime/content_type_beats_extension",
        {"mime_types": ["video/mp4"]},
        item("a.mp4", content_type="application/octet-stream"),
        False,
        "mime_types",
        "application/octet-stream",
    ),
    case("mime/guessed_from_ext", {"mime_types": ["video/quicktime"]}, item("x/a.MOV"), True),
    case(
        "mime/guessed_miss",
        {"mime_types": ["video/quicktime"]},
        item("a.mp4"),
        False,
        "mime_types",
        "video/mp4",
    ),
    case(
        "mime/unknown_type",
        {"mime_types": ["video/mp4"]},
        item("noext"),
        False,
        "mime_types",
        "unknown",
    ),
    case("mime/family_guessed", VIDEO_FAMILY, item("a.webm"), True),
    case("mime/family_content_type", VIDEO_FAMILY, item("a", content_type="video/x-custom"), True),
    case("mime/family_miss", VIDEO_FAMILY, item("a.jpg"), False, "mime_types", "image/jpeg"),
    case(
        "mime/family_is_not_prefix_of_type_name",
        VIDEO_FAMILY,
        item("a", content_type="videox/mp4"),
        False,
        "mime_types",
    ),
    case(
        "mime/exact_and_family_mixed",
        {"mime_types": ["image/*", "video/mp4"]},
        item("a.png"),
        True,
    ),
]

# ---------------------------------------------------------------- sizes and times

SIZE = {"min_size_bytes": 100, "max_size_bytes": 200}
BEFORE = {"modified_before": "2025-06-01T00:00:00Z"}
T_BEFORE = datetime(2025, 6, 1, tzinfo=UTC)
AFTER_IST = {"modified_after": "2025-01-01T05:30:00+05:30"}

SIZE_TIME_CASES = [
    case("size/min_minus_1", SIZE, item(size=99), False, "min_size_bytes", "99", "100"),
    case("size/min", SIZE, item(size=100), True),
    case("size/max", SIZE, item(size=200), True),
    case("size/max_plus_1", SIZE, item(size=201), False, "max_size_bytes", "201", "200"),
    case("size/zero_min_zero", {"min_size_bytes": 0}, item(size=0), True),
    case("size/zero_max_zero", {"max_size_bytes": 0}, item(size=0), True),
    case("size/one_max_zero", {"max_size_bytes": 0}, item(size=1), False, "max_size_bytes"),
    case("before/exactly_at", BEFORE, item(modified_at=T_BEFORE), False, "modified_before"),
    case("before/1us_before", BEFORE, item(modified_at=T_BEFORE - US), True),
    case("before/1us_after", BEFORE, item(modified_at=T_BEFORE + US), False, "modified_before"),
    case(
        "before/same_instant_+05:30",
        BEFORE,
        item(modified_at=datetime(2025, 6, 1, 5, 30, tzinfo=IST)),
        False,
        "modified_before",
    ),
    case(
        "before/earlier_instant_-08:00",
        BEFORE,
        item(modified_at=datetime(2025, 5, 31, 15, 59, 59, tzinfo=PST)),
        True,
    ),
    case("after_ist/same_instant_utc", AFTER_IST, item(modified_at=T0), False, "modified_after"),
    case("after_ist/1us_later_utc", AFTER_IST, item(modified_at=T0 + US), True),
    case(
        "window/inside",
        {"modified_after": "2025-01-01T00:00:00Z", **BEFORE},
        item(modified_at=datetime(2025, 3, 1, tzinfo=UTC)),
        True,
    ),
]

# ---------------------------------------------------------------- order: first rejecting filter

ORDER_CASES = [
    case(
        "order/extensions_first",
        {"extensions": [".mov"], "min_size_bytes": 10, **PAGE},
        item("a.mp4", size=1, modified_at=T0),
        False,
        "extensions",
    ),
    case(
        "order/min_before_max_and_time",
        {"min_size_bytes": 10, "modified_after": "2025-01-01T00:00:00Z", "mime_types": ["x/y"]},
        item(size=1, modified_at=T0),
        False,
        "min_size_bytes",
    ),
    case(
        "order/max_before_time",
        {"max_size_bytes": 10, "modified_after": "2025-01-01T00:00:00Z"},
        item(size=11, modified_at=T0),
        False,
        "max_size_bytes",
    ),
    case(
        "order/after_before_before",
        {"modified_after": "2025-01-01T00:00:00Z", "modified_before": "2024-01-01T00:00:00Z"},
        item(modified_at=T0),
        False,
        "modified_after",
    ),
    case(
        "order/before_before_mime",
        {"modified_before": "2025-01-01T00:00:00Z", "mime_types": ["image/*"]},
        item("a.mp4", modified_at=LATER),
        False,
        "modified_before",
    ),
    case(
        "order/mime_before_include",
        {"mime_types": ["image/*"], "include_patterns": ["*.png"]},
        item("a.mp4"),
        False,
        "mime_types",
    ),
    case(
        "order/include_before_exclude",
        {"include_patterns": ["*.mov"], "exclude_patterns": ["*.mp4"]},
        item("a.mp4"),
        False,
        "include_patterns",
    ),
    case(
        "order/exclude_before_metadata",
        {"exclude_patterns": ["*.mp4"], **PAGE_META},
        item("a.mp4"),
        False,
        "exclude_patterns",
    ),
    case(
        "order/first_metadata_filter_named",
        {
            "metadata_filters": [
                {"field": "a", "operator": "exists"},
                {"field": "b", "operator": "exists"},
            ]
        },
        item(metadata={}),
        False,
        "metadata_filters[a exists]",
    ),
    case(
        "order/second_metadata_filter_named",
        {
            "metadata_filters": [
                {"field": "a", "operator": "exists"},
                {"field": "b", "operator": "exists"},
            ]
        },
        item(metadata={"a": 1}),
        False,
        "metadata_filters[b exists]",
    ),
]

# ---------------------------------------------------------------- metadata operators

META = {
    "status": "approved",
    "count": 10,
    "count_s": "10",
    "price": 9.5,
    "title": "Hero cut",
    "tags": ["hero", "b-roll"],
    "ids": [1, 2, 3],
    "published": "2025-03-01T05:30:00+05:30",  # = 2025-03-01T00:00:00Z
    "nothing": None,
    "dims": {"w": 1920, "h": 1080},
    "meta": {"title": "Spring", "rating": 4, "nested": {"deep": "x"}},
}


def mf(field: str, operator: str, value: Any = ..., **more: Any) -> dict[str, Any]:
    f: dict[str, Any] = {"field": field, "operator": operator}
    if value is not ...:
        f["value"] = value
    return {"metadata_filters": [f], **more}


def mcase(id: str, flt: dict[str, Any], ok: bool, *reason_has: str, metadata: Any = None) -> Any:
    label = None
    if not ok:
        f = flt["metadata_filters"][0]
        label = f"metadata_filters[{f['field']} {f['operator']}]"
    return case(
        "meta/" + id,
        flt,
        item(metadata=META if metadata is None else metadata),
        ok,
        label,
        *reason_has,
    )


METADATA_CASES = [
    # equals
    mcase("equals/hit", mf("status", "equals", "approved"), True),
    mcase("equals/miss", mf("status", "equals", "draft"), False, "'approved'", "'draft'"),
    mcase("equals/case_matters", mf("status", "equals", "Approved"), False),
    mcase("equals/number", mf("count", "equals", 10), True),
    mcase("equals/numeric_string_vs_number", mf("count_s", "equals", 10), True),
    mcase("equals/missing", mf("absent", "equals", "x"), False, "missing"),
    mcase("equals/nested", mf("meta.title", "equals", "Spring"), True),
    mcase("equals/nested_deep", mf("meta.nested.deep", "equals", "x"), True),
    mcase("equals/list", mf("tags", "equals", ["hero", "b-roll"]), True),
    mcase(
        "equals/same_instant_other_zone", mf("published", "equals", "2025-03-01T00:00:00Z"), True
    ),
    # not_equals
    mcase("not_equals/hit", mf("status", "not_equals", "draft"), True),
    mcase("not_equals/miss", mf("status", "not_equals", "approved"), False, "'approved'"),
    mcase("not_equals/missing_accepts", mf("absent", "not_equals", "x"), True),
    mcase("not_equals/nested_missing_accepts", mf("meta.absent", "not_equals", "x"), True),
    mcase("not_equals/numeric_coerced", mf("count_s", "not_equals", 10), False),
    # contains
    mcase("contains/substring_hit", mf("title", "contains", "cut"), True),
    mcase("contains/substring_miss", mf("title", "contains", "trailer"), False, "'trailer'"),
    mcase("contains/list_hit", mf("tags", "contains", "hero"), True),
    mcase("contains/list_miss", mf("tags", "contains", "villain"), False, "'villain'"),
    mcase("contains/list_is_membership_not_substring", mf("tags", "contains", "her"), False),
    mcase("contains/list_of_numbers", mf("ids", "contains", 2), True),
    mcase("contains/missing", mf("absent", "contains", "x"), False, "missing"),
    mcase("contains/number_cannot_contain", mf("count", "contains", 1), False, "10"),
    mcase("contains/nested_text", mf("meta.title", "contains", "ring"), True),
    # not_contains
    mcase("not_contains/list_hit", mf("tags", "not_contains", "villain"), True),
    mcase("not_contains/list_miss", mf("tags", "not_contains", "hero"), False, "'hero'"),
    mcase("not_contains/substring_present", mf("title", "not_contains", "Hero"), False),
    mcase("not_contains/substring_absent", mf("title", "not_contains", "trailer"), True),
    mcase("not_contains/missing_accepts", mf("absent", "not_contains", "x"), True),
    mcase("not_contains/number_rejects", mf("count", "not_contains", 1), False),
    # gt / lt / gte / lte: numbers
    mcase("gt/number_hit", mf("count", "gt", 9), True),
    mcase("gt/number_equal", mf("count", "gt", 10), False, "10"),
    mcase("gt/numeric_string_coerces", mf("count_s", "gt", 9), True),
    mcase("gt/both_numeric_strings", mf("count_s", "gt", "9"), True),
    mcase("lt/float_hit", mf("price", "lt", 10), True),
    mcase("lt/float_equal", mf("price", "lt", 9.5), False, "9.5"),
    mcase("gte/equal", mf("count", "gte", 10), True),
    mcase("gte/below", mf("count", "gte", 11), False),
    mcase("lte/equal", mf("count", "lte", 10), True),
    mcase("lte/above", mf("count", "lte", 9), False, "10", "9"),
    mcase("gte/nested", mf("meta.rating", "gte", 4), True),
    mcase("lt/nested_miss", mf("meta.rating", "lt", 4), False),
    # times
    mcase("gt/time_earlier_instant", mf("published", "gt", "2025-02-28T23:59:59Z"), True),
    mcase("gt/time_same_instant", mf("published", "gt", "2025-03-01T00:00:00Z"), False),
    mcase("gte/time_same_instant", mf("published", "gte", "2025-03-01T00:00:00Z"), True),
    mcase("lt/time_1s_later", mf("published", "lt", "2025-03-01T00:00:01Z"), True),
    mcase("lte/time_other_zone", mf("published", "lte", "2025-02-28T16:00:00-08:00"), True),
    # plain strings compare lexically
    mcase("gt/lexical_hit", mf("title", "gt", "Apple"), True),
    mcase("lt/lexical_miss", mf("title", "lt", "Apple"), False),
    # type mismatches: a rejection with a reason, never an exception
    mcase("gt/dict_vs_number", mf("dims", "gt", 5), False, "cannot compare", "1920"),
    mcase("lt/text_vs_number", mf("title", "lt", 5), False, "cannot compare"),
    mcase("gte/list_vs_number", mf("tags", "gte", 1), False, "cannot compare"),
    mcase("lte/null_vs_number", mf("nothing", "lte", 1), False, "None"),
    # missing
    mcase("gt/missing", mf("absent", "gt", 1), False, "missing"),
    mcase("lte/missing", mf("absent", "lte", 1), False, "missing"),
    mcase("gte/through_text_is_missing", mf("title.x", "gte", 1), False, "missing"),
    # exists
    mcase("exists/present", mf("status", "exists"), True),
    mcase("exists/present_explicit_true", mf("status", "exists", True), True),
    mcase("exists/present_falsy_value", mf("count", "exists"), True, metadata={"count": 0}),
    mcase("exists/missing", mf("absent", "exists"), False, "missing"),
    mcase("exists/null_is_not_present", mf("nothing", "exists"), False, "None"),
    mcase("exists/nested_present", mf("meta.nested.deep", "exists"), True),
    mcase("exists/nested_missing", mf("meta.nested.nope", "exists"), False),
    mcase("exists_false/missing_accepts", mf("absent", "exists", False), True),
    mcase("exists_false/present_rejects", mf("status", "exists", False), False, "'approved'"),
    mcase("exists_false/null_accepts", mf("nothing", "exists", False), True),
    mcase("exists/empty_metadata", mf("status", "exists"), False, metadata={}),
]

ALL_CASES = [
    *PAGE_CASES,
    *PATTERN_CASES,
    *EXT_MIME_CASES,
    *SIZE_TIME_CASES,
    *ORDER_CASES,
    *METADATA_CASES,
]


@pytest.mark.parametrize(("filters", "it", "ok", "rejected_by", "reason_has"), ALL_CASES)
def test_filter_table(
    filters: dict[str, Any],
    it: FileItem,
    ok: bool,
    rejected_by: str | None,
    reason_has: tuple[str, ...],
) -> None:
    compiled = compile_filters(FileFilters.model_validate(filters))
    v = compiled(it)
    assert isinstance(v, Verdict)
    assert v.ok is ok, f"expected ok={ok}, got {v}"
    if ok:
        assert v.filter is None
        return
    assert v.filter == rejected_by, v
    assert v.reason, v
    for part in reason_has:
        assert part in v.reason, f"{part!r} not in reason {v.reason!r}"


def test_table_is_big_enough() -> None:
    assert len(ALL_CASES) >= 70
    ids = [p.id for p in ALL_CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"


# ---------------------------------------------------------------- cheap vs metadata split


def test_cheap_and_metadata_checks_are_split() -> None:
    compiled = compile_filters(FileFilters.model_validate({**PAGE, **PAGE_META}))
    assert compiled.needs_metadata is True
    draft = item("a.mp4", metadata={"status": "draft", "tags": ["hero"]})
    assert compiled.cheap(draft) == ACCEPT
    v = compiled.metadata(draft)
    assert (v.ok, v.filter) == (False, "metadata_filters[status equals]")
    # cheap checks never look at metadata; metadata checks never look at the file's name
    small = item("a.mp4", size=1, metadata={"status": "approved", "tags": ["hero"]})
    assert compiled.metadata(small) == ACCEPT
    assert compiled(small).filter == "min_size_bytes"


@pytest.mark.parametrize(
    ("filters", "needs"),
    [
        ({}, False),
        (PAGE, False),
        (PAGE_META, True),
        (mf("x", "exists"), True),
    ],
    ids=["empty", "page_file_filters", "page_metadata_filters", "exists_only"],
)
def test_needs_metadata(filters: dict[str, Any], needs: bool) -> None:
    compiled = compile_filters(FileFilters.model_validate(filters))
    assert compiled.needs_metadata is needs
    if not needs:
        assert compiled.metadata(item()) == ACCEPT


def test_extensions_are_normalised_by_config() -> None:
    f = FileFilters.model_validate({"extensions": ["mp4", ".MOV", " Webm "]})
    assert f.extensions == [".mp4", ".mov", ".webm"]


# ---------------------------------------------------------------- normalize_pattern


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        pytest.param("*.mp4", "**/*.mp4", id="name_any_depth"),
        pytest.param("*_temp.*", "**/*_temp.*", id="name_with_two_stars"),
        pytest.param("/*.mp4", "*.mp4", id="anchored_name"),
        pytest.param("*/drafts/*", "**/drafts/**", id="star_folder_star"),
        pytest.param("drafts/", "**/drafts/**", id="trailing_slash"),
        pytest.param("/drafts/", "drafts/**", id="anchored_trailing_slash"),
        pytest.param("a/b/", "a/b/**", id="two_segment_trailing_slash"),
        pytest.param("2025/q1/*.mp4", "2025/q1/*.mp4", id="path_kept"),
        pytest.param("2025/**", "2025/**", id="globstar_end_kept"),
        pytest.param("**/raw/*.mp4", "**/raw/*.mp4", id="globstar_start_kept"),
        pytest.param("clips/*", "clips/**", id="trailing_star_is_everything_below"),
        pytest.param("  *.mov  ", "**/*.mov", id="surrounding_space_stripped"),
        pytest.param("/2025/q1/*", "2025/q1/**", id="anchored_trailing_star"),
        pytest.param(
            "*/drafts/",
            "**/drafts/**",
            id="star_folder_trailing_slash",
        ),
    ],
)
def test_normalize_pattern(pattern: str, expected: str) -> None:
    assert normalize_pattern(pattern) == expected


# ---------------------------------------------------------------- literal_prefix


@pytest.mark.parametrize(
    ("patterns", "case_sensitive", "expected"),
    [
        pytest.param(["2025/q1/*.mp4", "2025/q2/**"], True, "2025/", id="common_parent"),
        pytest.param(["2025/q1/*.mp4"], True, "2025/q1/", id="single"),
        pytest.param(["2025/q1/*.mp4", "2025/q10/*.mp4"], True, "2025/", id="no_partial_segment"),
        pytest.param(["2025/q1/", "2025/q1/sub/*.mp4"], True, "2025/q1/", id="folder_and_deeper"),
        pytest.param(["*.mp4"], True, "", id="name_pattern"),
        pytest.param(["drafts/"], True, "", id="folder_any_depth"),
        pytest.param(["/footage/"], True, "footage/", id="anchored_folder"),
        pytest.param(["2025/q1/*.mp4", "*.mov"], True, "", id="one_name_pattern_spoils_it"),
        pytest.param([], True, "", id="empty"),
        pytest.param(["2025/q1/*.mp4"], False, "", id="case_insensitive"),
        pytest.param(["/2025/*.mp4"], True, "2025/", id="anchored"),
        pytest.param(["a/b/c.mp4"], True, "a/b/", id="literal_file"),
        pytest.param(["{a,b}/x.mp4"], True, "", id="brace_first"),
        pytest.param(["raw/take[0-9]/*.mp4"], True, "raw/", id="class_in_second_segment"),
        pytest.param(["raw/t?/*.mp4"], True, "raw/", id="qmark_in_second_segment"),
    ],
)
def test_literal_prefix(patterns: list[str], case_sensitive: bool, expected: str) -> None:
    assert literal_prefix(patterns, case_sensitive) == expected


@pytest.mark.parametrize(
    ("patterns", "path"),
    [
        (["2025/q1/*.mp4", "2025/q2/**"], "2025/q2/x/y.mp4"),
        (["/footage/"], "footage/a/b.mov"),
        (["raw/take[0-9]/*.mp4"], "raw/take1/a.mp4"),
        (["2025/**/final.mp4"], "2025/final.mp4"),
    ],
    ids=["common_parent", "anchored_folder", "class", "globstar_zero_dirs"],
)
def test_literal_prefix_never_hides_a_match(patterns: list[str], path: str) -> None:
    """Pushing the prefix down to the listing must keep every file the patterns match."""
    compiled = compile_filters(FileFilters.model_validate({"include_patterns": patterns}))
    assert compiled(item(path)).ok
    assert path.startswith(literal_prefix(patterns))
