"""A Mixpeek API double on real HTTP (127.0.0.1), written from the reference, strict as the API.

It implements exactly the shape `mixsync_dagster/targets/mixpeek.py` documents:

- `GET /v1/buckets/{b}`; objects: `POST .../objects` (one), `POST .../objects/batch` (1..100,
  partial success `{succeeded, failed: [{object_index, error, error_type}]}`),
  `POST .../objects/list?limit=1..100&offset=` (filters `AND`/`OR`/`NOT` of `{field, operator,
  value}`, operators eq, ne, in, nin, gt, gte, lt, lte, exists; `sort`; `select`),
  `GET`/`PUT`/`DELETE .../objects/{id}` (PUT replaces blobs and merges metadata);
- uploads: `POST .../uploads` → `presigned_url` on this server (`PUT /_storage/{id}?X-Amz-...`,
  which like S3 refuses a request that also carries an `Authorization` header), then
  `POST .../uploads/{id}/confirm` (idempotent; creates an object when `create_object_on_confirm`);
- batches: `POST .../batches {object_ids}`, `GET .../batches/{id}`, `POST .../batches/{id}/submit`
  (409 once submitted; processing is instant unless `process_seconds` is set);
  `GET /v1/tasks/{id}`.

Validation, as the real API answers: no or a wrong `Authorization: Bearer` → 401 (the detail
echoes the refused key, on purpose: the client must scrub what it repeats); no or an unknown
`X-Namespace` → 400; an unknown bucket → 404; a body that is not the documented shape (unknown
fields, wrong types, more than 100 objects) → 422 with FastAPI-style `{"detail": [{loc, msg,
type}]}` for the whole request. Problems of one object that only the server can judge (a blob
property not in the bucket schema, a URL scheme it cannot fetch, an upload that is not
confirmed, a file marked as poison, metadata over 32 KB) fail that object alone.

Faults for tests (each for the next `n` matching calls; `route` limits them to one endpoint, see
`ROUTES`; `when="after"` lets the server act first and then misbehave, the ambiguous case):
`fail_next` (status, optional Retry-After), `drop_next` (close the socket without answering),
`slow_next` (sleep), `chaos` (random faults at a rate), and `arm_crash(pid)`: after the next
successful bulk create, SIGKILL that client process and drop the connection, which is exactly
"the run died between the API call and its own bookkeeping". `calls` counts requests per route,
`requests` logs them, `list_objects()` returns every object.

Run standalone (for the benchmark): `python -m tests.fake_mixpeek --port 0` prints its URL;
`GET /_fake/objects` and `GET /_fake/calls` expose the state over HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import random
import re
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROUTES = (
    "bucket_get",
    "object_create",
    "objects_batch",
    "objects_list",
    "object_get",
    "object_put",
    "object_delete",
    "uploads_create",
    "upload_put",
    "upload_confirm",
    "batches_create",
    "batch_get",
    "batch_submit",
    "task_get",
)
BLOB_TYPES = ("text", "image", "audio", "video", "pdf", "excel")
MAX_BATCH_OBJECTS = 100
MAX_LIST_LIMIT = 100
MAX_METADATA_BYTES = 32 * 1024
MIME_RE = re.compile(r"^[\w.+-]+/[\w.+-]+$")
_B = r"/v1/buckets/(?P<b>[^/]+)"
_PATTERNS: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(rf"^{_B}$"), "bucket_get"),
    ("POST", re.compile(rf"^{_B}/objects$"), "object_create"),
    ("POST", re.compile(rf"^{_B}/objects/batch$"), "objects_batch"),
    ("POST", re.compile(rf"^{_B}/objects/list$"), "objects_list"),
    ("GET", re.compile(rf"^{_B}/objects/(?P<id>[^/]+)$"), "object_get"),
    ("PUT", re.compile(rf"^{_B}/objects/(?P<id>[^/]+)$"), "object_put"),
    ("DELETE", re.compile(rf"^{_B}/objects/(?P<id>[^/]+)$"), "object_delete"),
    ("POST", re.compile(rf"^{_B}/uploads$"), "uploads_create"),
    ("POST", re.compile(rf"^{_B}/uploads/(?P<id>[^/]+)/confirm$"), "upload_confirm"),
    ("PUT", re.compile(r"^/_storage/(?P<id>[^/]+)$"), "upload_put"),
    ("POST", re.compile(rf"^{_B}/batches$"), "batches_create"),
    ("GET", re.compile(rf"^{_B}/batches/(?P<id>[^/]+)$"), "batch_get"),
    ("POST", re.compile(rf"^{_B}/batches/(?P<id>[^/]+)/submit$"), "batch_submit"),
    ("GET", re.compile(r"^/v1/tasks/(?P<id>[^/]+)$"), "task_get"),
]


@dataclass
class Fault:
    """What to do to the next `times` calls of `route` (any route when None)."""

    kind: str  # status | drop | slow
    times: int
    route: str | None = None
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    when: str = "before"  # before | after the server acts on the request


@dataclass(frozen=True)
class Logged:
    route: str
    method: str
    path: str
    status: int
    """0: the connection was dropped without an answer."""
    at: float
    had_auth: bool


class _Reply(Exception):
    """Answer now with this status and body."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


