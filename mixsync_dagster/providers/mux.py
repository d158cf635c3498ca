"""Mux Video as a source: each `ready` asset with a static MP4 rendition is one file.

Talks to the Mux Video API with plain httpx (the official client rejects enum values it does not
know, so a new asset status from Mux would crash a listing).

Listing. `GET /video/v1/assets` pages newest first with `limit` and `cursor`. The position this
provider hands out is Mux's own `next_cursor`: it resumes right after the last asset returned,
so an asset deleted mid-pass never shifts later pages (with `page=N` offsets it would make the
next page skip one). An asset created mid-pass is newer than every asset already listed, so it
sorts *before* the position: the running pass does not list it and the next pass lists it first,
at most one polling interval later. Nothing is lost and nothing is listed twice in a pass. If Mux
ever refuses a stored cursor (400), the listing restarts from the newest asset: files already
seen come back as unchanged (or re-sent onto their existing object), never as duplicates.

Which assets become files. Only `ready` assets with a ready static MP4 rendition and a public
playback id; every other asset is reported as skipped with its reason (preview shows it, the
sensor counts it), never dropped silently. The file is the best MP4 rendition (`highest.mp4`,
then `capped-1080p.mp4`, `high.mp4`, `medium.mp4`, `low.mp4`, then the tallest other one);
`rel_path` is `ASSET_ID/NAME` so patterns like `*.mp4` apply. Mux has no "updated at": the
modified time is the asset's creation time, and the fingerprint is a hash of every field the
provider exposes (status, duration, meta, passthrough, playback ids, rendition), so an edited
title or a re-generated rendition updates the object in place.

Include-pattern push-down does not apply: Mux cannot filter its listing by name.

Retries. 408, 429, 5xx, timeouts and dropped connections are retried with exponential backoff
and jitter inside a bounded budget (attempts and seconds). A 429 waits what its headers ask
(`Retry-After`, else `X-RateLimit-Reset`) plus a little jitter; when that is beyond the budget
the call gives up at once. Exhausting the budget raises TransientError; 401/403 raise AuthError
naming the connection. The access token never appears in messages, logs or repr.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO, cast

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from mixsync_dagster.config import MuxConnection
from mixsync_dagster.core.records import FileItem, Page, Skipped
from mixsync_dagster.errors import AuthError, FileVanished, ProviderError, TransientError
from mixsync_dagster.redaction import get_logger

log = get_logger(__name__)

MUX_SCHEME = "mux://"
MAX_LIMIT = 100
"""Mux's largest `limit` for the asset listing."""
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
PREFERRED_RENDITIONS = (
    "highest.mp4",
    "capped-1080p.mp4",
    "high.mp4",
    "medium.mp4",
    "low.mp4",
)
NO_RENDITION = "no static MP4 rendition; enable static renditions on the asset"


