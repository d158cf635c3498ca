"""A Google Drive v3 double on loopback whose every request and answer is checked against the
Drive v3 discovery document shipped inside google-api-python-client.

No Drive emulator exists. This is a real HTTP server (stdlib ThreadingHTTPServer) that the real
client library talks to through `client_options.api_endpoint`, with static discovery. The
contract is `googleapiclient/discovery_cache/documents/drive.v3.json`, read at start:

- a request must name a method of the document (HTTP method + path template under servicePath,
  or the media download / export form of one); each query parameter must be declared for that
  method or globally, of its declared type (boolean, int32 integer, string) and enum, and every
  required parameter present;
- `fields` (partial response) may only name properties the response schema declares;
- every JSON answer is checked against the method's response schema (property names, types,
  int64-as-string, date-time strings, arrays, additionalProperties maps).

A violation answers 400 and is recorded in `violations`; the `drive` fixture fails the test if
any were recorded. What the document cannot say (the `q` grammar, tokens, error bodies) follows
the API's documented behaviour for the small subset the provider uses, and anything else is
refused loudly as a violation too.

The double also plays Google's OAuth token endpoint (`POST /token`: the service-account JWT
grant and the refresh-token grant) and requires the bearer token it issued on every API call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import googleapiclient
import pytest

DISCOVERY = Path(googleapiclient.__file__).parent / "discovery_cache/documents/drive.v3.json"
FOLDER = "application/vnd.google-apps.folder"
GOOGLE_DOC = "application/vnd.google-apps.document"
GOOGLE_SHEET = "application/vnd.google-apps.spreadsheet"
GOOGLE_SLIDES = "application/vnd.google-apps.presentation"
GOOGLE_FORM = "application/vnd.google-apps.form"
SHORTCUT = "application/vnd.google-apps.shortcut"
EXPORTS = {
    GOOGLE_DOC: ["application/pdf", "text/plain", "text/markdown"],
    GOOGLE_SHEET: ["application/pdf", "text/csv"],
    GOOGLE_SLIDES: ["application/pdf", "text/plain"],
}
"""What this double's Drive offers as exports (test data; the shape is About.exportFormats)."""
EXPORT_LIMIT = 10 << 20
"""Drive refuses to export documents larger than this (exportSizeLimitExceeded)."""
SERVICE_ACCOUNT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class Violation(Exception):
    """A request or answer outside the discovery document."""


# ---------------------------------------------------------------- the discovery document


