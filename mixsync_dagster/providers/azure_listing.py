"""One List Blobs call, sent through the azure-storage-blob client's own pipeline and parsed
with ElementTree.

Why not `ContainerClient.list_blobs`: the SDK turns each page into `BlobProperties` with its
generic, reflective XML deserializer, which costs about three quarters of a listing's CPU
(measured against Azurite: 3.7 s of CPU for 20,000 blobs, against 0.5 s for this parse of the
same responses). The request is the same documented REST call (`restype=container&comp=list`
with `prefix`, `marker`, `maxresults`, `include=metadata,tags`), and it goes through the same
pipeline, so Shared Key / SAS / Entra ID signing, the retry policy and the timeouts are the
SDK's. Error answers become the SDK's own exception types, carrying `x-ms-error-code`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.core.rest import HttpRequest


@dataclass(frozen=True, slots=True)
class ListedBlob:
    """What a List Blobs entry says about one blob (the fields mixsync uses)."""

    name: str
    size: int
    etag: str
    last_modified: datetime
    content_type: str | None = None
    access_tier: str | None = None
    blob_type: str | None = None
    version_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def _time(text: str | None) -> datetime:
    if not text:
        return datetime.fromtimestamp(0, UTC)
    return parsedate_to_datetime(text).astimezone(UTC)


def parse_page(xml: bytes) -> tuple[list[ListedBlob], str | None]:
    """A List Blobs answer as (blobs, next marker or None)."""
    root = ET.fromstring(xml)
    blobs: list[ListedBlob] = []
    for b in root.iterfind("Blobs/Blob"):
        name_el = b.find("Name")
        name = (name_el.text or "") if name_el is not None else ""
        if name_el is not None and name_el.get("Encoded") == "true":
            name = unquote(name)  # names with characters XML cannot carry come URL-encoded
        props = b.find("Properties")
        p: dict[str, str | None] = (
            {child.tag: child.text for child in props} if props is not None else {}
        )
        meta_el = b.find("Metadata")
        metadata = {m.tag: m.text or "" for m in meta_el} if meta_el is not None else {}
        tags = {
            t.findtext("Key") or "": t.findtext("Value") or ""
            for t in b.iterfind("Tags/TagSet/Tag")
        }
        blobs.append(
            ListedBlob(
                name=name,
                size=int(p.get("Content-Length") or 0),
                etag=(p.get("Etag") or "").strip('"'),
                last_modified=_time(p.get("Last-Modified") or p.get("Creation-Time")),
                content_type=p.get("Content-Type"),
                access_tier=p.get("AccessTier"),
                blob_type=p.get("BlobType"),
                version_id=b.findtext("VersionId"),
                metadata=metadata,
                tags=tags,
            )
        )
    return blobs, root.findtext("NextMarker") or None


def list_segment(
    container_client: Any, api_version: str, prefix: str, marker: str | None, size: int
) -> tuple[list[ListedBlob], str | None]:
    """One page of the container's blobs under `prefix`, after `marker`."""
    query = f"restype=container&comp=list&maxresults={size}&include=metadata,tags"
    if prefix:
        query += f"&prefix={quote(prefix, safe='')}"
    if marker:
        query += f"&marker={quote(marker, safe='')}"
    base, _, existing = container_client.url.partition("?")  # a SAS in the URL stays on it
    url = f"{base}?{query}" + (f"&{existing}" if existing else "")
    request = HttpRequest("GET", url, headers={"x-ms-version": api_version})
    # The generated client's send_request: the same pipeline list_blobs uses.
    response = container_client._client._send_request(request)
    body = response.read()
    if response.status_code >= 300:
        code = response.headers.get("x-ms-error-code")
        kind = (
            ClientAuthenticationError
            if response.status_code in (401, 403)
            else ResourceNotFoundError
            if response.status_code == 404
            else HttpResponseError
        )
        err = kind(message=_message(body) or f"HTTP {response.status_code}", response=response)
        err.error_code = code  # type: ignore[attr-defined]  # as the SDK's own errors
        raise err
    return parse_page(body)


def _message(body: bytes) -> str | None:
    try:
        return ET.fromstring(body).findtext("Message")
    except ET.ParseError:
        return None
