"""Azurite (the Azure Storage emulator, npm `azurite`) on loopback, and a proxy that fails on
purpose in front of it.

Azurite is installed by `make` into `.venv/node` (3.35.0: later versions need Node 22) and
started once per session on a free 127.0.0.1 port with in-memory storage; it is stopped by its
own Popen handle. It checks Shared Key signatures, so a wrong key gets a real 403.

`FaultProxy` is the S3 tests' FlakyProxy idea one level up: an HTTP proxy that forwards each
request to Azurite, or answers it with an Azure-shaped error (503 ServerBusy, 500
OperationTimedOut, a 400 for a continuation marker) when a test asks. It works per request, so
keep-alive connections cannot slip past it.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
AZURITE = REPO / ".venv" / "node" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""Azurite's well-known development account and key (public, documented by Microsoft)."""
API_VERSION = "2025-11-05"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Azurite:
    """One azurite-blob process; `url` is the account URL (path-style, as Azurite wants)."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.endpoint}/{ACCOUNT}"

    def start(self, timeout: float = 60.0) -> Azurite:
        if not AZURITE.exists():
            raise RuntimeError(f"{AZURITE} is missing: run `make .venv/.installed` (npm install)")
        args = [
            str(AZURITE),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--silent",
            "--loose",
        ]
        log = (self.workdir / "azurite.log").open("wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                tail = (self.workdir / "azurite.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"azurite exited ({self.proc.returncode}): {tail}")
            try:
                urllib.request.urlopen(f"{self.url}?comp=list", timeout=2)
            except urllib.error.HTTPError as e:
                if e.code == 403:  # unsigned request refused: the server is up
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"azurite not ready on {self.url} within {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def service(self, url: str | None = None) -> Any:
        """A plain SDK client for seeding and inspecting (the account key, the pinned version)."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(
            url or self.url,
            credential={"account_name": ACCOUNT, "account_key": KEY},
            api_version=API_VERSION,
        )

    def connection(self, **overrides: Any) -> dict[str, Any]:
        """A syncs.yaml connection block for this server."""
        conn: dict[str, Any] = {
            "provider": "azure_blob",
            "account_url": self.url,
            "account_key": KEY,
            "api_version": API_VERSION,
        }
        conn.update(overrides)
        return {k: v for k, v in conn.items() if v is not None}


# ---------------------------------------------------------------- a proxy that fails on purpose


def azure_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    """An error answer shaped like the Blob service's (XML body, x-ms-error-code header)."""
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}\nRequestId:00000000-0000-0000-0000-000000000000\n"
        f"Time:2026-01-01T00:00:00.0000000Z</Message></Error>"
    ).encode()
    headers = {"Content-Type": "application/xml", "x-ms-error-code": code}
    return status, headers, body


SERVER_BUSY = azure_error(503, "ServerBusy", "The server is currently unable to receive requests.")
TIMED_OUT = azure_error(500, "OperationTimedOut", "The operation could not be completed.")
Rule = Callable[[str, str, dict[str, list[str]]], tuple[int, dict[str, str], bytes] | None]


class FaultProxy:
    """Forwards requests to `upstream` (an Azurite endpoint) unless a rule answers them.

    `fail_next(n, answer)` answers the next n requests with `answer`; `rule` (method, path,
    query) -> answer or None decides per request. `requests` records (method, path, query,
    answered-by-proxy) for every request seen.
    """

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream).netloc
        self.lock = threading.Lock()
        self.fail_left = 0
        self.answer = SERVER_BUSY
        self.rule: Rule | None = None
        self.requests: list[tuple[str, str, dict[str, list[str]], bool]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = owner._decide(self.command, parts.path, query)
                owner._record(self.command, parts.path, query, answer is not None)
                if answer is None:
                    up = http.client.HTTPConnection(owner.upstream, timeout=30)
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    headers["Host"] = owner.upstream
                    up.request(self.command, self.path, body=body, headers=headers)
                    resp = up.getresponse()
                    status, rbody = resp.status, resp.read()
                    rheaders = [
                        (k, v)
                        for k, v in resp.getheaders()
                        if k.lower() not in ("transfer-encoding", "connection", "content-length")
                    ]
                    up.close()
                else:
                    status, hdrs, rbody = answer
                    rheaders = list(hdrs.items())
                self.send_response(status)
                for k, v in rheaders:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(rbody)))
                if answer is not None:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(rbody)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.endpoint}/{ACCOUNT}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail_next(self, n: int, answer: tuple[int, dict[str, str], bytes] = SERVER_BUSY) -> None:
        with self.lock:
            self.fail_left, self.answer = n, answer

    def failed(self) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r[3])

    def _decide(
        self, method: str, path: str, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, str], bytes] | None:
        with self.lock:
            if self.fail_left > 0:
                self.fail_left -= 1
                return self.answer
            rule = self.rule
        return rule(method, path, query) if rule is not None else None

    def _record(self, method: str, path: str, query: dict[str, list[str]], failed: bool) -> None:
        with self.lock:
            self.requests.append((method, path, query, failed))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- pytest fixtures


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    work = Path(tempfile.mkdtemp(prefix="mixsync-azurite-"))
    server = Azurite(free_port(), work)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def fault_proxy(azurite: Azurite) -> Iterator[FaultProxy]:
    proxy = FaultProxy(azurite.endpoint)
    try:
        yield proxy
    finally:
        proxy.close()