class Contract:
    """Methods, parameters and schemas of the Drive v3 discovery document."""

    def __init__(self, doc: dict[str, Any]):
        self.doc = doc
        self.schemas: dict[str, Any] = doc["schemas"]
        self.service_path = "/" + doc["servicePath"]
        self.globals: dict[str, Any] = doc["parameters"]
        self.methods: list[tuple[str, re.Pattern[str], dict[str, Any]]] = []
        for resource in doc["resources"].values():
            for m in resource.get("methods", {}).values():
                pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(m["path"]))
                self.methods.append((m["httpMethod"], re.compile(pattern + "$"), m))

    def method(self, verb: str, path: str) -> tuple[dict[str, Any], dict[str, str]]:
        if not path.startswith(self.service_path):
            raise Violation(f"{path} is outside the servicePath {self.service_path}")
        rel = path[len(self.service_path) :]
        for http_method, pattern, m in self.methods:
            match = pattern.match(rel)
            if http_method == verb and match:
                return m, {k: unquote(v) for k, v in match.groupdict().items()}
        raise Violation(f"no method of the discovery document is {verb} {rel}")

    def check_params(self, m: dict[str, Any], query: dict[str, list[str]]) -> None:
        declared = {**self.globals, **m.get("parameters", {})}
        for name, values in query.items():
            spec = declared.get(name)
            if spec is None or spec.get("location") == "path":
                raise Violation(f"{m['id']}: parameter '{name}' is not declared")
            if len(values) > 1 and not spec.get("repeated"):
                raise Violation(f"{m['id']}: parameter '{name}' given {len(values)} times")
            for v in values:
                self._check_value(m["id"], name, spec, v)
        for name, spec in m.get("parameters", {}).items():
            if spec.get("required") and spec.get("location") == "query" and name not in query:
                raise Violation(f"{m['id']}: required parameter '{name}' is missing")

    @staticmethod
    def _check_value(mid: str, name: str, spec: dict[str, Any], v: str) -> None:
        kind = spec.get("type")
        if kind == "boolean" and v not in ("true", "false"):
            raise Violation(f"{mid}: '{name}' must be true or false, not {v!r}")
        if kind == "integer":
            try:
                n = int(v)
            except ValueError:
                raise Violation(f"{mid}: '{name}' must be an integer, not {v!r}") from None
            if spec.get("format") == "int32" and not -(2**31) <= n < 2**31:
                raise Violation(f"{mid}: '{name}' is out of int32 range")
            if "minimum" in spec and n < int(spec["minimum"]):
                raise Violation(f"{mid}: '{name}' below its minimum")
            if "maximum" in spec and n > int(spec["maximum"]):
                raise Violation(f"{mid}: '{name}' above its maximum")
        if "enum" in spec and v not in spec["enum"]:
            raise Violation(f"{mid}: '{name}' = {v!r} is not one of {spec['enum']}")

    def check_fields(self, schema: str, selector: str) -> Any:
        """Parse a `fields` selector, checking each name against the schema; returns a tree."""
        tree, rest = self._parse_fields(schema, selector)
        if rest:
            raise Violation(f"cannot parse fields selector near {rest!r}")
        return tree

    def _parse_fields(self, schema: str | None, text: str) -> tuple[dict[str, Any], str]:
        tree: dict[str, Any] = {}
        while text:
            m = re.match(r"[A-Za-z_][\w/]*", text)
            if not m:
                break
            name = m.group(0)
            text = text[m.end() :]
            props = self._props(schema)
            if props is not None and name not in props:
                raise Violation(f"fields: {schema} declares no property '{name}'")
            sub: dict[str, Any] | None = None
            if text.startswith("("):
                sub, text = self._parse_fields(self._ref(props[name] if props else {}), text[1:])
                if not text.startswith(")"):
                    raise Violation("fields: unbalanced parentheses")
                text = text[1:]
            tree[name] = sub
            if text.startswith(","):
                text = text[1:]
        return tree, text

    def _props(self, schema: str | None) -> dict[str, Any] | None:
        return self.schemas[schema]["properties"] if schema else None

    @staticmethod
    def _ref(spec: dict[str, Any]) -> str | None:
        if "$ref" in spec:
            return str(spec["$ref"])
        if spec.get("type") == "array" and "$ref" in spec.get("items", {}):
            return str(spec["items"]["$ref"])
        return None

    def check_value(self, spec: dict[str, Any], value: Any, where: str) -> None:
        """An answer's value against a schema fragment (recursively)."""
        if "$ref" in spec:
            props = self.schemas[spec["$ref"]]["properties"]
            if not isinstance(value, dict):
                raise Violation(f"{where}: {spec['$ref']} must be an object")
            for k, v in value.items():
                if k not in props:
                    raise Violation(f"{where}: {spec['$ref']} declares no property '{k}'")
                self.check_value(props[k], v, f"{where}.{k}")
            return
        kind = spec.get("type")
        ok = {
            "string": isinstance(value, str),
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "array": isinstance(value, list),
            "object": isinstance(value, dict),
            "any": True,
        }.get(kind or "any", False)
        if not ok:
            raise Violation(f"{where}: {value!r} is not of type {kind}")
        if kind == "string" and spec.get("format") == "int64":
            int(value)
        if kind == "string" and spec.get("format") == "date-time":
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        if kind == "array":
            for i, v in enumerate(value):
                self.check_value(spec.get("items", {}), v, f"{where}[{i}]")
        if kind == "object" and "properties" in spec:
            for k, v in value.items():
                if k not in spec["properties"]:
                    raise Violation(f"{where}: declares no property '{k}'")
                self.check_value(spec["properties"][k], v, f"{where}.{k}")
        if kind == "object" and "additionalProperties" in spec:
            for k, v in value.items():
                self.check_value(spec["additionalProperties"], v, f"{where}.{k}")


def prune(value: Any, tree: dict[str, Any] | None) -> Any:
    """Keep only the selected fields (a partial response)."""
    if tree is None:
        return value
    if isinstance(value, list):
        return [prune(v, tree) for v in value]
    return {k: prune(value[k], sub) for k, sub in tree.items() if k in value}


