"""A Mixpeek API double on real HTTP (127.0.0.1) whose contract is the vendor's SDK.

Every request body is checked with the `mixpeek` SDK's (1.3.783, OpenAPI v0.82) model of that
request and every answer with the model of that answer (`tests/mixpeek_contract.py`): a key a
request model does not declare is refused with 422 `extra_forbidden`, and an answer the SDK
could not parse is a bug of the double (500, the test fails). Paths, query parameters and the
behaviour below come from `mixpeek/api/*.py` (documented responses and descriptions) and
`mixpeek/models/*.py`; each rule names its source.

Routes (`bucket_objects_api`, `bucket_uploads_api`, `bucket_batches_api`, `tasks_api`,
`buckets_api`):

- `GET /v1/buckets/{b}` → BucketResponse.
- `POST .../objects` (CreateObjectRequest; query `auto_process`) → ObjectResponse;
  `POST .../objects/batch` (CreateObjectsBatchRequest, ≤ 100; query `auto_process`) →
  CreateObjectsBatchResponse: partial success, rows in request order with `object_index`;
  **422 with the same body when every object failed**. `idempotency_key`: an object with the
  same key in the bucket is returned instead (`replayed: true`). `skip_duplicates` (default
  false) returns an object holding the same content. Sending `auto_process` in the body is 422.
  New objects are PENDING.
- `POST .../objects/list` (ListObjectsRequest; "a body key this endpoint does not read is
  rejected with a 422"; query `limit` 1..1000, `cursor`, `offset` ≤ 10,000, `include_total`)
  → `{results, pagination: {next_cursor, page_size, total?}}`: no `has_more`; without `sort`,
  creation order; string matching case-insensitive unless `case_sensitive`.
- `GET` / `PUT` (UpdateObjectRequest) / `DELETE` (204) `.../objects/{id}`. PUT "cannot replace
  blobs": a root key naming a system field (`blobs`, `status`, `object_id`, ...) is 422, as for
  PATCH ("System names such as status, object_id and blobs are reserved and return a 422"); a
  `metadata` key the object holds in its own `metadata` is updated there, others at the root;
  PUT does not trigger processing.
- `POST .../uploads` (CreateUploadRequest) → UploadResponse (201; 200 for a duplicate found by
  `file_hash` with `skip_duplicates`, which then has no `presigned_url`). The presigned URL is
  on this server (`PUT /_storage/{id}?X-Amz-...`): like S3 it refuses a request that also
  carries `Authorization`, and **refuses a `Content-Type` other than the upload's**
  (`content_type`: "The presigned URL will enforce this content type"), with S3's XML errors.
  `POST .../uploads/{id}/confirm` (ConfirmUploadRequest) → ConfirmUploadResponse: idempotent;
  **creates an object unless `create_object_on_confirm: false`** (default true); with
  `skip_duplicates` (default true) an upload whose bytes match an earlier confirmed upload is a
  duplicate and references that upload's object instead of creating one; `auto_submit_batch`.
- `POST .../batches` (CreateBatchRequest; query `auto_submit`, `trigger_processing`,
  `skip_validation`) → BatchModel, DRAFT unless `auto_submit`; `dedup_strategy` defaults to
  `skip` (objects that already have documents are not processed again; `replace` deletes and
  reprocesses; `force` processes again). `POST .../batches/{id}/submit` (SubmitBatchRequest) →
  TaskResponse, **only from DRAFT (400 otherwise)**. A DRAFT batch not submitted within
  `draft_ttl_seconds` (the API says about 30 minutes) is CANCELED by the reaper.
  `GET .../batches/{id}` → BatchModel; `GET /v1/tasks/{id}` → TaskResponse.
  Status: DRAFT → PENDING → IN_PROGRESS (for `process_seconds`) → COMPLETED | FAILED |
  INTERRUPTED (set `batch_outcome`); SKIPPED when `skip` left nothing to process.
- Errors: `{success: false, status, error: {message, type, code, details}}` (ErrorResponse).
  Request validation is 422 with `code` `extra_forbidden` (or `validation_error`) and
  `details.errors: [{loc, msg, type}]` (where the double puts the problems: ErrorDetail only
  says `details` holds "validation errors"). 429 carries `Retry-After` and
  `error.details.retry_after_seconds`; a 429/5xx may say `error.details.retryable: false`
  (`mixpeek/_client/client.py`: "A 429/503 marked retryable: false ... not retried").

Processing: a submitted batch gives each object it processes a documents record
(`documents[object_id]`: the content hash of every blob it read, and the batch), so a test can
tell which bytes an object was processed with. Content hash: sha256 of the uploaded bytes, of
decoded inline data, or of the URL string for a URL blob (the double fetches no URLs).

Auth as the API: no or a wrong `Authorization: Bearer` → 401 (the message echoes the refused
key, on purpose: the client must scrub what it repeats); no or an unknown `X-Namespace` → 400;
an unknown bucket → 404.

Faults for tests (each for the next `n` matching calls; `route` limits them to one endpoint,
see `ROUTES`; `when="after"` lets the server act first and then misbehave, the ambiguous
case): `fail_next` (status; `retry_after` in the header and/or the body; `retryable=False`),
`drop_next` (close the socket without answering), `slow_next` (sleep), `chaos` (random faults
at a rate), and `arm_crash(pid)`: after the next successful call of a route, SIGKILL that
client process and drop the connection. `calls` counts requests per route, `requests` logs
them, `list_objects()` returns every live object as the API shows it.

Run standalone (for the benchmark): `python -m tests.fake_mixpeek --port 0` prints its URL;
`GET /_fake/objects`, `/_fake/documents` and `/_fake/calls` expose the state over HTTP.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import json
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from mixpeek.models.batch_model import BatchModel
from mixpeek.models.bucket_response import BucketResponse
from mixpeek.models.confirm_upload_request import ConfirmUploadRequest
from mixpeek.models.confirm_upload_response import ConfirmUploadResponse
from mixpeek.models.create_batch_request import CreateBatchRequest
from mixpeek.models.create_object_request import CreateObjectRequest
from mixpeek.models.create_objects_batch_request import CreateObjectsBatchRequest
from mixpeek.models.create_objects_batch_response import CreateObjectsBatchResponse
from mixpeek.models.create_upload_request import CreateUploadRequest
from mixpeek.models.error_response import ErrorResponse
from mixpeek.models.list_objects_request import ListObjectsRequest
from mixpeek.models.list_objects_response import ListObjectsResponse
from mixpeek.models.object_response import ObjectResponse
from mixpeek.models.submit_batch_request import SubmitBatchRequest
from mixpeek.models.task_response import TaskResponse
from mixpeek.models.update_object_request import UpdateObjectRequest
from mixpeek.models.upload_response import UploadResponse
from pydantic import BaseModel

from tests.mixpeek_contract import Problem, check_answer, declared, problems

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
MAX_LIST_LIMIT = 1000
MAX_LIST_OFFSET = 10_000
DEFAULT_LIST_LIMIT = 10
DRAFT_TTL_SECONDS = 1800.0
"""About 30 minutes (CreateBatchRequest.auto_submit: "the batch parked DRAFT and vanished
~30min later")."""
RESERVED_OBJECT_KEYS = frozenset(
    (set(declared(ObjectResponse)) - {"key_prefix"}) | {"bucket_id", "object_id"}
)
"""System names of an object: a PUT/PATCH body may not set them at the root."""
FILE_TYPES = ("text", "image", "audio", "video", "pdf", "excel")
_B = r"/v1/buckets/(?P<b>[^/]+)"

# method, path, route, request model, answer model (None: no JSON answer)
_ROUTING: list[tuple[str, re.Pattern[str], str, type[BaseModel] | None, type[BaseModel] | None]] = [
    ("GET", re.compile(rf"^{_B}$"), "bucket_get", None, BucketResponse),
    ("POST", re.compile(rf"^{_B}/objects$"), "object_create", CreateObjectRequest, ObjectResponse),
    (
        "POST",
        re.compile(rf"^{_B}/objects/batch$"),
        "objects_batch",
        CreateObjectsBatchRequest,
        CreateObjectsBatchResponse,
    ),
    (
        "POST",
        re.compile(rf"^{_B}/objects/list$"),
        "objects_list",
        ListObjectsRequest,
        ListObjectsResponse,
    ),
    ("GET", re.compile(rf"^{_B}/objects/(?P<id>[^/]+)$"), "object_get", None, ObjectResponse),
    (
        "PUT",
        re.compile(rf"^{_B}/objects/(?P<id>[^/]+)$"),
        "object_put",
        UpdateObjectRequest,
        ObjectResponse,
    ),
    ("DELETE", re.compile(rf"^{_B}/objects/(?P<id>[^/]+)$"), "object_delete", None, None),
    ("POST", re.compile(rf"^{_B}/uploads$"), "uploads_create", CreateUploadRequest, UploadResponse),
    (
        "POST",
        re.compile(rf"^{_B}/uploads/(?P<id>[^/]+)/confirm$"),
        "upload_confirm",
        ConfirmUploadRequest,
        ConfirmUploadResponse,
    ),
    ("PUT", re.compile(r"^/_storage/(?P<id>[^/]+)$"), "upload_put", None, None),
    ("POST", re.compile(rf"^{_B}/batches$"), "batches_create", CreateBatchRequest, BatchModel),
    ("GET", re.compile(rf"^{_B}/batches/(?P<id>[^/]+)$"), "batch_get", None, BatchModel),
    (
        "POST",
        re.compile(rf"^{_B}/batches/(?P<id>[^/]+)/submit$"),
        "batch_submit",
        SubmitBatchRequest,
        TaskResponse,
    ),
    ("GET", re.compile(r"^/v1/tasks/(?P<id>[^/]+)$"), "task_get", None, TaskResponse),
]
_BODY_OPTIONAL = {"objects_list", "upload_confirm", "batch_submit"}
_CLOSED = {"objects_list"}
"""Routes whose description refuses undeclared keys although the model keeps them."""


@dataclass
class Fault:
    """What to do to the next `times` calls of `route` (any route when None)."""

    kind: str  # status | drop | slow
    times: int
    route: str | None = None
    status: int = 500
    retry_after: float | None = None
    retry_after_in: tuple[str, ...] = ("header", "body")
    retryable: bool | None = None
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
    content_type: str | None = None


class _Reply(Exception):
    """Answer now with this status and body (`raw`: bytes sent as they are)."""

    def __init__(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        raw: bytes | None = None,
    ):
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.raw = raw


def error_body(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The API's error shape (ErrorResponse), checked against the SDK."""
    err: dict[str, Any] = {"message": message, "type": type_}
    if code is not None:
        err["code"] = code
    if details is not None:
        err["details"] = details
    body = {"success": False, "status": status, "error": err}
    check_answer(ErrorResponse, body)
    return body


def _fail(status: int, message: str, type_: str, code: str | None = None, **details: Any) -> _Reply:
    return _Reply(status, error_body(status, message, type_, code, details or None))


def _invalid(found: list[Problem]) -> _Reply:
    code = "extra_forbidden" if any(t == "extra_forbidden" for _, _, t in found) else None
    first = found[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first[0][1:])
    where = where.lstrip(".") or str(first[0][0])
    message = f"{where}: {first[1]}" + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")
    errors = [{"loc": loc, "msg": msg, "type": t} for loc, msg, t in found]
    return _fail(422, message, "validation_error", code or "validation_error", errors=errors)


def _s3_error(status: int, code: str, message: str) -> _Reply:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return _Reply(status, None, {"Content-Type": "application/xml"}, raw=xml)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_MISSING = object()


def _resolve(obj: Any, dotted: str) -> Any:
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _fold(v: Any, case_sensitive: bool) -> Any:
    if case_sensitive:
        return v
    if isinstance(v, str):
        return v.lower()
    if isinstance(v, list):
        return [x.lower() if isinstance(x, str) else x for x in v]
    return v


def _cond(obj: dict[str, Any], c: dict[str, Any], cs: bool) -> bool:
    v = _resolve(obj, c["field"])
    op, want = c.get("operator", "eq"), c.get("value")
    if op == "exists":
        return (v is not _MISSING and v is not None) == (want is not False)
    if op == "is_null":
        return (v is _MISSING or v is None) == (want is not False)
    if v is _MISSING:
        return op in ("ne", "nin")
    v, want = _fold(v, cs), _fold(want, cs)
    try:
        checks: dict[str, Callable[[], bool]] = {
            "eq": lambda: v == want,
            "ne": lambda: v != want,
            "in": lambda: v in want,
            "nin": lambda: v not in want,
            "gt": lambda: v > want,
            "gte": lambda: v >= want,
            "lt": lambda: v < want,
            "lte": lambda: v <= want,
            "contains": lambda: want in v,
            "starts_with": lambda: str(v).startswith(str(want)),
            "ends_with": lambda: str(v).endswith(str(want)),
            "regex": lambda: re.search(str(want), str(v)) is not None,
        }
        check = checks.get(op)
        if check is None:
            raise _fail(400, f"operator '{op}' is not supported on objects", "bad_request")
        return check()
    except TypeError:
        return False


def _matches(obj: dict[str, Any], node: dict[str, Any], cs: bool = False) -> bool:
    if "field" in node:
        return _cond(obj, node, cs)
    cs = bool(node.get("case_sensitive", cs))
    shorthand = {k: v for k, v in node.items() if k not in ("AND", "OR", "NOT", "case_sensitive")}
    return (
        all(
            _cond(obj, {"field": k, "operator": "eq", "value": v}, cs) for k, v in shorthand.items()
        )
        and all(_matches(obj, n, cs) for n in node.get("AND") or [])
        and (not node.get("OR") or any(_matches(obj, n, cs) for n in node["OR"]))
        and not any(_matches(obj, n, cs) for n in node.get("NOT") or [])
    )


def _select(obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """`select` with dot notation; object_id and bucket_id are always included."""
    out: dict[str, Any] = {"object_id": obj["object_id"], "bucket_id": obj["bucket_id"]}
    for path in paths:
        v = _resolve(obj, path)
        if v is _MISSING:
            continue
        parts = path.split(".")
        cur = out
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = copy.deepcopy(v)
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
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
        draft_ttl_seconds: float = DRAFT_TTL_SECONDS,
        check_answers: bool = True,
    ):
        self.api_key = api_key
        self.namespace = namespace
        self.buckets = {
            b: {
                "bucket_id": b,
                "bucket_name": b.removeprefix("bkt_"),
                # The double does not hold blob types to the schema's declared type: one
                # `content` property takes any file type (see README: blob_type).
                "bucket_schema": {"properties": {p: {"type": "text"} for p in schema_properties}},
            }
            for b in buckets
        }
        self.max_upload_bytes = max_upload_bytes
        self.record_requests = record_requests
        self.draft_ttl_seconds = draft_ttl_seconds
        self.check_answers = check_answers
        self.process_seconds = 0.0
        self.batch_outcome = "COMPLETED"
        self.objects: dict[str, dict[str, Any]] = {}
        self.documents: dict[str, dict[str, Any]] = {}
        """object id → what processing read: {batch_id, blob_hashes {property: hash}}."""
        self.deleted: set[str] = set()
        self._by_ref: dict[str, list[str]] = {}
        self._by_idem: dict[tuple[str, str], str] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.storage: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._open_batches: set[str] = set()
        self.tasks: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.requests: list[Logged] = []
        self.crashes: list[int] = []
        """Pids killed through the crash window."""
        self._faults: list[Fault] = []
        self._chaos: tuple[float, random.Random, tuple[str, ...], frozenset[str]] | None = None
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
        retry_after_in: tuple[str, ...] = ("header", "body"),
        retryable: bool | None = None,
        when: str = "before",
    ) -> None:
        self._add(
            Fault(
                "status",
                n,
                route,
                status=status,
                retry_after=retry_after,
                retry_after_in=retry_after_in,
                retryable=retryable,
                when=when,
            )
        )

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
        kinds: tuple[str, ...] = ("429", "503", "503-after", "drop", "drop-after"),
        routes: tuple[str, ...] = ROUTES,
    ) -> None:
        """Each call of `routes`, with probability `rate`, gets one fault drawn from `kinds`."""
        self._chaos = (rate, random.Random(seed), kinds, frozenset(routes)) if rate > 0 else None

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

    def set_api_key(self, key: str) -> None:
        with self._lock:
            self.api_key = key

    # ------------------------------------------------------------ observations

    def list_objects(self) -> list[dict[str, Any]]:
        """Every live object, oldest first, as GET .../objects/{id} shows it."""
        with self._lock:
            self._tick()
            return [self._public(o) for o in sorted(self.objects.values(), key=_seq)]

    def blob_bytes(self, blob: dict[str, Any]) -> bytes | None:
        """The bytes behind a blob of a listed object (uploaded ones only)."""
        uid = (blob.get("properties") or {}).get("upload_id")
        return self.storage.get(uid) if uid else None

    def draft_batches(self) -> list[str]:
        with self._lock:
            self._tick()
            return [b for b, rec in self.batches.items() if rec["status"] == "DRAFT"]

    # ------------------------------------------------------------ HTTP

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        if url.path.startswith("/_fake/"):
            self._send(h, *self._admin(url.path))
            return
        route, params = "unknown", {}
        answer: type[BaseModel] | None = None
        request: type[BaseModel] | None = None
        for method, pattern, name, req_model, ans_model in _ROUTING:
            m = pattern.match(url.path)
            if m and method == h.command:
                route, params, request, answer = name, m.groupdict(), req_model, ans_model
                break
        fault = self._take_fault(route)
        if fault and fault.when == "before" and self._misbehave(h, route, url.path, fault):
            return
        try:
            status, body, headers = self._dispatch(
                route, params, h, raw, parse_qs(url.query), request
            )
            if (
                self.check_answers
                and answer is not None
                and (200 <= status < 300 or (route == "objects_batch" and status == 422))
            ):
                check_answer(answer, body)
            raw_out = None
        except _Reply as r:
            status, body, headers, raw_out = r.status, r.body, r.headers, r.raw
        except AssertionError as e:  # the double broke its own contract
            status, headers, raw_out = 500, {}, None
            body = error_body(500, f"fake_mixpeek bug: {e}", "internal_error")
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
        self._send(h, status, body, headers, raw_out)

    def _take_fault(self, route: str) -> Fault | None:
        with self._lock:
            self.calls[route] += 1
            for f in self._faults:
                if f.route is None or f.route == route:
                    f.times -= 1
                    if f.times <= 0:
                        self._faults.remove(f)
                    return f
            if self._chaos and route in self._chaos[3]:
                rate, rng, kinds, _ = self._chaos
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
        headers: dict[str, str] = {}
        details: dict[str, Any] = {}
        if f.retry_after is not None:
            if "header" in f.retry_after_in:
                headers["Retry-After"] = f"{f.retry_after:g}"
            if "body" in f.retry_after_in:
                details["retry_after_seconds"] = f.retry_after
        if f.retryable is not None:
            details["retryable"] = f.retryable
        if f.status == 429:
            message, kind = "Too many requests: rate limit exceeded", "rate_limited"
        elif f.status == 503:
            message, kind = "Service unavailable: nothing was stored", "service_unavailable"
        else:
            message, kind = "Internal server error", "internal_error"
        self._log(route, h, path, f.status)
        self._send(h, f.status, error_body(f.status, message, kind, None, details or None), headers)
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
                        h.headers.get("Content-Type"),
                    )
                )

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        h.send_response(status)
        headers = dict(headers or {})
        if body is not None and raw is None:
            headers.setdefault("Content-Type", "application/json")
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h._headers_buffer.append(b"\r\n")  # type: ignore[attr-defined]
        h.wfile.write(b"".join(h._headers_buffer) + data)  # type: ignore[attr-defined]
        h._headers_buffer = []  # type: ignore[attr-defined]

    def _admin(self, path: str) -> tuple[int, Any]:
        if path == "/_fake/objects":
            return 200, {"objects": self.list_objects()}
        with self._lock:
            if path == "/_fake/documents":
                return 200, {"documents": copy.deepcopy(self.documents)}
            if path == "/_fake/calls":
                return 200, {"calls": dict(self.calls)}
        return 404, error_body(404, "Not Found", "not_found")

    # ------------------------------------------------------------ API

    def _dispatch(
        self,
        route: str,
        p: dict[str, str],
        h: BaseHTTPRequestHandler,
        raw: bytes,
        query: dict[str, list[str]],
        model: type[BaseModel] | None,
    ) -> tuple[int, Any, dict[str, str]]:
        if route == "unknown":
            raise _fail(404, f"Not Found: {h.command} {urlsplit(h.path).path}", "not_found")
        if route == "upload_put":
            return self._storage_put(p["id"], h, raw, query)
        self._authorise(h)
        body: Any = None
        if h.command in ("POST", "PUT"):
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise _invalid([(["body"], "JSON decode error", "json_invalid")]) from None
        if model is not None:
            if body is None and route in _BODY_OPTIONAL:
                body = {}
            found = problems(model, body, ["body"], closed=route in _CLOSED)
            if found:
                raise _invalid(found)
        with self._lock:
            self._tick()
            if route == "task_get":
                return 200, self._task(p["id"]), {}
            bucket = p["b"]
            if bucket not in self.buckets:
                raise _fail(404, f"Bucket '{bucket}' not found", "not_found", "bucket_not_found")
            handler = getattr(self, "_r_" + route)
            status, out = handler(bucket, p.get("id"), body, query)
            return status, out, {}

    def _authorise(self, h: BaseHTTPRequestHandler) -> None:
        auth = h.headers.get("Authorization")
        if not auth:
            raise _fail(401, "Missing Authorization header", "authentication_error")
        scheme, _, key = auth.partition(" ")
        if scheme != "Bearer" or not key:
            raise _fail(401, "Authorization must be 'Bearer <api key>'", "authentication_error")
        if key != self.api_key:
            raise _fail(401, f"Invalid API key '{key}'", "authentication_error", "invalid_api_key")
        ns = h.headers.get("X-Namespace")
        if not ns:
            raise _fail(400, "X-Namespace header is required", "bad_request", "namespace_required")
        if ns != self.namespace:
            raise _fail(400, f"Namespace '{ns}' not found", "bad_request", "namespace_not_found")

    # ------------------------------------------------------------ state helpers

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _tick(self) -> None:
        """The reaper and the pipeline: expire old drafts, finish batches whose time is up."""
        now = time.monotonic()
        for bid in list(self._open_batches):
            b = self.batches[bid]
            if b["status"] == "DRAFT" and now - b["_activity"] >= self.draft_ttl_seconds:
                b.update(
                    status="CANCELED",
                    lifecycle="canceled",
                    lifecycle_reason="The draft was not submitted before the draft TTL expired",
                    updated_at=_now(),
                )
                self._open_batches.discard(bid)
            elif b["status"] in ("PENDING", "IN_PROGRESS"):
                if now - b["_submitted"] >= self.process_seconds:
                    self._finish(b)
                else:
                    b.update(status="IN_PROGRESS", lifecycle="extracting")

    def _public(self, rec: dict[str, Any]) -> dict[str, Any]:
        out = {
            "object_id": rec["object_id"],
            "bucket_id": rec["bucket_id"],
            "blobs": copy.deepcopy(rec["blobs"]),
            "status": rec["status"],
            "created_at": rec["created_at"],
            "updated_at": rec["updated_at"],
            "document_count": 1 if rec["object_id"] in self.documents else 0,
        }
        if rec.get("key_prefix") is not None:
            out["key_prefix"] = rec["key_prefix"]
        if rec.get("error"):
            out["error"] = rec["error"]
        out.update(copy.deepcopy(rec["fields"]))
        return out

    def _object(self, bucket: str, oid: str) -> dict[str, Any]:
        rec = self.objects.get(oid)
        if rec is None or rec["bucket_id"] != bucket:
            raise _fail(404, f"Object '{oid}' not found", "not_found", "object_not_found")
        return rec

    def _index(self, rec: dict[str, Any]) -> None:
        ref = _resolve(rec["fields"], "metadata.mixsync.source_ref")
        if isinstance(ref, str):
            self._by_ref.setdefault(ref.lower(), []).append(rec["object_id"])

    def _unindex(self, rec: dict[str, Any]) -> None:
        ref = _resolve(rec["fields"], "metadata.mixsync.source_ref")
        if isinstance(ref, str):
            ids = self._by_ref.get(ref.lower(), [])
            if rec["object_id"] in ids:
                ids.remove(rec["object_id"])
        if rec.get("_idem"):
            self._by_idem.pop((rec["bucket_id"], rec["_idem"]), None)

    # ------------------------------------------------------------ objects

    def _blob(self, bucket: str, j: int, blob: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """A stored blob (BlobModel) from a CreateBlobRequest, or _Reply for this object."""
        props = self.buckets[bucket]["bucket_schema"]["properties"]
        prop = blob["property"]
        if prop not in props:
            raise _fail(
                422,
                f"blobs[{j}].property: '{prop}' is not a property of the bucket schema "
                f"(properties: {', '.join(sorted(props))})",
                "SchemaValidationError",
            )
        if blob["type"] not in FILE_TYPES:
            raise _fail(
                422, f"blobs[{j}].type: '{blob['type']}' is not a file type", "ValidationError"
            )
        data, uid = blob.get("data"), blob.get("upload_id")
        if (data is None) == (uid is None):
            raise _fail(
                422,
                f"blobs[{j}]: EITHER data OR upload_id must be provided (mutually exclusive)",
                "ValidationError",
            )
        out: dict[str, Any] = {
            "blob_id": "blob_" + uuid.uuid4().hex[:12],
            "property": prop,
            "type": blob["type"],
        }
        if blob.get("key_prefix") is not None:
            out["key_prefix"] = blob["key_prefix"]
        if uid is not None:
            up = self.uploads.get(uid)
            if up is None or up["bucket_id"] != bucket:
                raise _fail(422, f"blobs[{j}].upload_id: upload '{uid}' not found", "NotFoundError")
            if up["status"] != "COMPLETED":
                raise _fail(
                    422, f"blobs[{j}].upload_id: upload '{uid}' is not confirmed", "ValidationError"
                )
            content = self.storage[up.get("duplicate_of_upload_id") or uid]
            names.append(up["filename"])
            out["properties"] = {"upload_id": uid}
            out["details"] = {
                "filename": up["filename"],
                "size_bytes": len(content),
                "mime_type": up["content_type"],
                "hash": _sha(content),
            }
        else:
            out["properties"], out["details"] = self._data_blob(j, blob["type"], data)
        if any(m in n for m in self._poison for n in names):
            raise _fail(
                422,
                f"blobs[{j}]: the file could not be decoded as {blob['type']} "
                "(corrupt or unsupported content)",
                "InvalidBlobError",
            )
        return out

    @staticmethod
    def _data_blob(j: int, btype: str, data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """(properties, details) of a `data` blob, in the formats `Data` documents."""

        def bad(msg: str) -> _Reply:
            return _fail(422, f"blobs[{j}].data: {msg}", "URLValidationError")

        if isinstance(data, dict) and "url" in data:
            data = data["url"]
        if isinstance(data, str):
            if data.startswith(("https://", "http://", "s3://")):
                return {"url": data}, {"hash": _sha(f"url:{data}".encode())}
            if data.startswith("file://"):
                raise bad("file:// URLs cannot be fetched; upload the file first")
            m = re.match(r"^data:([\w.+-]+/[\w.+-]+);base64,(.*)$", data, re.S)
            if m:
                try:
                    content = base64.b64decode(m.group(2), validate=True)
                except ValueError:
                    raise bad("invalid base64 in the data URI") from None
                return {"inline": True}, {
                    "mime_type": m.group(1),
                    "size_bytes": len(content),
                    "hash": _sha(content),
                }
            if "://" in data.split("\n", 1)[0][:16]:
                scheme = data.split(":", 1)[0]
                raise bad(f"unsupported URL scheme '{scheme}' (use https://, s3:// or data:)")
            if btype != "text":
                raise bad("inline text is accepted for type text only")
            content = data.encode()
            return {"text": data}, {
                "mime_type": "text/plain",
                "size_bytes": len(content),
                "hash": _sha(content),
            }
        if isinstance(data, dict) and "base64" in data:
            try:
                content = base64.b64decode(str(data["base64"]), validate=True)
            except ValueError:
                raise bad("invalid base64") from None
            details = {"size_bytes": len(content), "hash": _sha(content)}
            if data.get("mime_type"):
                details["mime_type"] = data["mime_type"]
            if data.get("filename"):
                details["filename"] = data["filename"]
            return {"inline": True}, details
        raise bad("use a URL, a data URI, {base64, mime_type} or {url}")

    def _create(self, bucket: str, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Create one object (or return the one it replays): (record, replayed_by)."""
        key = body.get("idempotency_key")
        if key is not None and (bucket, key) in self._by_idem:
            return self.objects[self._by_idem[(bucket, key)]], "idempotency_key"
        if "auto_process" in body:
            raise _fail(
                422,
                "auto_process is a query parameter; it is not accepted in the body",
                "ValidationError",
            )
        fields = {k: v for k, v in body.items() if k not in declared(CreateObjectRequest)}
        names = [str(_resolve(fields, "metadata.mixsync.source_key"))]
        blobs = [self._blob(bucket, j, b, names) for j, b in enumerate(body.get("blobs") or [])]
        if body.get("skip_duplicates"):
            hashes = {b["details"]["hash"] for b in blobs}
            for rec in sorted(self.objects.values(), key=_seq):
                if rec["bucket_id"] == bucket and hashes & {
                    b["details"]["hash"] for b in rec["blobs"]
                }:
                    return rec, "skip_duplicates"
        now = _now()
        oid = "obj_" + uuid.uuid4().hex[:20]
        rec = {
            "object_id": oid,
            "bucket_id": bucket,
            "key_prefix": body.get("key_prefix"),
            "blobs": blobs,
            "status": "PENDING",
            "created_at": now,
            "updated_at": now,
            "fields": copy.deepcopy(fields),
            "_seq": self._next(),
            "_idem": key,
        }
        self.objects[oid] = rec
        self._index(rec)
        if key is not None:
            self._by_idem[(bucket, key)] = oid
        return rec, None

    def _r_bucket_get(self, bucket: str, _id: Any, _b: Any, _q: Any) -> tuple[int, Any]:
        objs = [o for o in self.objects.values() if o["bucket_id"] == bucket]
        size = sum(
            int(b.get("details", {}).get("size_bytes") or 0) for o in objs for b in o["blobs"]
        )
        return 200, {
            **copy.deepcopy(self.buckets[bucket]),
            "object_count": len(objs),
            "total_size_bytes": size,
        }

    def _r_object_create(
        self, bucket: str, _id: Any, body: Any, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        rec, _ = self._create(bucket, body)
        if _flag(query, "auto_process"):
            self._new_batch(bucket, [rec["object_id"]], submit=True)
        return 200, self._public(rec)

    def set_unique_key(self, bucket: str, fields: list[str], default_policy: str | None) -> None:
        """Give `bucket` a unique_key (UniqueKeyConfig). Bulk creates then refuse the whole
        request with 422, as the SDK's objects/batch description says."""
        with self._lock:
            self.buckets[bucket]["unique_key"] = {
                "fields": fields,
                "default_policy": default_policy,
            }

    def _r_objects_batch(
        self, bucket: str, _id: Any, body: Any, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        if self.buckets[bucket].get("unique_key"):
            # "If the bucket declares a unique_key policy, this endpoint rejects the whole
            # request (422) instead of silently creating duplicates" (create_objects_batch).
            raise _fail(
                422,
                "Bucket has a unique_key: batch create is not supported; use POST "
                f"/v1/buckets/{bucket}/objects per object",
                "validation_error",
                "unique_key_batch_unsupported",
            )
        objs = body["objects"]
        succeeded, failed = [], []
        for i, obj in enumerate(objs):
            try:
                rec, replayed_by = self._create(bucket, obj)
            except _Reply as r:
                err = r.body["error"]
                failed.append(
                    {"object_index": i, "error": err["message"], "error_type": err["type"]}
                )
                continue
            row = {**self._public(rec), "object_index": i, "replayed": replayed_by is not None}
            if replayed_by:
                row["replayed_by"] = replayed_by
            succeeded.append(row)
        if succeeded and _flag(query, "auto_process"):
            self._new_batch(bucket, [r["object_id"] for r in succeeded], submit=True)
        out = {
            "succeeded": succeeded,
            "failed": failed,
            "total_requested": len(objs),
            "succeeded_count": len(succeeded),
            "failed_count": len(failed),
        }
        return (200 if succeeded or not objs else 422), out

    def _r_objects_list(
        self, bucket: str, _id: Any, body: Any, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        limit = _int(query, "limit", DEFAULT_LIST_LIMIT, 1, MAX_LIST_LIMIT)
        offset = _int(query, "offset", 0, 0, MAX_LIST_OFFSET)
        cursor = (query.get("cursor") or query.get("next_cursor") or [None])[0]
        if cursor is not None:
            try:
                offset = int(json.loads(base64.urlsafe_b64decode(cursor.encode()))["o"])
            except (ValueError, KeyError, TypeError):
                raise _fail(400, "cursor is not one this endpoint issued", "bad_request") from None
        filters = body.get("filters") or {}
        candidates: Any = self.objects.values()
        refs = _ref_lookup(filters)
        if refs is not None:
            ids = {oid for r in refs for oid in self._by_ref.get(r.lower(), [])}
            candidates = [self.objects[oid] for oid in ids]
        views = [self._public(o) for o in sorted(candidates, key=_seq) if o["bucket_id"] == bucket]
        hits = [v for v in views if _matches(v, filters)]
        sort = body.get("sort")
        if sort:
            desc = sort.get("direction") == "desc"
            hits.sort(key=lambda v: str(_resolve(v, sort["field"])), reverse=desc)
        page = hits[offset : offset + limit]
        if body.get("select"):
            page = [_select(v, body["select"]) for v in page]
        for v in page:
            v["document_count"] = None  # "Null on list responses (expensive query)"
        more = offset + len(page) < len(hits)
        token = base64.urlsafe_b64encode(json.dumps({"o": offset + len(page)}).encode()).decode()
        pagination: dict[str, Any] = {"page_size": limit, "next_cursor": token if more else None}
        if _flag(query, "include_total"):
            pagination["total"] = len(hits)
        return 200, {"results": page, "pagination": pagination}

    def _r_object_get(self, bucket: str, oid: str, _b: Any, _q: Any) -> tuple[int, Any]:
        return 200, self._public(self._object(bucket, oid))

    def _r_object_put(self, bucket: str, oid: str, body: Any, _q: Any) -> tuple[int, Any]:
        rec = self._object(bucket, oid)
        reserved = sorted(k for k in body if k in RESERVED_OBJECT_KEYS)
        if reserved:
            raise _invalid(
                [
                    (
                        ["body", k],
                        f"'{k}' is a system field and cannot be updated"
                        + (
                            "; PUT cannot replace blobs: delete the object and create it again"
                            if k == "blobs"
                            else ""
                        ),
                        "reserved_field",
                    )
                    for k in reserved
                ]
            )
        self._unindex(rec)
        own = rec["fields"].get("metadata")
        for k, v in (body.get("metadata") or {}).items():
            if isinstance(own, dict) and k in own:
                own[k] = copy.deepcopy(v)
            else:
                rec["fields"][k] = copy.deepcopy(v)
        for k, v in body.items():
            if k == "key_prefix":
                rec["key_prefix"] = v
            elif k not in declared(UpdateObjectRequest):
                rec["fields"][k] = copy.deepcopy(v)
        rec["updated_at"] = _now()
        self._index(rec)
        if rec.get("_idem"):
            self._by_idem[(bucket, rec["_idem"])] = oid
        return 200, self._public(rec)

    def _r_object_delete(self, bucket: str, oid: str, _b: Any, _q: Any) -> tuple[int, Any]:
        rec = self._object(bucket, oid)
        self._unindex(rec)
        del self.objects[oid]
        self.documents.pop(oid, None)
        self.deleted.add(oid)
        return 204, None

    # ------------------------------------------------------------ uploads

    def _r_uploads_create(self, bucket: str, _id: Any, body: Any, _q: Any) -> tuple[int, Any]:
        name = body["filename"]
        if "/" in name or "\\" in name or name in (".", ".."):
            raise _invalid([(["body", "filename"], "Invalid file name", "value_error")])
        if not re.match(r"^[\w.+-]+/[\w.+-]+$", body["content_type"]):
            raise _invalid([(["body", "content_type"], "Not a valid MIME type", "value_error")])
        size = body.get("file_size_bytes")
        if self.max_upload_bytes is not None and size is not None and size > self.max_upload_bytes:
            raise _invalid(
                [
                    (
                        ["body", "file_size_bytes"],
                        f"{size} bytes exceeds the upload limit of {self.max_upload_bytes} bytes",
                        "value_error",
                    )
                ]
            )
        create = body.get("create_object_on_confirm", True)
        prop = body.get("blob_property")
        props = self.buckets[bucket]["bucket_schema"]["properties"]
        if create and (prop or "content") not in props:
            raise _invalid(
                [(["body", "blob_property"], f"'{prop}' is not a bucket schema property", "schema")]
            )
        skip = body.get("skip_duplicates", True)
        fhash = body.get("file_hash")
        if skip and fhash:
            for up in self.uploads.values():
                if (
                    up["bucket_id"] == bucket
                    and up["status"] == "COMPLETED"
                    and up.get("file_hash") == fhash
                ):
                    dup = self._upload_answer(up)
                    dup.update(is_duplicate=True, duplicate_of_upload_id=up["upload_id"])
                    return 200, dup
        uid = "upl_" + uuid.uuid4().hex[:20]
        sig = hashlib.sha256(f"{uid}:{self.api_key}".encode()).hexdigest()[:32]
        now = datetime.now(UTC)
        ttl = body.get("presigned_url_expiration", 3600)
        rec = {
            "upload_id": uid,
            "bucket_id": bucket,
            "filename": name,
            "content_type": body["content_type"],
            "file_size_bytes": size,
            "presigned_url_expiration": ttl,
            "s3_key": f"int_fake/{self.namespace_id}/api_buckets_uploads_create/{uid}/{name}",
            "status": "PENDING",
            "metadata": body.get("metadata"),
            "create_object_on_confirm": create,
            "object_metadata": body.get("object_metadata"),
            "blob_property": prop or "content",
            "blob_type": (body.get("blob_type") or _derive_type(body["content_type"])).upper(),
            "file_hash": fhash,
            "skip_duplicates": skip,
            "created_at": now.isoformat(),
            "expires_at": (now + timedelta(seconds=ttl)).isoformat(),
            "_sig": sig,
        }
        self.uploads[uid] = rec
        return 201, self._upload_answer(rec)

    @property
    def namespace_id(self) -> str:
        return "ns_" + hashlib.sha256(self.namespace.encode()).hexdigest()[:10]

    def _upload_answer(self, rec: dict[str, Any]) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in rec.items() if not k.startswith("_")}
        out = {k: v for k, v in out.items() if v is not None}
        if rec["status"] == "PENDING":
            q = f"X-Amz-Signature={rec['_sig']}&X-Amz-SignedHeaders=" + quote(
                "content-type;host", safe=""
            )
            out["presigned_url"] = f"{self.url}/_storage/{rec['upload_id']}?{q}"
        return out

    def _storage_put(
        self, uid: str, h: BaseHTTPRequestHandler, raw: bytes, query: dict[str, list[str]]
    ) -> tuple[int, Any, dict[str, str]]:
        if "Authorization" in h.headers:
            raise _s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be specified",
            )
        with self._lock:
            up = self.uploads.get(uid)
            if up is None or query.get("X-Amz-Signature", [""])[0] != up["_sig"]:
                raise _s3_error(
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated "
                    "does not match the signature you provided.",
                )
            if h.headers.get("Content-Type") != up["content_type"]:
                raise _s3_error(
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you "
                    "provided. Check your key and signing method. (content-type is a signed "
                    "header)",
                )
            self.storage[uid] = raw
        return 200, None, {"ETag": '"' + hashlib.md5(raw).hexdigest() + '"'}

    def _r_upload_confirm(self, bucket: str, uid: str, body: Any, query: Any) -> tuple[int, Any]:
        up = self.uploads.get(uid)
        if up is None or up["bucket_id"] != bucket:
            raise _fail(404, f"Upload '{uid}' not found", "not_found", "upload_not_found")
        if up["status"] == "COMPLETED":
            return 200, self._confirm_answer(up)
        data = self.storage.get(uid)
        if data is None:
            raise _fail(
                400,
                f"no file was uploaded for upload '{uid}': PUT it to the presigned URL first",
                "bad_request",
                "upload_missing",
            )
        declared_size = up.get("file_size_bytes")
        if declared_size is not None and len(data) != declared_size:
            raise _invalid(
                [
                    (
                        ["body", "file_size_bytes"],
                        f"uploaded {len(data)} bytes, the upload declared {declared_size}",
                        "value_error",
                    )
                ]
            )
        if "file_size_bytes" in body and body["file_size_bytes"] != len(data):
            raise _invalid(
                [
                    (
                        ["body", "file_size_bytes"],
                        f"uploaded {len(data)} bytes, the request says {body['file_size_bytes']}",
                        "value_error",
                    )
                ]
            )
        etag = hashlib.md5(data).hexdigest()
        if "etag" in body and body["etag"].strip('"') != etag:
            raise _invalid([(["body", "etag"], "ETag does not match the upload", "value_error")])
        now = _now()
        up.update(status="COMPLETED", etag=f'"{etag}"', completed_at=now, verified_at=now)
        up.setdefault("file_hash", None)
        if up["file_hash"] is None:
            up["file_hash"] = _sha(data)
        if up["skip_duplicates"]:
            for other in sorted(self.uploads.values(), key=lambda u: u["created_at"]):
                if (
                    other is not up
                    and other["bucket_id"] == bucket
                    and other["status"] == "COMPLETED"
                    and other.get("file_hash") == up["file_hash"]
                    and not other.get("is_duplicate")
                ):
                    up.update(
                        is_duplicate=True,
                        duplicate_of_upload_id=other["upload_id"],
                        object_id=other.get("object_id"),
                    )
                    return 200, self._confirm_answer(up)
        if up["create_object_on_confirm"]:
            obj = {
                "blobs": [
                    {
                        "property": up["blob_property"],
                        "type": up["blob_type"].lower(),
                        "upload_id": uid,
                    }
                ],
                **(up.get("object_metadata") or {}),
            }
            rec, _ = self._create(bucket, obj)
            up["object_id"] = rec["object_id"]
            if body.get("auto_submit_batch"):
                b = self._new_batch(bucket, [rec["object_id"]], submit=True)
                up.update(batch_id=b["batch_id"], task_id=b["task_id"])
        return 200, self._confirm_answer(up)

    @staticmethod
    def _confirm_answer(up: dict[str, Any]) -> dict[str, Any]:
        keys = declared(ConfirmUploadResponse)
        out = {k: up[k] for k in keys if up.get(k) is not None}
        out["message"] = (
            f"duplicate of upload {up['duplicate_of_upload_id']}"
            if up.get("is_duplicate")
            else "upload confirmed"
        )
        return out

    # ------------------------------------------------------------ batches and processing

    def _new_batch(
        self,
        bucket: str,
        ids: list[str],
        *,
        submit: bool,
        dedup: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        bid = "btch_" + uuid.uuid4().hex[:12]
        now = _now()
        b: dict[str, Any] = {
            "batch_id": bid,
            "bucket_id": bucket,
            "namespace_id": self.namespace_id,
            "status": "DRAFT",
            "object_ids": list(ids),
            "dedup_strategy": dedup or "skip",
            "created_at": now,
            "updated_at": now,
            "max_node_death_resubmits": 3,
            "max_deploy_resubmits": 3,
            "lifecycle": "accepted",
            "lifecycle_reason": None,
            "_activity": time.monotonic(),
            "_seq": self._next(),
        }
        if name is not None:
            b["batch_name"] = name
        if metadata is not None:
            b["metadata"] = metadata
        self.batches[bid] = b
        self._open_batches.add(bid)
        if submit:
            self._submit(b)
        return b

    def _submit(self, b: dict[str, Any]) -> dict[str, Any]:
        tid = "task_" + uuid.uuid4().hex[:20]
        b.update(
            status="PENDING",
            task_id=tid,
            lifecycle="queued",
            updated_at=_now(),
            _submitted=time.monotonic(),
            _outcome=self.batch_outcome,
        )
        self.tasks[tid] = {"task_id": tid, "batch_id": b["batch_id"]}
        if self.process_seconds <= 0:
            self._finish(b)
        return b

    def _finish(self, b: dict[str, Any]) -> None:
        """The pipeline ran the batch: documents for what it processed, by dedup strategy."""
        outcome = b["_outcome"]
        processed = skipped = 0
        for oid in b["object_ids"]:
            rec = self.objects.get(oid)
            if rec is None:
                continue
            if b["dedup_strategy"] == "skip" and oid in self.documents:
                skipped += 1
                continue
            if outcome == "COMPLETED":
                self.documents[oid] = {
                    "batch_id": b["batch_id"],
                    "blob_hashes": {bl["property"]: bl["details"]["hash"] for bl in rec["blobs"]},
                }
                rec["status"] = "COMPLETED"
                processed += 1
            elif outcome == "FAILED":
                rec.update(status="FAILED", error="extraction failed (injected by the double)")
            rec["updated_at"] = _now()
        status = outcome
        if outcome == "COMPLETED" and skipped and not processed:
            status = "SKIPPED"
        lifecycle = {"COMPLETED": "indexed", "SKIPPED": "indexed", "FAILED": "failed"}
        lifecycle["INTERRUPTED"] = "failed"
        b.update(
            status=status,
            lifecycle=lifecycle.get(status, "canceled"),
            lifecycle_reason=None if status in ("COMPLETED", "SKIPPED") else f"batch {status}",
            updated_at=_now(),
        )
        self._open_batches.discard(b["batch_id"])

    def _batch(self, bucket: str, bid: str) -> dict[str, Any]:
        b = self.batches.get(bid)
        if b is None or b["bucket_id"] != bucket:
            raise _fail(404, f"Batch '{bid}' not found", "not_found", "batch_not_found")
        return b

    def _batch_answer(self, b: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in b.items() if not k.startswith("_")}

    def _r_batches_create(
        self, bucket: str, _id: Any, body: Any, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        ids, filters = body.get("object_ids"), body.get("filters")
        if (ids is None) == (filters is None):
            raise _invalid([(["body"], "give exactly one of object_ids or filters", "value_error")])
        if ids is None:
            views = [self._public(o) for o in sorted(self.objects.values(), key=_seq)]
            ids = [v["object_id"] for v in views if _matches(v, filters)][
                : body.get("limit") or 50_000
            ]
        elif not _flag(query, "skip_validation"):
            missing = [
                (["body", "object_ids", i], f"object '{oid}' not found in bucket", "not_found")
                for i, oid in enumerate(ids)
                if self.objects.get(oid, {}).get("bucket_id") != bucket
            ]
            if missing:
                raise _invalid(missing)
        submit = _flag(query, "auto_submit")
        if submit is None:
            submit = _flag(query, "trigger_processing")
        if submit is None:
            submit = body.get("auto_submit")
        if submit is None:
            submit = body.get("trigger_processing")
        b = self._new_batch(
            bucket,
            ids,
            submit=bool(submit),
            dedup=body.get("dedup_strategy"),
            name=body.get("batch_name"),
            metadata=body.get("metadata"),
        )
        return 200, self._batch_answer(b)

    def _r_batch_get(self, bucket: str, bid: str, _b: Any, _q: Any) -> tuple[int, Any]:
        return 200, self._batch_answer(self._batch(bucket, bid))

    def _r_batch_submit(self, bucket: str, bid: str, body: Any, _q: Any) -> tuple[int, Any]:
        b = self._batch(bucket, bid)
        if b["status"] != "DRAFT":
            raise _fail(
                400,
                f"Batch '{bid}' is {b['status']}; only a DRAFT batch can be submitted",
                "bad_request",
                "batch_not_draft",
            )
        if not b["object_ids"]:
            raise _fail(400, f"Batch '{bid}' has no objects", "bad_request", "batch_empty")
        self._submit(b)
        return 200, self._task(b["task_id"])

    def _task(self, tid: str) -> dict[str, Any]:
        t = self.tasks.get(tid)
        if t is None:
            raise _fail(404, f"Task '{tid}' not found", "not_found", "task_not_found")
        status = self.batches[t["batch_id"]]["status"]
        return {"task_id": tid, "task_type": "api_buckets_batches_process", "status": status}


def _seq(rec: dict[str, Any]) -> int:
    return int(rec["_seq"])


def _flag(query: dict[str, list[str]], name: str) -> bool | None:
    values = query.get(name)
    if not values:
        return None
    v = values[0].lower()
    if v not in ("true", "false", "1", "0"):
        raise _invalid([(["query", name], "Input should be a valid boolean", "bool_parsing")])
    return v in ("true", "1")


def _int(query: dict[str, list[str]], name: str, default: int, lo: int, hi: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        v = int(values[0])
    except ValueError:
        raise _invalid(
            [(["query", name], "Input should be a valid integer", "int_parsing")]
        ) from None
    if not lo <= v <= hi:
        raise _invalid([(["query", name], f"Input should be in {lo}..{hi}", "range")])
    return v


def _ref_lookup(filters: dict[str, Any]) -> list[str] | None:
    """Source references when a filter's first AND condition pins them (a fast path)."""
    and_ = filters.get("AND") or []
    first = and_[0] if and_ else None
    if (
        isinstance(first, dict)
        and first.get("field") == "metadata.mixsync.source_ref"
        and first.get("operator") in ("eq", "in")
    ):
        value = first.get("value")
        values = value if first["operator"] == "in" else [value]
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            return values
    return None


def _derive_type(mime: str) -> str:
    """CreateUploadRequest.blob_type: "Defaults to type derived from content_type"."""
    top = mime.split("/", 1)[0]
    if mime == "application/pdf":
        return "pdf"
    if "excel" in mime or "spreadsheet" in mime:
        return "excel"
    return top if top in ("video", "image", "audio") else "text"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
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