def _invalid(*problems: tuple[list[Any], str, str]) -> _Reply:
    return _Reply(
        422, {"detail": [{"loc": loc, "msg": msg, "type": t} for loc, msg, t in problems]}
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _derive_type(mime: str) -> str:
    top = mime.split("/", 1)[0]
    if mime == "application/pdf":
        return "pdf"
    if "excel" in mime or "spreadsheet" in mime:
        return "excel"
    return top if top in ("video", "image", "audio") else "text"


def _resolve(obj: dict[str, Any], dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


_MISSING = object()


def _cond(obj: dict[str, Any], c: dict[str, Any]) -> bool:
    v = _resolve(obj, c["field"])
    op, want = c["operator"], c.get("value")
    if op == "exists":
        return (v is not _MISSING and v is not None) == (want is not False)
    if v is _MISSING:
        return op in ("ne", "nin")
    try:
        return {
            "eq": lambda: v == want,
            "ne": lambda: v != want,
            "in": lambda: v in want,
            "nin": lambda: v not in want,
            "gt": lambda: v > want,
            "gte": lambda: v >= want,
            "lt": lambda: v < want,
            "lte": lambda: v <= want,
        }[op]()
    except TypeError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client gave up (a timeout under test): nothing to report
        super().handle_error(request, client_address)


class FakeMixpeek:
    """The double's state and its ThreadingHTTPServer (a daemon thread, or `serve_forever`)."""

    def __init__(
        self,
        *,
        api_key: str = "sk_test_fake_key_0123456789",
        namespace: str = "ns_test_fake",
        buckets: tuple[str, ...] = ("bkt_test",),
        schema_properties: tuple[str, ...] = ("content",),
        max_upload_bytes: int | None = None,
        record_requests: bool = True,
    ):
        self.api_key = api_key
        self.namespace = namespace
        self.buckets = {
            b: {
                "bucket_id": b,
                "bucket_name": b.removeprefix("bkt_"),
                "bucket_schema": {"properties": {p: {"type": "any"} for p in schema_properties}},
            }
            for b in buckets
        }
        self.max_upload_bytes = max_upload_bytes
        self.record_requests = record_requests
        self.process_seconds = 0.0
        self.batch_outcome = "COMPLETED"
        self.objects: dict[str, dict[str, Any]] = {}
        self._by_ref: dict[str, list[str]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.storage: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.requests: list[Logged] = []
        self.crashes: list[int] = []
        """Pids killed through the crash window."""
        self._faults: list[Fault] = []
        self._chaos: tuple[float, random.Random, tuple[str, ...]] | None = None
        self._poison: list[str] = []
        self._crash: tuple[int, str] | None = None
        self._seq = 0
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self, port: int = 0) -> FakeMixpeek:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # One write per answer and no Nagle: keep-alive without 40 ms ACK stalls.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        self._server = _Server(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeMixpeek:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ test controls

    def fail_next(
        self,
        n: int,
        status: int = 500,
        *,
        route: str | None = None,
        retry_after: float | None = None,
        when: str = "before",
    ) -> None:
        self._add(Fault("status", n, route, status=status, retry_after=retry_after, when=when))

    def drop_next(self, n: int, *, route: str | None = None, when: str = "before") -> None:
        self._add(Fault("drop", n, route, when=when))

    def slow_next(
        self, n: int, seconds: float, *, route: str | None = None, when: str = "before"
    ) -> None:
        self._add(Fault("slow", n, route, seconds=seconds, when=when))

    def chaos(
        self,
        rate: float,
        *,
        seed: int = 1,
        kinds: tuple[str, ...] = ("429", "500", "500-after", "drop", "drop-after"),
    ) -> None:
        """Each API call, with probability `rate`, gets one fault drawn from `kinds`."""
        self._chaos = (rate, random.Random(seed), kinds) if rate > 0 else None

    def arm_crash(self, pid: int, *, route: str = "objects_batch") -> None:
        """SIGKILL `pid` right after the next successful call of `route`, before answering."""
        with self._lock:
            self._crash = (pid, route)

    def poison(self, marker: str) -> None:
        """Objects whose source key or file name contains `marker` fail as undecodable."""
        with self._lock:
            self._poison.append(marker)

    def faults_left(self) -> int:
        """Injected faults not served yet (0: every one of them happened)."""
        with self._lock:
            return sum(f.times for f in self._faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._chaos = None
            self._crash = None

    def _add(self, fault: Fault) -> None:
        assert fault.route is None or fault.route in ROUTES, fault.route
        with self._lock:
            self._faults.append(fault)

    def list_objects(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._public(o) for o in self._sorted(self.objects.values())]

    def set_api_key(self, key: str) -> None:
        with self._lock:
            self.api_key = key

    # ------------------------------------------------------------ HTTP

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        if url.path.startswith("/_fake/"):
            self._send(h, *self._admin(url.path))
            return
        route, params = "unknown", {}
        for method, pattern, name in _PATTERNS:
            m = pattern.match(url.path)
            if m and method == h.command:
                route, params = name, m.groupdict()
                break
        fault = self._take_fault(route)
        if fault and fault.when == "before" and self._misbehave(h, route, url.path, fault):
            return
        try:
            status, body, headers = self._dispatch(route, params, h, raw, parse_qs(url.query))
        except _Reply as r:
            status, body, headers = r.status, r.body, r.headers
        crash = None
        with self._lock:
            if self._crash and self._crash[1] == route and 200 <= status < 300:
                crash, self._crash = self._crash[0], None
        if crash is not None:
            self.crashes.append(crash)
            with contextlib.suppress(ProcessLookupError):
                os.kill(crash, signal.SIGKILL)
            self._log(route, h, url.path, 0)
            h.close_connection = True
            return
        if fault and fault.when == "after" and self._misbehave(h, route, url.path, fault):
            return
        self._log(route, h, url.path, status)
        self._send(h, status, body, headers)

    def _take_fault(self, route: str) -> Fault | None:
        with self._lock:
            self.calls[route] += 1
            for f in self._faults:
                if f.route is None or f.route == route:
                    f.times -= 1
                    if f.times <= 0:
                        self._faults.remove(f)
                    return f
            if self._chaos and route != "unknown":
                rate, rng, kinds = self._chaos
                if rng.random() < rate:
                    kind = rng.choice(kinds)
                    when = "after" if kind.endswith("-after") else "before"
                    base = kind.removesuffix("-after")
                    if base == "drop":
                        return Fault("drop", 1, route, when=when)
                    return Fault("status", 1, route, status=int(base), retry_after=0.05, when=when)
        return None

    def _misbehave(self, h: BaseHTTPRequestHandler, route: str, path: str, f: Fault) -> bool:
        """Apply a fault; True when the request has been answered (or dropped) by it."""
        if f.kind == "slow":
            time.sleep(f.seconds)
            return False
        if f.kind == "drop":
            self._log(route, h, path, 0)
            h.close_connection = True
            return True
        headers = {}
        if f.retry_after is not None:
            headers["Retry-After"] = f"{f.retry_after:g}"
        detail = "Too many requests" if f.status == 429 else "Internal server error"
        self._log(route, h, path, f.status)
        self._send(h, f.status, {"detail": detail}, headers)
        return True

    def _log(self, route: str, h: BaseHTTPRequestHandler, path: str, status: int) -> None:
        if self.record_requests:
            with self._lock:
                self.requests.append(
                    Logged(
                        route,
                        h.command,
                        path,
                        status,
                        time.monotonic(),
                        "Authorization" in h.headers,
                    )
                )

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        h.send_response(status)
        if body is not None:
            h.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h._headers_buffer.append(b"\r\n")  # type: ignore[attr-defined]
        h.wfile.write(b"".join(h._headers_buffer) + data)  # type: ignore[attr-defined]
        h._headers_buffer = []  # type: ignore[attr-defined]

    def _admin(self, path: str) -> tuple[int, Any]:
        if path == "/_fake/objects":
            return 200, {"objects": self.list_objects()}
        if path == "/_fake/calls":
            with self._lock:
                return 200, {"calls": dict(self.calls)}
        return 404, {"detail": "Not Found"}

    # ------------------------------------------------------------ API

    def _dispatch(
        self,
        route: str,
        p: dict[str, str],
        h: BaseHTTPRequestHandler,
        raw: bytes,
        query: dict[str, list[str]],
    ) -> tuple[int, Any, dict[str, str]]:
        if route == "unknown":
            raise _Reply(404, {"detail": "Not Found"})
        if route == "upload_put":
            return self._storage_put(p["id"], h, raw, query)
        self._authorise(h)
        body = None
        if h.command in ("POST", "PUT"):
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                raise _invalid((["body"], "JSON decode error", "json_invalid")) from None
        with self._lock:
            if route == "task_get":
                return 200, self._task(p["id"]), {}
            bucket = p["b"]
            if bucket not in self.buckets:
                raise _Reply(404, {"detail": f"Bucket '{bucket}' not found"})
            handler = getattr(self, "_r_" + route)
            status, out = handler(bucket, p.get("id"), body, query)
            return status, out, {}

    def _authorise(self, h: BaseHTTPRequestHandler) -> None:
        auth = h.headers.get("Authorization")
        if not auth:
            raise _Reply(401, {"detail": "Missing Authorization header"})
        scheme, _, key = auth.partition(" ")
        if scheme != "Bearer" or not key:
            raise _Reply(401, {"detail": "Authorization must be 'Bearer <api key>'"})
        if key != self.api_key:
            raise _Reply(401, {"detail": f"Invalid API key '{key}'"})
        ns = h.headers.get("X-Namespace")
        if not ns:
            raise _Reply(400, {"detail": "X-Namespace header is required"})
        if ns != self.namespace:
            raise _Reply(400, {"detail": f"Namespace '{ns}' not found"})

    # validation helpers ----------------------------------------------------------

    @staticmethod
    def _shape(
        value: Any,
        loc: list[Any],
        allowed: dict[str, type | tuple[type, ...]],
        required: tuple[str, ...] = (),
    ) -> list[tuple[list[Any], str, str]]:
        if not isinstance(value, dict):
            return [(loc, "Input should be a valid dictionary", "dict_type")]
        out = []
        for k in value:
            if k not in allowed:
                out.append(([*loc, k], "Extra inputs are not permitted", "extra_forbidden"))
        for k in required:
            if k not in value:
                out.append(([*loc, k], "Field required", "missing"))
        for k, t in allowed.items():
            if k in value and value[k] is not None and not isinstance(value[k], t):
                out.append(([*loc, k], f"Input should be of type {t}", "type_error"))
            if k in value and t is int and isinstance(value[k], bool):
                out.append(([*loc, k], "Input should be a valid integer", "int_type"))
        return out

    def _object_shape(self, obj: Any, loc: list[Any]) -> list[tuple[list[Any], str, str]]:
        problems = self._shape(
            obj,
            loc,
            {"key_prefix": str, "blobs": list, "metadata": dict, "skip_duplicates": bool},
            ("blobs",),
        )
        if problems:
            return problems
        if not obj["blobs"]:
            return [([*loc, "blobs"], "List should have at least 1 item", "too_short")]
        for j, blob in enumerate(obj["blobs"]):
            bl = [*loc, "blobs", j]
            ps = self._shape(
                blob,
                bl,
                {
                    "property": str,
                    "type": str,
                    "data": (str, dict),
                    "upload_id": str,
                    "metadata": dict,
                },
                ("property", "type"),
            )
            if not ps and blob["type"] not in BLOB_TYPES:
                ps.append(
                    ([*bl, "type"], f"Input should be one of {', '.join(BLOB_TYPES)}", "enum")
                )
            if not ps and ("data" in blob) == ("upload_id" in blob):
                ps.append((bl, "Give exactly one of 'data' or 'upload_id'", "value_error"))
            if not ps and isinstance(blob.get("data"), dict):
                ps += self._shape(
                    blob["data"],
                    [*bl, "data"],
                    {"base64": str, "mime_type": str, "filename": str},
                    ("base64", "mime_type"),
                )
            problems += ps
        meta = obj.get("metadata")
        if meta is not None and len(json.dumps(meta)) > MAX_METADATA_BYTES:
            problems.append(
                (
                    [*loc, "metadata"],
                    f"Metadata must be at most {MAX_METADATA_BYTES} bytes as JSON",
                    "value_error",
                )
            )
        return problems

    def _object_problem(self, bucket: str, obj: dict[str, Any]) -> tuple[str, str] | None:
        """What only the server can judge about one object: (error, error_type) or None."""
        props = self.buckets[bucket]["bucket_schema"]["properties"]
        for j, blob in enumerate(obj["blobs"]):
            if blob["property"] not in props:
                return (
                    f"blobs[{j}].property: '{blob['property']}' is not a property of the bucket "
                    f"schema (properties: {', '.join(sorted(props))})",
                    "schema_error",
                )
            data = blob.get("data")
            if isinstance(data, str) and not (
                data.startswith(("https://", "http://", "s3://", "data:"))
            ):
                scheme = data.split(":", 1)[0] if ":" in data else "none"
                return (
                    f"blobs[{j}].data: unsupported URL scheme '{scheme}' "
                    "(use https://, s3://, a data URI or an upload_id)",
                    "validation_error",
                )
            uid = blob.get("upload_id")
            if uid is not None:
                up = self.uploads.get(uid)
                if up is None or up["bucket_id"] != bucket:
                    return f"blobs[{j}].upload_id: upload '{uid}' not found", "not_found"
                if up["status"] != "COMPLETED":
                    return (
                        f"blobs[{j}].upload_id: upload '{uid}' is not confirmed",
                        "validation_error",
                    )
            names = [str(_resolve(obj, "metadata.mixsync.source_key"))]
            if uid is not None:
                names.append(self.uploads[uid]["filename"])
            if any(m in n for m in self._poison for n in names):
                return (
                    f"blobs[{j}].data: the file could not be decoded as {blob['type']} "
                    "(corrupt or unsupported content)",
                    "invalid_blob",
                )
        return None

    def _new_object(self, bucket: str, obj: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        oid = "obj_" + uuid.uuid4().hex[:20]
        now = _now()
        rec = {
            "object_id": oid,
            "bucket_id": bucket,
            "key_prefix": obj.get("key_prefix"),
            "blobs": [self._blob(b) for b in obj["blobs"]],
            "metadata": copy.deepcopy(obj.get("metadata") or {}),
            "skip_duplicates": obj.get("skip_duplicates", True),
            "status": "DRAFT",
            "created_at": now,
            "updated_at": now,
            "_seq": self._seq,
        }
        self.objects[oid] = rec
        self._index(rec)
        return rec

    def _blob(self, blob: dict[str, Any]) -> dict[str, Any]:
        out = {"blob_id": "blob_" + uuid.uuid4().hex[:12], **copy.deepcopy(blob)}
        uid = blob.get("upload_id")
        if uid is not None:
            up = self.uploads[uid]
            data = self.storage[uid]
            out["details"] = {
                "filename": up["filename"],
                "size_bytes": len(data),
                "mime_type": up["content_type"],
                "hash": hashlib.sha256(data).hexdigest(),
            }
        return out

    def _index(self, rec: dict[str, Any]) -> None:
        ref = _resolve(rec, "metadata.mixsync.source_ref")
        if isinstance(ref, str):
            self._by_ref.setdefault(ref, []).append(rec["object_id"])

    def _unindex(self, rec: dict[str, Any]) -> None:
        ref = _resolve(rec, "metadata.mixsync.source_ref")
        if isinstance(ref, str) and rec["object_id"] in self._by_ref.get(ref, []):
            self._by_ref[ref].remove(rec["object_id"])

    @staticmethod
    def _public(rec: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in rec.items() if not k.startswith("_")}

    @staticmethod
    def _sorted(recs: Any, key: str = "_seq", reverse: bool = False) -> list[dict[str, Any]]:
        return sorted(recs, key=lambda r: (r.get(key) or "", r["_seq"]), reverse=reverse)

    # routes -----------------------------------------------------------------------

    def _r_bucket_get(self, bucket: str, _id: Any, _b: Any, _q: Any) -> tuple[int, Any]:
        count = sum(1 for o in self.objects.values() if o["bucket_id"] == bucket)
        return 200, {**copy.deepcopy(self.buckets[bucket]), "object_count": count}

    def _r_object_create(self, bucket: str, _id: Any, body: Any, _q: Any) -> tuple[int, Any]:
        problems = self._object_shape(body, ["body"])
        if problems:
            raise _invalid(*problems)
        bad = self._object_problem(bucket, body)
        if bad:
            raise _Reply(422, {"detail": bad[0], "error_type": bad[1]})
        return 200, self._public(self._new_object(bucket, body))

    def _r_objects_batch(self, bucket: str, _id: Any, body: Any, _q: Any) -> tuple[int, Any]:
        problems = self._shape(body, ["body"], {"objects": list}, ("objects",))
        if problems:
            raise _invalid(*problems)
        objs = body["objects"]
        if not objs:
            raise _invalid((["body", "objects"], "List should have at least 1 item", "too_short"))
        if len(objs) > MAX_BATCH_OBJECTS:
            raise _invalid(
                (
                    ["body", "objects"],
                    f"List should have at most {MAX_BATCH_OBJECTS} items after validation, "
                    f"not {len(objs)}",
                    "too_long",
                )
            )
        for i, obj in enumerate(objs):
            problems += self._object_shape(obj, ["body", "objects", i])
        if problems:
            raise _invalid(*problems)
        succeeded, failed = [], []
        for i, obj in enumerate(objs):
            bad = self._object_problem(bucket, obj)
            if bad:
                failed.append({"object_index": i, "error": bad[0], "error_type": bad[1]})
            else:
                succeeded.append(self._public(self._new_object(bucket, obj)))
        return 200, {"succeeded": succeeded, "failed": failed}

    def _r_objects_list(
        self, bucket: str, _id: Any, body: Any, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        body = {} if body is None else body
        cond = {"field": str, "operator": str, "value": object}
        problems = self._shape(
            body,
            ["body"],
            {"filters": dict, "sort": dict, "search": str, "select": list},
        )
        if problems:
            raise _invalid(*problems)
        filters = body.get("filters") or {}
        problems += self._shape(
            filters,
            ["body", "filters"],
            {"AND": list, "OR": list, "NOT": list, "case_sensitive": bool},
        )
        ops = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists")
        for group in ("AND", "OR", "NOT"):
            for k, c in enumerate(filters.get(group) or []):
                loc = ["body", "filters", group, k]
                ps = self._shape(c, loc, cond, ("field", "operator"))
                if not ps and c["operator"] not in ops:
                    ps.append(([*loc, "operator"], f"Input should be one of {ops}", "enum"))
                if not ps and c["operator"] in ("in", "nin") and not isinstance(c["value"], list):
                    ps.append(([*loc, "value"], "Input should be a valid list", "list_type"))
                problems += ps
        sort = body.get("sort")
        if sort is not None:
            problems += self._shape(sort, ["body", "sort"], {"field": str, "direction": str})
            if not problems and sort.get("direction", "asc") not in ("asc", "desc"):
                problems.append((["body", "sort", "direction"], "asc or desc", "enum"))
        try:
            limit = int(query.get("limit", ["10"])[0])
            offset = int(query.get("offset", ["0"])[0])
        except ValueError:
            raise _invalid((["query", "limit"], "Input should be a valid integer", "int")) from None
        if not 1 <= limit <= MAX_LIST_LIMIT:
            problems.append((["query", "limit"], f"must be 1..{MAX_LIST_LIMIT}", "range"))
        if offset < 0:
            problems.append((["query", "offset"], "must be >= 0", "range"))
        if problems:
            raise _invalid(*problems)
        and_ = list(filters.get("AND") or [])
        candidates: Any = self.objects.values()
        if (
            and_
            and and_[0]["field"] == "metadata.mixsync.source_ref"
            and and_[0]["operator"] in ("eq", "in")
        ):
            wanted = and_[0]["value"] if and_[0]["operator"] == "in" else [and_[0]["value"]]
            candidates = [self.objects[oid] for ref in wanted for oid in self._by_ref.get(ref, [])]
        hits = [
            o
            for o in candidates
            if o["bucket_id"] == bucket
            and all(_cond(o, c) for c in and_)
            and (not filters.get("OR") or any(_cond(o, c) for c in filters["OR"]))
            and not any(_cond(o, c) for c in filters.get("NOT") or [])
        ]
        if sort:
            hits = self._sorted(hits, sort["field"], sort.get("direction") == "desc")
        else:
            hits = self._sorted(hits)
        page = hits[offset : offset + limit]
        select = body.get("select")
        results = [
            {
                k: v
                for k, v in self._public(o).items()
                if not select or k in select or k == "object_id"
            }
            for o in page
        ]
        return 200, {
            "results": results,
            "pagination": {
                "total": len(hits),
                "limit": limit,
                "offset": offset,
                "has_more": offset + len(page) < len(hits),
            },
        }

    def _object(self, bucket: str, oid: str) -> dict[str, Any]:
        rec = self.objects.get(oid)
        if rec is None or rec["bucket_id"] != bucket:
            raise _Reply(404, {"detail": f"Object '{oid}' not found"})
        return rec

    def _r_object_get(self, bucket: str, oid: str, _b: Any, _q: Any) -> tuple[int, Any]:
        return 200, self._public(self._object(bucket, oid))

    def _r_object_put(self, bucket: str, oid: str, body: Any, _q: Any) -> tuple[int, Any]:
        rec = self._object(bucket, oid)
        problems = self._object_shape(body, ["body"])
        if problems:
            raise _invalid(*problems)
        bad = self._object_problem(bucket, body)
        if bad:
            raise _Reply(422, {"detail": bad[0], "error_type": bad[1]})
        self._unindex(rec)
        rec["blobs"] = [self._blob(b) for b in body["blobs"]]
        rec["metadata"] = {**rec["metadata"], **copy.deepcopy(body.get("metadata") or {})}
        if "key_prefix" in body:
            rec["key_prefix"] = body["key_prefix"]
        rec["status"] = "DRAFT"
        rec["updated_at"] = _now()
        self._index(rec)
        return 200, self._public(rec)

    def _r_object_delete(self, bucket: str, oid: str, _b: Any, _q: Any) -> tuple[int, Any]:
        rec = self._object(bucket, oid)
        self._unindex(rec)
        del self.objects[oid]
        return 200, {"object_id": oid, "deleted": True}

    def _r_uploads_create(self, bucket: str, _id: Any, body: Any, _q: Any) -> tuple[int, Any]:
        problems = self._shape(
            body,
            ["body"],
            {
                "filename": str,
                "content_type": str,
                "file_size_bytes": int,
                "blob_property": str,
                "create_object_on_confirm": bool,
                "object_metadata": dict,
                "file_hash": str,
                "skip_duplicates": bool,
                "description": str,
            },
            ("filename", "content_type", "file_size_bytes"),
        )
        if problems:
            raise _invalid(*problems)
        name = body["filename"]
        if not name or "/" in name or "\\" in name or name in (".", "..") or len(name) > 255:
            problems.append((["body", "filename"], "Invalid file name", "value_error"))
        if not MIME_RE.match(body["content_type"]):
            problems.append((["body", "content_type"], "Not a valid MIME type", "value_error"))
        size = body["file_size_bytes"]
        if size < 0:
            problems.append((["body", "file_size_bytes"], "Must be >= 0", "value_error"))
        if self.max_upload_bytes is not None and size > self.max_upload_bytes:
            problems.append(
                (
                    ["body", "file_size_bytes"],
                    f"{size} bytes exceeds the upload limit of {self.max_upload_bytes} bytes",
                    "value_error",
                )
            )
        prop = body.get("blob_property")
        props = self.buckets[bucket]["bucket_schema"]["properties"]
        if prop is not None and prop not in props:
            problems.append(
                (["body", "blob_property"], f"'{prop}' is not a bucket schema property", "schema")
            )
        if problems:
            raise _invalid(*problems)
        uid = "upl_" + uuid.uuid4().hex[:20]
        sig = hashlib.sha256(f"{uid}:{self.api_key}".encode()).hexdigest()[:32]
        rec = {
            "upload_id": uid,
            "bucket_id": bucket,
            "filename": name,
            "content_type": body["content_type"],
            "file_size_bytes": size,
            "blob_property": prop or "content",
            "blob_type": _derive_type(body["content_type"]).upper(),
            "create_object_on_confirm": body.get("create_object_on_confirm", True),
            "object_metadata": body.get("object_metadata") or {},
            "status": "PENDING",
            "object_id": None,
            "created_at": _now(),
            "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            "_sig": sig,
        }
        self.uploads[uid] = rec
        out = self._public(rec)
        out["presigned_url"] = f"{self.url}/_storage/{uid}?X-Amz-Signature={sig}"
        out["presigned_url_expiration"] = 3600
        return 200, out

    def _storage_put(
        self, uid: str, h: BaseHTTPRequestHandler, raw: bytes, query: dict[str, list[str]]
    ) -> tuple[int, Any, dict[str, str]]:
        if "Authorization" in h.headers:
            raise _Reply(400, {"detail": "InvalidArgument: Only one auth mechanism allowed"})
        with self._lock:
            up = self.uploads.get(uid)
            if up is None or query.get("X-Amz-Signature", [""])[0] != up["_sig"]:
                raise _Reply(403, {"detail": "SignatureDoesNotMatch"})
            self.storage[uid] = raw
        return 200, None, {"ETag": '"' + hashlib.md5(raw).hexdigest() + '"'}

    def _r_upload_confirm(self, bucket: str, uid: str, body: Any, _q: Any) -> tuple[int, Any]:
        body = {} if body is None else body
        problems = self._shape(body, ["body"], {"etag": str, "file_size_bytes": int})
        if problems:
            raise _invalid(*problems)
        up = self.uploads.get(uid)
        if up is None or up["bucket_id"] != bucket:
            raise _Reply(404, {"detail": f"Upload '{uid}' not found"})
        if up["status"] == "COMPLETED":
            return 200, {"upload_id": uid, "status": "COMPLETED", "object_id": up["object_id"]}
        data = self.storage.get(uid)
        if data is None:
            raise _Reply(409, {"detail": f"upload_id: no file was uploaded for upload '{uid}'"})
        if len(data) != up["file_size_bytes"]:
            raise _invalid(
                (
                    ["body", "file_size_bytes"],
                    f"uploaded {len(data)} bytes, the upload declared {up['file_size_bytes']}",
                    "value_error",
                )
            )
        if "file_size_bytes" in body and body["file_size_bytes"] != len(data):
            raise _invalid(
                (
                    ["body", "file_size_bytes"],
                    f"uploaded {len(data)} bytes, the request says {body['file_size_bytes']}",
                    "value_error",
                )
            )
        if "etag" in body and body["etag"].strip('"') != hashlib.md5(data).hexdigest():
            raise _invalid((["body", "etag"], "ETag does not match the upload", "value_error"))
        up["status"] = "COMPLETED"
        if up["create_object_on_confirm"]:
            obj = {
                "blobs": [
                    {
                        "property": up["blob_property"],
                        "type": up["blob_type"].lower(),
                        "upload_id": uid,
                    }
                ],
                "metadata": up["object_metadata"],
            }
            up["object_id"] = self._new_object(bucket, obj)["object_id"]
        return 200, {"upload_id": uid, "status": "COMPLETED", "object_id": up["object_id"]}

    def _r_batches_create(self, bucket: str, _id: Any, body: Any, _q: Any) -> tuple[int, Any]:
        problems = self._shape(
            body, ["body"], {"object_ids": list, "metadata": dict}, ("object_ids",)
        )
        if problems:
            raise _invalid(*problems)
        ids = body["object_ids"]
        if not ids:
            raise _invalid(
                (["body", "object_ids"], "List should have at least 1 item", "too_short")
            )
        for i, oid in enumerate(ids):
            rec = self.objects.get(oid) if isinstance(oid, str) else None
            if rec is None or rec["bucket_id"] != bucket:
                problems.append(
                    (["body", "object_ids", i], f"object '{oid}' not found in bucket", "not_found")
                )
        if problems:
            raise _invalid(*problems)
        bid = "btch_" + uuid.uuid4().hex[:20]
        self._seq += 1
        self.batches[bid] = {
            "batch_id": bid,
            "bucket_id": bucket,
            "object_ids": list(ids),
            "status": "DRAFT",
            "task_id": None,
            "created_at": _now(),
            "submitted_at": None,
            "_submitted": None,
            "_seq": self._seq,
        }
        return 200, self._public(self.batches[bid])

    def _batch_status(self, b: dict[str, Any]) -> str:
        if b["_submitted"] is None:
            return "DRAFT"
        if time.monotonic() - b["_submitted"] < self.process_seconds:
            return "PROCESSING"
        return str(b["_outcome"])

    def _r_batch_get(self, bucket: str, bid: str, _b: Any, _q: Any) -> tuple[int, Any]:
        b = self.batches.get(bid)
        if b is None or b["bucket_id"] != bucket:
            raise _Reply(404, {"detail": f"Batch '{bid}' not found"})
        return 200, {**self._public(b), "status": self._batch_status(b)}

    def _r_batch_submit(self, bucket: str, bid: str, body: Any, _q: Any) -> tuple[int, Any]:
        problems = self._shape({} if body is None else body, ["body"], {})
        if problems:
            raise _invalid(*problems)
        b = self.batches.get(bid)
        if b is None or b["bucket_id"] != bucket:
            raise _Reply(404, {"detail": f"Batch '{bid}' not found"})
        if b["_submitted"] is not None:
            raise _Reply(
                409, {"detail": f"Batch '{bid}' was already submitted (task '{b['task_id']}')"}
            )
        tid = "task_" + uuid.uuid4().hex[:20]
        b.update(
            task_id=tid,
            submitted_at=_now(),
            _submitted=time.monotonic(),
            _outcome=self.batch_outcome,
        )
        for oid in b["object_ids"]:
            if oid in self.objects:
                self.objects[oid]["status"] = (
                    "COMPLETED" if self.batch_outcome == "COMPLETED" else "FAILED"
                )
        self.tasks[tid] = {"task_id": tid, "batch_id": bid, "created_at": _now()}
        return 200, {"batch_id": bid, "status": "QUEUED", "task_id": tid}

    def _task(self, tid: str) -> dict[str, Any]:
        t = self.tasks.get(tid)
        if t is None:
            raise _Reply(404, {"detail": f"Task '{tid}' not found"})
        status = self._batch_status(self.batches[t["batch_id"]])
        return {
            "task_id": tid,
            "task_type": "api_buckets_batches_process",
            "status": status,
            "inputs": [t["batch_id"]],
            "created_at": t["created_at"],
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--api-key", default="sk_test_fake_key_0123456789")
    ap.add_argument("--namespace", default="ns_test_fake")
    ap.add_argument("--bucket", default="bkt_test")
    ap.add_argument("--no-log", action="store_true", help="do not keep a per-request log")
    args = ap.parse_args()
    fake = FakeMixpeek(
        api_key=args.api_key,
        namespace=args.namespace,
        buckets=(args.bucket,),
        record_requests=not args.no_log,
    ).start(args.port)
    print(fake.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