# ---------------------------------------------------------------- the store


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass
class DriveFile:
    id: str
    name: str
    mimeType: str
    parents: list[str]
    content: bytes = b""
    properties: dict[str, str] = field(default_factory=dict)
    appProperties: dict[str, str] = field(default_factory=dict)
    owners: list[dict[str, Any]] = field(default_factory=list)
    createdTime: str = ""
    modifiedTime: str = ""
    version: int = 1
    trashed: bool = False
    driveId: str | None = None
    shortcut_target: str | None = None

    def resource(self, root_url: str) -> dict[str, Any]:
        """The File resource as the API shows it (only fields the schema declares)."""
        r: dict[str, Any] = {
            "kind": "drive#file",
            "id": self.id,
            "name": self.name,
            "mimeType": self.mimeType,
            "parents": self.parents,
            "trashed": self.trashed,
            "createdTime": self.createdTime,
            "modifiedTime": self.modifiedTime,
            "version": str(self.version),
            "owners": self.owners,
            "webViewLink": f"{root_url}file/d/{self.id}/view",
        }
        if self.properties:
            r["properties"] = self.properties
        if self.appProperties:
            r["appProperties"] = self.appProperties
        if self.driveId:
            r["driveId"] = self.driveId
        if not self.mimeType.startswith("application/vnd.google-apps."):
            r["size"] = str(len(self.content))
            r["md5Checksum"] = hashlib.md5(self.content).hexdigest()
        if self.shortcut_target:
            r["shortcutDetails"] = {"targetId": self.shortcut_target, "targetMimeType": FOLDER}
        return r