class _Retry(Exception):
    """One failed attempt worth retrying, with the wait the server asked for (if any)."""

    def __init__(self, reason: str, wait_hint: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.wait_hint = wait_hint


class MuxProvider:
    """Lists Mux assets as files and streams their static MP4 renditions."""

    name = "mux"
    list_in_background = True
    cheap_open = False
    url_fetchable = True

    def __init__(
        self,
        connection_id: str,
        conn: MuxConnection,
        *,
        max_attempts: int = 6,
        max_retry_seconds: float = 60.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        timeout: httpx.Timeout | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.connection_id = connection_id
        self.api_base_url = conn.api_base_url.rstrip("/")
        self.stream_base_url = conn.stream_base_url.rstrip("/")
        self.page_size = conn.page_size
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._sleep = sleep
        self._timeout = timeout or httpx.Timeout(30.0, connect=10.0)
        token_id = conn.access_token_id.get_secret_value()
        token_secret = conn.access_token_secret.get_secret_value()
        self._secrets = tuple(s for s in (token_id, token_secret) if s)
        # The API client alone carries the token: rendition bytes come from another host.
        self._api = httpx.Client(
            base_url=self.api_base_url,
            auth=httpx.BasicAuth(token_id, token_secret),
            timeout=self._timeout,
            headers={"Accept": "application/json", "User-Agent": "mixsync-dagster"},
            follow_redirects=False,
        )
        self._stream: httpx.Client | None = None
        self._finalizer = weakref.finalize(self, _close_clients, [self._api])

    def __repr__(self) -> str:
        return f"MuxProvider(connection_id={self.connection_id!r}, api={self.api_base_url!r})"

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> MuxProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ Provider interface

    def list_pages(
        self, source_path: str, position: str | None, page_size: int, prefix: str = ""
    ) -> Iterator[Page]:
        """One Page per API page (at most `page_size` and the connection's page_size assets).

        `position` is Mux's `next_cursor`; `prefix` is ignored (Mux cannot narrow by name).
        """
        asset_id = self._asset_id(source_path)
        if asset_id:
            items, skipped = self._describe_all([self._get_asset(asset_id)])
            yield Page(items, skipped, None)
            return
        limit = max(1, min(self.page_size, page_size, MAX_LIMIT))
        cursor = position
        while True:
            body = self._list(limit, cursor)
            data = body.get("data")
            if not isinstance(data, list):
                raise ProviderError(
                    f"Mux asset listing of connection '{self.connection_id}' has no 'data' list;"
                    " check api_base_url"
                )
            next_cursor = body.get("next_cursor") or None
            if not data:
                next_cursor = None
            if next_cursor is not None and next_cursor == cursor:
                raise ProviderError(
                    f"Mux returned the same cursor twice for connection '{self.connection_id}'"
                )
            items, skipped = self._describe_all(data)
            yield Page(items, skipped, str(next_cursor) if next_cursor is not None else None)
            if next_cursor is None:
                return
            cursor = str(next_cursor)

    def enrich(self, items: list[FileItem]) -> list[FileItem]:
        """The listing already carries every field Mux has for an asset."""
        return items

    def blob_url(self, item: FileItem) -> str:
        """The static rendition's download URL."""
        if item.url:
            return item.url
        raise ProviderError(f"Mux asset '{item.key}' has no rendition URL")

    def check(self, source_path: str | None) -> str:
        """One authenticated call: the asset named by source_path, else the first asset."""
        asset_id = self._asset_id(source_path) if source_path else ""
        if asset_id:
            items, skipped = self._describe_all([self._get_asset(asset_id)])
            if items:
                i = items[0]
                return f"Mux asset {asset_id} is ready: {i.rel_path} ({i.size} bytes)"
            return f"Mux asset {asset_id} is reachable but not synced: {skipped[0].reason}"
        body = self._list(1, None)
        data = body.get("data") or []
        newest = data[0] if data and isinstance(data[0], dict) else None
        seen = (
            f"newest asset {newest.get('id')} ({newest.get('status')})"
            if newest
            else "no assets yet"
        )
        return f"Mux API {self.api_base_url} accepted the access token; {seen}"

    def open(self, item: FileItem) -> BinaryIO:
        """Stream the rendition's bytes; FileVanished when Mux no longer serves it."""
        url = self.blob_url(item)
        resp = self._request(self._stream_client(), "GET", url, what=f"download of {item.key}")
        if resp.status_code in (404, 410):
            resp.close()
            raise FileVanished(f"Mux rendition {item.rel_path} is gone (HTTP {resp.status_code})")
        if resp.status_code >= 400:
            resp.read()
            resp.close()
            raise ProviderError(
                f"Mux rendition {item.rel_path} could not be downloaded: HTTP {resp.status_code}"
                f"{self._error_detail(resp)}"
            )
        return cast(BinaryIO, io.BufferedReader(_ResponseReader(resp), buffer_size=64 * 1024))

    # ------------------------------------------------------------ API calls

    def _asset_id(self, source_path: str) -> str:
        if not source_path.startswith(MUX_SCHEME):
            raise ProviderError(
                f"'{source_path}' is not a Mux source; use mux:// or mux://ASSET_ID"
            )
        asset_id = source_path[len(MUX_SCHEME) :].strip("/")
        if "/" in asset_id:
            raise ProviderError(f"'{source_path}' is not a Mux source; use mux://ASSET_ID")
        return asset_id

    def _list(self, limit: int, cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        resp = self._request(self._api, "GET", "/video/v1/assets", params=params, what="listing")
        if resp.status_code == 400 and cursor:
            log.warning(
                "Mux refused the stored listing position of connection '%s'%s; listing again"
                " from the newest asset",
                self.connection_id,
                self._error_detail(resp),
            )
            return self._list(limit, None)
        self._raise_for_status(resp, "listing assets")
        return self._json(resp, "listing assets")

    def _get_asset(self, asset_id: str) -> dict[str, Any]:
        resp = self._request(
            self._api, "GET", f"/video/v1/assets/{asset_id}", what=f"asset {asset_id}"
        )
        if resp.status_code == 404:
            raise ProviderError(
                f"Mux asset '{asset_id}' was not found by connection '{self.connection_id}':"
                f" check source_path mux://{asset_id} and the token's environment"
            )
        self._raise_for_status(resp, f"reading asset {asset_id}")
        data = self._json(resp, f"reading asset {asset_id}").get("data")
        if not isinstance(data, dict):
            raise ProviderError(f"Mux answered without the asset '{asset_id}'")
        return data

    def _stream_client(self) -> httpx.Client:
        if self._stream is None:
            self._stream = httpx.Client(timeout=self._timeout, follow_redirects=True)
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _close_clients, [self._api, self._stream])
        return self._stream

    def _request(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        what: str,
    ) -> httpx.Response:
        """Send with retries; returns the first non-retryable response (any status)."""
        stream = client is not self._api
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.max_retry_seconds),
            wait=self._wait,
            retry=retry_if_exception_type(_Retry),
            sleep=self._sleep,
            before_sleep=lambda rs: self._log_retry(rs, what),
            reraise=True,
        )
        started = time.monotonic()
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(client, method, url, params, stream)
        except _Retry as e:
            tries = retrying.statistics.get("attempt_number", self.max_attempts)
            spent = time.monotonic() - started
            asked = (
                f"; Mux asked to wait {e.wait_hint:.0f} s more"
                if e.wait_hint and spent + e.wait_hint >= self.max_retry_seconds
                else ""
            )
            raise TransientError(
                f"Mux {what} for connection '{self.connection_id}' still failing after {tries}"
                f" attempt(s) over {spent:.1f} s: {e.reason}{asked}"
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _send_once(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        stream: bool,
    ) -> httpx.Response:
        try:
            request = client.build_request(method, url, params=params)
            resp = client.send(request, stream=stream)
        except httpx.TimeoutException as e:
            raise _Retry(f"timed out ({type(e).__name__})") from None
        except httpx.TransportError as e:
            raise _Retry(f"connection failed ({type(e).__name__}: {e})") from None
        if resp.status_code in RETRY_STATUSES:
            if stream:
                resp.read()
                resp.close()
            hint = _wait_hint(resp.headers) if resp.status_code in (429, 503) else None
            label = "rate limited (HTTP 429)" if resp.status_code == 429 else "HTTP"
            detail = (
                label if resp.status_code == 429 else f"{label} {resp.status_code}"
            ) + self._error_detail(resp)
            raise _Retry(detail, hint)
        return resp

    def _wait(self, rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome else None
        hint = exc.wait_hint if isinstance(exc, _Retry) else None
        if hint is not None and hint > 0:
            return hint + random.uniform(0, min(1.0, self.backoff_initial))
        backoff = wait_exponential_jitter(
            initial=self.backoff_initial, max=self.backoff_max, jitter=self.backoff_initial
        )
        return float(backoff(rs))

    def _log_retry(self, rs: RetryCallState, what: str) -> None:
        exc = rs.outcome.exception() if rs.outcome else None
        log.warning(
            "Mux %s for connection '%s': %s; retry %d/%d in %.1f s",
            what,
            self.connection_id,
            exc,
            rs.attempt_number,
            self.max_attempts - 1,
            rs.upcoming_sleep,
        )

    def _raise_for_status(self, resp: httpx.Response, what: str) -> None:
        if resp.status_code in (401, 403):
            raise AuthError(
                f"Mux refused the access token of connection '{self.connection_id}' while"
                f" {what} (HTTP {resp.status_code}{self._error_detail(resp)}). Check"
                " access_token_id and access_token_secret, that the token belongs to this Mux"
                " environment, and that it has Mux Video read permission"
            )
        if resp.status_code >= 400:
            raise ProviderError(
                f"Mux {what} failed for connection '{self.connection_id}': HTTP"
                f" {resp.status_code}{self._error_detail(resp)}"
            )

    def _json(self, resp: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderError(
                f"Mux {what}: the answer from {self.api_base_url} is not a JSON object;"
                " check api_base_url"
            )
        return body

    def _error_detail(self, resp: httpx.Response) -> str:
        """`: type: message; message` from Mux's error body, scrubbed of the token."""
        try:
            err = resp.json().get("error") or {}
        except (ValueError, AttributeError):
            return ""
        if not isinstance(err, dict):
            return ""
        messages = err.get("messages") or []
        text = "; ".join(str(m) for m in messages if m) if isinstance(messages, list) else ""
        parts = [str(p) for p in (err.get("type"), text) if p]
        if not parts:
            return ""
        detail = ": " + ": ".join(parts)[:300]
        for secret in self._secrets:
            detail = detail.replace(secret, "***")
        return detail

    # ------------------------------------------------------------ assets → files

    def _describe_all(self, assets: list[Any]) -> tuple[list[FileItem], list[Skipped]]:
        items: list[FileItem] = []
        skipped: list[Skipped] = []
        for asset in assets:
            if not isinstance(asset, dict) or not asset.get("id"):
                skipped.append(Skipped(str(asset)[:60], "Mux returned an asset without an id"))
                continue
            entry = self._describe(asset)
            if isinstance(entry, FileItem):
                items.append(entry)
            else:
                skipped.append(entry)
        return items, skipped

    def _describe(self, asset: dict[str, Any]) -> FileItem | Skipped:
        asset_id = str(asset["id"])
        status = asset.get("status")
        if status != "ready":
            reason = f"status {status}"
            errors = asset.get("errors")
            if status == "errored" and isinstance(errors, dict):
                messages = errors.get("messages") or []
                detail = "; ".join(str(m) for m in messages) if isinstance(messages, list) else ""
                reason += f" ({': '.join(p for p in (errors.get('type'), detail) if p)})"
            return Skipped(asset_id, reason)
        rendition, why_not = best_mp4(asset.get("static_renditions"))
        if rendition is None:
            return Skipped(asset_id, why_not)
        playback_id = public_playback_id(asset)
        if playback_id is None:
            return Skipped(
                asset_id,
                "no public playback id; static rendition URLs of signed-only assets are not"
                " supported (add a public playback id)",
            )
        name = str(rendition["name"])
        metadata = asset_metadata(asset, rendition)
        url = f"{self.stream_base_url}/{playback_id}/{name}"
        digest = hashlib.sha256(
            json.dumps({"metadata": metadata, "url": url}, sort_keys=True, default=str).encode()
        ).hexdigest()
        return FileItem(
            key=asset_id,
            rel_path=f"{asset_id}/{name}",
            size=_int(rendition.get("filesize")),
            modified_at=_created_at(asset.get("created_at")),
            fingerprint=f"mux-{digest[:32]}",
            content_type="video/mp4",
            url=url,
            metadata=metadata,
        )


# ---------------------------------------------------------------- helpers (pure)


def best_mp4(static: Any) -> tuple[dict[str, Any] | None, str]:
    """The best ready MP4 rendition of an asset, else None and why not.

    Handles both shapes Mux has used: per-file `status` (static renditions API) and a single
    `static_renditions.status` for all files (the older `mp4_support` setting).
    """
    if not isinstance(static, dict):
        return None, NO_RENDITION
    files = static.get("files")
    if not isinstance(files, list):
        files = []
    overall = static.get("status")
    mp4s = [
        f
        for f in files
        if isinstance(f, dict)
        and isinstance(f.get("name"), str)
        and (f.get("ext") == "mp4" or str(f["name"]).endswith(".mp4"))
    ]
    if not mp4s:
        if overall in ("preparing", "errored"):
            return None, f"static MP4 rendition {overall}; it is synced once ready"
        return None, NO_RENDITION
    ready = [f for f in mp4s if (f.get("status") or overall) == "ready"]
    if not ready:
        states = sorted({str(f.get("status") or overall) for f in mp4s})
        return None, f"static MP4 rendition not ready (status {', '.join(states)})"

    def rank(f: dict[str, Any]) -> tuple[int, int, int]:
        name = str(f["name"])
        pref = PREFERRED_RENDITIONS.index(name) if name in PREFERRED_RENDITIONS else 99
        return (pref, -_int(f.get("height")), -_int(f.get("filesize")))

    return min(ready, key=rank), ""


def public_playback_id(asset: dict[str, Any]) -> str | None:
    for p in asset.get("playback_ids") or []:
        if isinstance(p, dict) and p.get("policy") == "public" and p.get("id"):
            return str(p["id"])
    return None


def asset_metadata(asset: dict[str, Any], rendition: dict[str, Any]) -> dict[str, Any]:
    """What filters and mappings see as `metadata.*` for an asset."""
    raw_meta = asset.get("meta")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    created = _created_at(asset.get("created_at"))
    out: dict[str, Any] = {
        "asset_id": asset.get("id"),
        "status": asset.get("status"),
        "duration": asset.get("duration"),
        "aspect_ratio": asset.get("aspect_ratio"),
        "resolution": asset.get("resolution_tier") or asset.get("max_resolution_tier"),
        "resolution_tier": asset.get("resolution_tier"),
        "max_resolution_tier": asset.get("max_resolution_tier"),
        "video_quality": asset.get("video_quality") or asset.get("encoding_tier"),
        "passthrough": asset.get("passthrough"),
        "meta": {**{k: None for k in ("title", "creator_id", "external_id")}, **meta},
        "created_at": created.isoformat(),
        "playback_ids": [
            {"id": p.get("id"), "policy": p.get("policy")}
            for p in asset.get("playback_ids") or []
            if isinstance(p, dict)
        ],
        "rendition": {
            k: rendition.get(k)
            for k in ("name", "resolution", "width", "height", "bitrate", "id")
            if rendition.get(k) is not None
        }
        | {"filesize": _int(rendition.get("filesize"))},
    }
    for extra in ("tags", "upload_id", "live_stream_id", "is_live"):
        if asset.get(extra) is not None:
            out[extra] = asset[extra]
    return out


def _wait_hint(headers: httpx.Headers) -> float | None:
    """Seconds the server asked us to wait: Retry-After (seconds or date), else the reset."""
    now = time.time()
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(retry_after).timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            return None
        # An epoch timestamp (seconds) or a number of seconds from now.
        return max(0.0, value - now) if value > 1_000_000_000 else max(0.0, value)
    return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _created_at(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(0, tz=UTC)


def _close_clients(clients: list[httpx.Client]) -> None:
    for c in clients:
        c.close()


class _ResponseReader(io.RawIOBase):
    """A streamed httpx response as a raw binary file; closing it closes the response."""

    def __init__(self, resp: httpx.Response):
        self._resp = resp
        self._chunks = resp.iter_bytes()
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
            except httpx.HTTPError as e:
                raise TransientError(f"Mux rendition download broke off: {e}") from None
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._resp.close()
        super().close()
