"""Checks across the document, made on the data as written so they run even when fields
elsewhere fail validation: references to connections and buckets, unique sync names, ranges,
source paths against their connection, NUL characters."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from mixsync_dagster.config.models import FileFilters, resolve_root
from mixsync_dagster.config.problems import sync_label
from mixsync_dagster.errors import ConfigProblem

MUX_PREFIX = "mux://"
DRIVE_PREFIX = "drive://"
DRIVE_SHARED = "shared/"
AZURE_CONTAINER_RE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
"""Azure container names: 3-63 of a-z, 0-9 and single hyphens, starting and ending alnum."""
DRIVE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")

Where = Callable[[tuple[Any, ...]], tuple[str | None, str]]


def split_bucket_path(source_path: str) -> tuple[str, str]:
    """`bucket/prefix/` → ('bucket', 'prefix/') for S3 and GCS source paths."""
    path = source_path.strip().lstrip("/")
    for scheme in ("s3://", "gs://", "gcs://"):
        if path.startswith(scheme):
            path = path[len(scheme) :]
    bucket, _, prefix = path.partition("/")
    return bucket, prefix


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


def source_path_problem(
    provider: Any, root: Any, source_path: str, base_dir: str
) -> tuple[str, str] | None:
    """(message, fix) when source_path does not fit its connection's provider (`root`: the
    local connection's root as written). Needs only those two settings of the connection, so
    it runs even when the connection has other problems."""
    if provider == "local":
        if not isinstance(root, str) or not root or "\x00" in root:
            return None  # reported with the connection
        root = resolve_root(base_dir, root)
        inside = os.path.realpath(os.path.join(root, source_path.lstrip("/")))
        if os.path.commonpath([root, inside]) != str(root):
            return (
                f"'{source_path}' leaves the connection root {root}",
                "stay inside the connection root (no '..' above it)",
            )
    elif provider in ("s3", "gcs"):
        bucket, _ = split_bucket_path(source_path)
        if not bucket or not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,254}", bucket):
            return (
                f"'{source_path}' does not start with a bucket name",
                "write it as bucket/prefix, e.g. media-bucket/videos/2025/",
            )
    elif provider == "azure_blob":
        container, _ = split_bucket_path(source_path)
        if not AZURE_CONTAINER_RE.fullmatch(container):
            return (
                f"'{source_path}' does not start with an Azure container name",
                "write it as container/prefix, e.g. media/videos/2025/ (a container name is "
                "3-63 lowercase letters, digits and single hyphens)",
            )
    elif provider == "google_drive":
        if split_drive_path(source_path) is None:
            return (
                f"'{source_path}' is not a Google Drive source",
                "use drive://FOLDER_ID (the id in the folder's URL, listed recursively) or "
                "drive://shared/DRIVE_ID for a whole shared drive",
            )
    elif provider == "mux" and (
        not source_path.startswith(MUX_PREFIX) or "/" in source_path[len(MUX_PREFIX) :]
    ):
        return (
            f"'{source_path}' is not a Mux source",
            "use mux:// for all assets or mux://ASSET_ID for one asset",
        )
    return None


def nul_problems(node: Any, where: Where, loc: tuple[Any, ...] = ()) -> list[ConfigProblem]:
    """A NUL character in any key or value: no path, database or API accepts one."""
    out: list[ConfigProblem] = []
    if isinstance(node, str) and "\x00" in node:
        sync, field = where(loc)
        out.append(
            ConfigProblem(
                sync=sync,
                field=field,
                message="contains a NUL character (\\0)",
                fix='remove it (a YAML "\\0" escape writes one)',
            )
        )
    elif isinstance(node, dict):
        for k, v in node.items():
            if isinstance(k, str) and "\x00" in k:
                out += nul_problems(k, where, loc)
            else:
                out += nul_problems(v, where, (*loc, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += nul_problems(v, where, (*loc, i))
    return out


def cross_check(doc: dict[str, Any], base_dir: str) -> list[ConfigProblem]:
    """Problems between sections, found on the data as written (after {env: VAR})."""
    syncs = doc.get("syncs")
    if not isinstance(syncs, list):
        return []
    conns, buckets = doc.get("connections", {}), doc.get("buckets", {})
    problems: list[ConfigProblem] = []
    seen: set[str] = set()
    for i, s in enumerate(syncs):
        if not isinstance(s, dict):
            continue
        label = sync_label(doc, i)

        def problem(field: str, message: str, fix: str, label: str = label) -> None:
            problems.append(ConfigProblem(sync=label, field=field, message=message, fix=fix))

        name = s.get("name")
        if isinstance(name, str):
            if name in seen:
                problem("name", "the name is used by another sync", "give every sync a unique name")
            seen.add(name)
        try:
            ff = FileFilters.model_validate(s.get("file_filters") or {})
        except ValidationError:
            pass  # reported by the validation of the whole file
        else:
            for field, message, fix in ff.range_problems():
                problem(field, message, fix)
        bucket = s.get("bucket")
        if isinstance(bucket, str) and isinstance(buckets, dict) and bucket not in buckets:
            declared = sorted(str(b) for b in buckets) or "[none declared]"
            problem(
                "bucket",
                f"bucket '{bucket}' is not declared under 'buckets:'",
                f"declare it or use one of {declared}",
            )
        cid = s.get("connection_id")
        if not isinstance(cid, str) or not isinstance(conns, dict):
            continue
        if cid not in conns:
            declared = sorted(str(c) for c in conns) or "[none declared]"
            problem(
                "connection_id",
                f"connection '{cid}' is not declared under 'connections:'",
                f"declare it or use one of {declared}",
            )
            continue
        source_path = s.get("source_path")
        if not isinstance(source_path, str) or "\x00" in source_path:
            continue
        conn = conns[cid] if isinstance(conns[cid], dict) else {}
        bad = source_path_problem(conn.get("provider"), conn.get("root"), source_path, base_dir)
        if bad:
            problem("source_path", bad[0], f"{bad[1]} of connection '{cid}'")
    return problems