class FakeDrive:
    """The Drive double: `files` is its state; helpers add, change and remove files."""

    def __init__(self) -> None:
        self.contract = Contract(json.loads(DISCOVERY.read_text()))
        self.files: dict[str, DriveFile] = {}
        self.drives: dict[str, str] = {}
        self.lock = threading.Lock()
        self.violations: list[str] = []
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.tokens: set[str] = set()
        self.grants: list[dict[str, Any]] = []
        self.oauth_clients: dict[str, tuple[str, str]] = {}
        """refresh token -> (client id, client secret) the token endpoint accepts."""
        self.token_epoch = 0
        self.faults: list[tuple[int, str, dict[str, str]]] = []
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)
        self.server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------ seeding

    def _now(self) -> str:
        self.clock += timedelta(seconds=1)
        return _ts(self.clock)

    def add(
        self,
        name: str,
        parent: str,
        mime: str = "application/octet-stream",
        content: bytes = b"",
        **kw: Any,
    ) -> DriveFile:
        with self.lock:
            now = self._now()
            parent_drive = self.files[parent].driveId if parent in self.files else None
            f = DriveFile(
                id=kw.pop("id", None) or uuid.uuid4().hex[:20],
                name=name,
                mimeType=mime,
                parents=[parent],
                content=content,
                createdTime=now,
                modifiedTime=now,
                owners=kw.pop(
                    "owners",
                    [
                        {
                            "kind": "drive#user",
                            "displayName": "Ann",
                            "emailAddress": "ann@example.com",
                            "me": False,
                        }
                    ],
                ),
                driveId=parent_drive or (parent if parent in self.drives else None),
                **kw,
            )
            self.files[f.id] = f
            return f

    def folder(self, name: str, parent: str, **kw: Any) -> DriveFile:
        return self.add(name, parent, FOLDER, **kw)

    def shared_drive(self, name: str) -> str:
        drive_id = "0A" + uuid.uuid4().hex[:16]
        self.drives[drive_id] = name
        return drive_id

    def update(self, file_id: str, **changes: Any) -> DriveFile:
        with self.lock:
            f = self.files[file_id]
            for k, v in changes.items():
                setattr(f, k, v)
            f.version += 1
            f.modifiedTime = self._now()
            return f

    def delete(self, file_id: str) -> None:
        with self.lock:
            del self.files[file_id]

    def fail_next(
        self, n: int, status: int, reason: str, headers: dict[str, str] | None = None
    ) -> None:
        with self.lock:
            self.faults = [(status, reason, headers or {})] * n

    def expire_page_tokens(self) -> None:
        """Every page token handed out so far is refused from now on (400)."""
        with self.lock:
            self.token_epoch += 1

    # ------------------------------------------------------------ serving

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self) -> FakeDrive:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer(owner.handle(self.command, self.path, self.headers, b""))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                self._answer(owner.handle(self.command, self.path, self.headers, body))

            def _answer(self, answer: tuple[int, dict[str, str], bytes]) -> None:
                status, headers, payload = answer
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def handle(
        self, verb: str, raw: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw)
        query = parse_qs(parts.query, keep_blank_values=True)
        if parts.path == "/token":
            return self._token(parse_qs(body.decode()))
        with self.lock:
            self.requests.append((verb, parts.path, query))
            fault = self.faults.pop(0) if self.faults else None
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return error(401, "authError", "Request had invalid authentication credentials.")
        if fault is not None:
            status, reason, extra = fault
            code, hdrs, payload = error(status, reason, f"fault injected: {reason}")
            return code, {**hdrs, **extra}, payload
        try:
            m, path_params = self.contract.method(verb, parts.path)
            self.contract.check_params(m, query)
            return self._call(m, path_params, {k: v[0] for k, v in query.items()}, headers)
        except Violation as v:
            self.violations.append(str(v))
            return error(400, "badRequest", f"contract violation: {v}")

    def _json(
        self, m: dict[str, Any], doc: dict[str, Any], q: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        schema = m["response"]["$ref"]
        tree = self.contract.check_fields(schema, q["fields"]) if "fields" in q else None
        out = prune(doc, tree)
        try:
            self.contract.check_value({"$ref": schema}, out, m["id"])
        except Violation as v:
            self.violations.append(f"answer: {v}")
            raise
        return 200, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(out).encode()

    def _call(
        self, m: dict[str, Any], pp: dict[str, str], q: dict[str, str], headers: Any
    ) -> tuple[int, dict[str, str], bytes]:
        mid = m["id"]
        if mid == "drive.files.list":
            return self._list(m, q)
        if mid == "drive.about.get":
            if "fields" not in q:
                raise Violation("about.get requires the fields parameter")
            user = {
                "kind": "drive#user",
                "displayName": "mixsync",
                "emailAddress": "mixsync@example.iam.gserviceaccount.com",
                "me": True,
            }
            about = {"kind": "drive#about", "exportFormats": EXPORTS, "user": user}
            return self._json(m, about, q)
        if mid == "drive.drives.get":
            name = self.drives.get(pp["driveId"])
            if name is None:
                return error(404, "notFound", f"Shared drive not found: {pp['driveId']}")
            return self._json(m, {"kind": "drive#drive", "id": pp["driveId"], "name": name}, q)
        with self.lock:
            f = self.files.get(pp["fileId"]) or (
                DriveFile(pp["fileId"], self.drives[pp["fileId"]], FOLDER, [], driveId=pp["fileId"])
                if pp["fileId"] in self.drives
                else None
            )
        if f is None or (f.driveId and q.get("supportsAllDrives") != "true"):
            return error(404, "notFound", f"File not found: {pp['fileId']}.")
        if mid == "drive.files.export":
            if f.mimeType not in EXPORTS or q["mimeType"] not in EXPORTS[f.mimeType]:
                return error(400, "badRequest", "The requested conversion is not supported.")
            data = f"%export of {f.id} v{f.version} as {q['mimeType']}\n".encode() + f.content
            if len(data) > EXPORT_LIMIT:
                return error(
                    403, "exportSizeLimitExceeded", "This file is too large to be exported."
                )
            return media(data, q["mimeType"], headers.get("Range"))
        if q.get("alt") == "media":
            if f.mimeType.startswith("application/vnd.google-apps."):
                return error(
                    403,
                    "fileNotDownloadable",
                    "Only files with binary content can be downloaded. Use Export.",
                )
            return media(f.content, f.mimeType, headers.get("Range"))
        return self._json(m, f.resource(self.url), q)

    def _list(self, m: dict[str, Any], q: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        parent, wanted = parse_q(q.get("q", ""))
        corpora = q.get("corpora", "user")
        drive = q.get("driveId")
        if corpora == "drive" and (drive is None or q.get("includeItemsFromAllDrives") != "true"):
            raise Violation("corpora=drive needs driveId and includeItemsFromAllDrives=true")
        size = int(q.get("pageSize", "100"))
        if not 1 <= size <= 1000:
            return error(400, "invalid", "Invalid value for pageSize")
        with self.lock:
            rows = [
                f
                for f in self.files.values()
                if parent in f.parents
                and not f.trashed
                and all(test(f) for test in wanted)
                and (f.driveId is None or q.get("includeItemsFromAllDrives") == "true")
                and (corpora != "drive" or f.driveId == drive)
            ]
            epoch = self.token_epoch
        order = q.get("orderBy", "")
        if order not in ("", "name"):
            raise Violation(f"this double sorts by name only, not {order!r}")
        rows.sort(key=lambda f: (f.name, f.id))
        start = 0
        query_id = hashlib.sha256(f"{q.get('q')}|{corpora}|{drive}|{order}".encode()).hexdigest()[
            :8
        ]
        if "pageToken" in q:
            try:
                tok_epoch, tok_query, tok_start = (
                    base64.urlsafe_b64decode(q["pageToken"]).decode().split(":")
                )
            except ValueError:
                return error(400, "invalid", "Invalid Value", location="pageToken")
            if int(tok_epoch) != epoch or tok_query != query_id:
                return error(400, "invalid", "Invalid Value", location="pageToken")
            start = int(tok_start)
        page = rows[start : start + size]
        doc: dict[str, Any] = {
            "kind": "drive#fileList",
            "incompleteSearch": False,
            "files": [f.resource(self.url) for f in page],
        }
        if start + size < len(rows):
            doc["nextPageToken"] = base64.urlsafe_b64encode(
                f"{epoch}:{query_id}:{start + size}".encode()
            ).decode()
        return self._json(m, doc, q)

    def _token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        grant = form.get("grant_type", [""])[0]
        if grant == SERVICE_ACCOUNT_GRANT:
            claims = json.loads(_b64(form["assertion"][0].split(".")[1]))
            self.grants.append({"grant": "service_account", **claims})
        elif grant == "refresh_token":
            rt = form.get("refresh_token", [""])[0]
            client = (form.get("client_id", [""])[0], form.get("client_secret", [""])[0])
            if self.oauth_clients.get(rt) != client:
                body = {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                }
                return 400, {"Content-Type": "application/json"}, json.dumps(body).encode()
            self.grants.append({"grant": "refresh_token", "client_id": client[0]})
        else:
            return 400, {"Content-Type": "application/json"}, b'{"error": "unsupported_grant_type"}'
        token = "ya29." + uuid.uuid4().hex
        self.tokens.add(token)
        body = {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


Q_CLAUSE = re.compile(
    r"\s*(?:'(?P<parent>[^']+)' in parents|trashed = (?P<trashed>false)"
    r"|mimeType (?P<op>!?=) '(?P<mime>[^']+)')\s*"
)


def parse_q(q: str) -> tuple[str, list[Any]]:
    """The `q` subset the provider speaks: `'ID' in parents`, `trashed = false`,
    `mimeType = '…'` / `!= '…'`, joined by `and`. Anything else is refused."""
    parent = None
    tests: list[Any] = []
    for clause in q.split(" and "):
        m = Q_CLAUSE.fullmatch(clause)
        if not m:
            raise Violation(f"q clause {clause!r} is outside the subset this double implements")
        if m.group("parent"):
            parent = m.group("parent")
        elif m.group("mime"):
            mime, neg = m.group("mime"), m.group("op") == "!="
            tests.append(lambda f, mime=mime, neg=neg: (f.mimeType == mime) != neg)
    if parent is None:
        raise Violation("q must name a parent folder")
    return parent, tests


def error(
    status: int, reason: str, message: str, location: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """An error body shaped like Google APIs' JSON errors."""
    item: dict[str, str] = {"domain": "global", "reason": reason, "message": message}
    if location:
        item.update(location=location, locationType="parameter")
    body = {"error": {"code": status, "message": message, "errors": [item]}}
    return status, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(body).encode()


def media(data: bytes, mime: str, range_header: str | None) -> tuple[int, dict[str, str], bytes]:
    """Bytes, honouring a `Range: bytes=a-b` request (206) as Drive does."""
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header or "")
    if not m:
        return 200, {"Content-Type": mime}, data
    a = int(m.group(1))
    b = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
    if a >= len(data):
        return 416, {"Content-Range": f"bytes */{len(data)}"}, b""
    return (
        206,
        {"Content-Type": mime, "Content-Range": f"bytes {a}-{b}/{len(data)}"},
        data[a : b + 1],
    )


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    """A fresh double per test; a test that made any request outside the contract fails."""
    with FakeDrive() as d:
        yield d
    assert d.violations == [], d.violations
