"""A small fake of the Mux Video API, written from Mux's public API reference, on real HTTP.

It serves, on one loopback port:
- `GET /video/v1/assets?limit=1..100&cursor=...|page=N` (HTTP Basic auth), newest first, with
  `next_cursor` whenever a page is full; an unknown cursor is a 400;
- `GET /video/v1/assets/{id}` (404 with Mux's error body when missing);
- `GET /{playback_id}/{name}`: the bytes of a ready static rendition, as stream.mux.com does;
  point both `api_base_url` and `stream_base_url` at `FakeMux.url`.

Errors use Mux's shape `{"error": {"type": ..., "messages": [...]}}`. Tests add, change and
delete assets, inject 429s (with `Retry-After` and `X-RateLimit-*` headers), 5xx answers and
dropped connections, and read what was requested.

The contract is the vendor's SDK, `mux-python`: every asset the fake serves (and every listing
and single-asset answer) is parsed with its models (`ListAssetsResponse`, `AssetResponse`,
`Asset`, `StaticRendition`, `Track`, ...), which check enum values such as a rendition's
`resolution` (`highest`, `audio-only`, `1080p`, ...), and a key the SDK's models do not know is
refused (a field Mux does not send). A violation raises in the fake (the test fails).

The cursor is keyset-like (it names the last asset returned), so deleting an asset does not
shift later pages and an asset created mid-listing, being the newest, sorts before it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
import re
import string
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import mux_python.models as mux_models
from mux_python.api_client import ApiClient

API_PREFIX = "/video/v1/"
_MUX = ApiClient()


def mux_problems(type_name: str, data: Any, loc: str = "") -> list[str]:
    """Keys of `data` that mux-python's model `type_name` (and its nested models) lacks."""
    if data is None:
        return []
    if type_name.startswith("list["):
        inner = type_name[5:-1]
        return [p for i, x in enumerate(data) for p in mux_problems(inner, x, f"{loc}[{i}]")]
    klass = getattr(mux_models, type_name, None)
    if klass is None or not getattr(klass, "openapi_types", None):
        return []  # a primitive, an enum (PlaybackPolicy) or a dict(...) type
    if not isinstance(data, dict):
        return [f"{loc or type_name}: {type_name} must be an object"]
    keys = dict(zip(klass.attribute_map.values(), klass.attribute_map, strict=True))
    out = [f"{loc}.{k}: Mux sends no '{k}' in {type_name}" for k in data if k not in keys]
    for key, attr in keys.items():
        out += mux_problems(klass.openapi_types[attr], data.get(key), f"{loc}.{key}")
    return out


def check_mux(type_name: str, body: Any) -> None:
    """Parse a body with mux-python, as its client would: unknown keys and bad values raise."""
    found = mux_problems(type_name, body)
    if found:
        raise AssertionError(f"fake_mux serves a {type_name} mux-python refuses: {found}")
    _MUX._ApiClient__deserialize(body, type_name)  # type: ignore[attr-defined]


@dataclass
class Fault:
    """An injected answer for the next `times` requests whose path starts with `match`."""

    match: str
    times: int
    status: int = 0
    """0 drops the connection without answering."""
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    status: int
    """0 when the connection was dropped."""
    at: float
    """time.monotonic() when the request arrived."""


def _error(kind: str, *messages: str) -> dict[str, Any]:
    return {"error": {"type": kind, "messages": list(messages)}}


class FakeMux:
    """The fake API's state and its HTTP server (a ThreadingHTTPServer in a daemon thread)."""

    def __init__(self, token_id: str = "fake-token-id", token_secret: str = "fake-token-secret"):
        self.token_id = token_id
        self.token_secret = token_secret
        self._lock = threading.Lock()
        self._rng = random.Random(7)
        self._assets: dict[str, dict[str, Any]] = {}
        self._faults: list[Fault] = []
        self.requests: list[Request] = []
        self._clock = 1_700_000_000
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeMux:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-mux", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reset(self) -> None:
        with self._lock:
            self._assets.clear()
            self._faults.clear()
            self.requests.clear()
            self._clock = 1_700_000_000

    # ------------------------------------------------------------ assets

    def _new_id(self, n: int = 32) -> str:
        return "".join(self._rng.choice(string.ascii_letters + string.digits) for _ in range(n))

    def add_asset(
        self,
        *,
        status: str = "ready",
        static: str | None = "ready",
        title: str | None = None,
        creator_id: str | None = None,
        external_id: str | None = None,
        passthrough: str | None = None,
        duration: float | None = None,
        policy: str = "public",
        created_at: int | None = None,
        filesize: int | None = None,
    ) -> dict[str, Any]:
        """Create an asset and return a copy.

        `static`: "ready" (highest.mp4 + audio.m4a, per-file status), "legacy" (low/medium/
        high.mp4 under one status, the old mp4_support shape), "preparing", "audio_only", or
        None (no static renditions).
        """
        with self._lock:
            self._clock += 1
            asset_id = self._new_id()
            asset: dict[str, Any] = {
                "id": asset_id,
                "created_at": str(created_at if created_at is not None else self._clock),
                "status": status,
                "playback_ids": [{"id": self._new_id(), "policy": policy}],
                "master_access": "none",
                "ingest_type": "on_demand_direct_upload",
                "upload_id": self._new_id(24),
                "video_quality": "plus",
                "mp4_support": "none",
                "tracks": [],
            }
            meta = {
                k: v
                for k, v in (
                    ("title", title),
                    ("creator_id", creator_id),
                    ("external_id", external_id),
                )
                if v is not None
            }
            if meta:
                asset["meta"] = meta
            if passthrough is not None:
                asset["passthrough"] = passthrough
            if status == "errored":
                asset["errors"] = {
                    "type": "invalid_input",
                    "messages": ["The input file could not be decoded"],
                }
            if status == "ready":
                asset.update(
                    duration=duration if duration is not None else 10.0 + len(self._assets),
                    aspect_ratio="16:9",
                    resolution_tier="1080p",
                    max_resolution_tier="1080p",
                    max_stored_frame_rate=29.97,
                    tracks=[
                        {"type": "video", "id": self._new_id(), "max_width": 1920},
                        {"type": "audio", "id": self._new_id(), "max_channels": 2},
                    ],
                )
                self._set_static(asset, static, filesize)
            check_mux("Asset", asset)
            self._assets[asset_id] = asset
            return copy.deepcopy(asset)

    def add_assets(self, n: int, **kw: Any) -> list[dict[str, Any]]:
        return [self.add_asset(**kw) for _ in range(n)]

    def _set_static(self, asset: dict[str, Any], static: str | None, size: int | None) -> None:
        def file(name: str, ext: str, status: str | None, height: int) -> dict[str, Any]:
            f: dict[str, Any] = {
                "id": self._new_id(),
                "type": "standard",
                "name": name,
                "ext": ext,
                "filesize": str(size or 1500 + self._rng.randrange(2500)),
                "bitrate": 4_000_000 if ext == "mp4" else 128_000,
            }
            if status is not None:  # per-file renditions say their resolution (StaticRendition)
                f["status"] = status
                f["resolution"] = {"highest.mp4": "highest", "audio.m4a": "audio-only"}[name]
            if ext == "mp4":
                f.update(width=height * 16 // 9, height=height)
            return f

        asset.pop("static_renditions", None)
        if static is None:
            asset["mp4_support"] = "none"
            return
        if static == "legacy":
            asset["mp4_support"] = "standard"
            asset["static_renditions"] = {
                "status": "ready",
                "files": [
                    file("low.mp4", "mp4", None, 360),
                    file("medium.mp4", "mp4", None, 720),
                    file("high.mp4", "mp4", None, 1080),
                ],
            }
            return
        if static == "audio_only":
            asset["static_renditions"] = {"files": [file("audio.m4a", "m4a", "ready", 0)]}
            return
        state = "preparing" if static == "preparing" else "ready"
        asset["static_renditions"] = {
            "files": [file("highest.mp4", "mp4", state, 1080), file("audio.m4a", "m4a", state, 0)]
        }

    def update_asset(self, asset_id: str, **changes: Any) -> dict[str, Any]:
        """Change fields; `meta` is merged key by key, `static="ready"` re-creates renditions."""
        with self._lock:
            asset = self._assets[asset_id]
            if "meta" in changes:
                asset.setdefault("meta", {}).update(changes.pop("meta"))
            if "static" in changes:
                self._set_static(asset, changes.pop("static"), changes.pop("filesize", None))
            asset.update(changes)
            check_mux("Asset", asset)
            return copy.deepcopy(asset)

    def make_ready(self, asset_id: str, static: str | None = "ready") -> dict[str, Any]:
        """A preparing asset finishes processing."""
        with self._lock:
            asset = self._assets[asset_id]
            asset.update(status="ready", duration=12.5, aspect_ratio="16:9")
            asset.update(resolution_tier="1080p", max_resolution_tier="1080p")
            self._set_static(asset, static, None)
            check_mux("Asset", asset)
            return copy.deepcopy(asset)

    def delete_asset(self, asset_id: str) -> None:
        with self._lock:
            del self._assets[asset_id]

    def asset(self, asset_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._assets[asset_id])

    def ordered_ids(self) -> list[str]:
        """Every asset id, newest first, as the listing returns them."""
        with self._lock:
            return [a["id"] for a in self._ordered()]

    def _ordered(self) -> list[dict[str, Any]]:
        return sorted(self._assets.values(), key=_sort_key, reverse=True)

    @staticmethod
    def rendition_bytes(asset: dict[str, Any], name: str) -> bytes:
        """The deterministic content of an asset's rendition (filesize bytes long)."""
        files = (asset.get("static_renditions") or {}).get("files") or []
        f = next(x for x in files if x["name"] == name)
        seed = hashlib.sha256(f"{asset['id']}/{f['id']}".encode()).digest()
        size = int(f["filesize"])
        return (seed * (size // len(seed) + 1))[:size]

    # ------------------------------------------------------------ faults and observation

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        match: str = API_PREFIX,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `times` matching requests get `status` with Mux's error body."""
        kind = {429: "too_many_requests", 503: "service_unavailable"}.get(status, "server_error")
        body = _error(kind, "Too many requests" if status == 429 else "Internal server error")
        with self._lock:
            self._faults.append(Fault(match, times, status, dict(headers or {}), body))

    def rate_limit_next(
        self,
        times: int = 1,
        *,
        retry_after: float | None = 1,
        reset_in: float = 1,
        match: str = API_PREFIX,
    ) -> None:
        """429s carrying the headers Mux sends (Retry-After when given, X-RateLimit-*)."""
        headers = {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time() + reset_in + 0.999)),
        }
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self.fail_next(429, times, match=match, headers=headers)

    def drop_next(self, times: int = 1, *, match: str = API_PREFIX) -> None:
        """The next `times` matching requests have their connection closed without an answer."""
        with self._lock:
            self._faults.append(Fault(match, times, 0))

    def count(self, path_prefix: str = "/video/v1/assets", status: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.path.startswith(path_prefix) and (status is None or r.status == status)
            )

    # ------------------------------------------------------------ HTTP

    def _take_fault(self, path: str) -> Fault | None:
        for f in self._faults:
            if path.startswith(f.match) and f.times > 0:
                f.times -= 1
                if f.times == 0:
                    self._faults.remove(f)
                return f
        return None

    def handle(self, h: _Handler, method: str) -> None:
        arrived = time.monotonic()
        parts = urlsplit(h.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self._lock:
            fault = self._take_fault(path)
            if fault is not None:
                status, headers, payload = fault.status, fault.headers, fault.body
            elif path.startswith(API_PREFIX):
                status, headers, payload = self._api(h, path, query)
            else:
                status, headers, payload = self._stream(path)
            self.requests.append(Request(method, path, query, status, arrived))
        if status == 0:
            h.close_connection = True  # the client sees the connection closed, no answer
            return
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h.send_response(status)
        ctype = "video/mp4" if isinstance(payload, bytes) else "application/json"
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.token_id and password == self.token_secret

    def _api(
        self, h: _Handler, path: str, query: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        if not self._authorized(h.headers.get("Authorization")):
            return (
                401,
                {"WWW-Authenticate": 'Basic realm="Mux"'},
                _error("unauthorized", "Unauthorized request"),
            )
        if path.rstrip("/") == "/video/v1/assets":
            return self._list(query)
        m = re.fullmatch(r"/video/v1/assets/([^/]+)", path)
        if m:
            asset = self._assets.get(m.group(1))
            if asset is None:
                return 404, {}, _error("not_found", "The requested asset does not exist")
            check_mux("AssetResponse", {"data": asset})
            return 200, {}, {"data": asset}
        return 404, {}, _error("not_found", "Not found")

    def _list(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        try:
            limit = int(query.get("limit", "25"))
            page = int(query.get("page", "1"))
        except ValueError:
            return 400, {}, _error("invalid_parameters", "limit and page must be integers")
        if not 1 <= limit <= 100:
            return 400, {}, _error("invalid_parameters", "limit must be between 1 and 100")
        ordered = self._ordered()
        cursor = query.get("cursor")
        if cursor:
            try:
                after = json.loads(base64.urlsafe_b64decode(cursor.encode()))
                key = (int(after["c"]), str(after["id"]))
            except (ValueError, KeyError, TypeError):
                return 400, {}, _error("invalid_parameters", "cursor is invalid")
            rest = [a for a in ordered if _sort_key(a) < key]
        else:
            rest = ordered[(max(page, 1) - 1) * limit :]
        data = rest[:limit]
        body: dict[str, Any] = {"data": data}
        if len(data) == limit:
            last = data[-1]
            token = json.dumps({"c": int(last["created_at"]), "id": last["id"]}).encode()
            body["next_cursor"] = base64.urlsafe_b64encode(token).decode()
        else:
            body["next_cursor"] = None
        check_mux("ListAssetsResponse", body)
        return 200, {}, body

    def _stream(self, path: str) -> tuple[int, dict[str, str], Any]:
        m = re.fullmatch(r"/([^/]+)/([^/]+)", path)
        if m:
            playback_id, name = m.groups()
            for asset in self._assets.values():
                if any(p["id"] == playback_id for p in asset.get("playback_ids", [])):
                    static = asset.get("static_renditions") or {}
                    for f in static.get("files") or []:
                        ready = (f.get("status") or static.get("status")) == "ready"
                        if f["name"] == name and ready and asset["status"] == "ready":
                            return 200, {}, self.rendition_bytes(asset, name)
        return 404, {}, _error("not_found", "Not found")


def _sort_key(asset: dict[str, Any]) -> tuple[int, str]:
    return int(asset["created_at"]), str(asset["id"])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.fake.handle(self, "GET")  # type: ignore[attr-defined]

    def do_HEAD(self) -> None:
        self.server.fake.handle(self, "HEAD")  # type: ignore[attr-defined]
