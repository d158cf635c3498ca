"""Real S3 servers on loopback for the tests and the benchmark, and a proxy that fails on purpose.

- SeaweedFS (`weed server -s3`, a Go S3 gateway) for volume and paging. Started with an IAM
  config (`-s3.config`) so credentials are really checked: a wrong secret gets a real 403.
- moto's server, in this process, for fidelity (versioning, tags, user metadata). Its WSGI app
  is wrapped to count requests, and big fixtures can be seeded through its backend.
- FlakyProxy: a loopback TCP proxy in front of a server that answers 503 SlowDown or drops
  connections on demand, for retry and outage tests.

Each server is started once per session on free 127.0.0.1 ports and stopped by its own handle
(SIGKILL for weed: its SIGTERM shutdown takes ~15 s).
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

WEED = str(Path(sys.executable).with_name("weed"))
REGION = "us-east-1"

# Identities of the SeaweedFS IAM config. "admin" may do everything; "lister" may only list
# (HEAD / GET are refused with AccessDenied); "stranger" may read one bucket nobody uses.
ADMIN = ("mixsync-admin", "admin-secret-Zq7XK2pL9vB4")
LISTER = ("mixsync-lister", "lister-secret-Hc3Wm8Rt1yN6")
STRANGER = ("mixsync-stranger", "stranger-secret-Ub5Ea0Pj7sQ2")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_weed_ports(n: int) -> list[int]:
    """n ports p, each free with p + 10000 (SeaweedFS's gRPC port for it) free as well."""
    rng = random.Random()
    out: list[int] = []
    while len(out) < n:
        p = rng.randrange(20_000, 30_000)
        if p in out or p + 10_000 in out:
            continue
        if _port_free(p) and _port_free(p + 10_000):
            out.append(p)
    return out


@dataclass
class S3Server:
    """An S3 endpoint plus the keys to use it."""

    endpoint: str
    access_key: str
    secret_key: str
    stop: Callable[[], None] = field(repr=False)
    pid: int | None = None
    """The server's process id when it runs in its own process (SeaweedFS)."""

    def client(self, *, access_key: str | None = None, secret_key: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                retries={"mode": "standard", "max_attempts": 3},
                max_pool_connections=32,
            ),
        )

    def connection(self, **overrides: Any) -> dict[str, Any]:
        """A syncs.yaml connection block for this server."""
        conn: dict[str, Any] = {
            "provider": "s3",
            "region": REGION,
            "endpoint_url": self.endpoint,
            "use_ssl": False,
            "addressing_style": "path",
            "credentials": {"access_key_id": self.access_key, "secret_access_key": self.secret_key},
        }
        conn.update(overrides)
        return conn


# ---------------------------------------------------------------- SeaweedFS


def start_seaweedfs(workdir: Path, *, timeout: float = 60.0) -> S3Server:
    """`weed server -s3` with an IAM config, ready when an authenticated ListBuckets succeeds."""
    import boto3
    from botocore.config import Config

    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    iam = workdir / "s3.json"
    iam.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "admin",
                        "credentials": [{"accessKey": ADMIN[0], "secretKey": ADMIN[1]}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    },
                    {
                        "name": "lister",
                        "credentials": [{"accessKey": LISTER[0], "secretKey": LISTER[1]}],
                        "actions": ["List"],
                    },
                    {
                        "name": "stranger",
                        "credentials": [{"accessKey": STRANGER[0], "secretKey": STRANGER[1]}],
                        "actions": ["Read:nobody-uses-this", "List:nobody-uses-this"],
                    },
                ]
            }
        )
    )
    s3, master, volume, filer = free_weed_ports(4)
    cmd = [
        WEED,
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.config={iam}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        "-volume.max=0",
        "-master.volumeSizeLimitMB=32",
        "-master.telemetry=false",
        "-volume.preStopSeconds=0",
    ]
    log = (workdir / "weed.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()

    endpoint = f"http://127.0.0.1:{s3}"
    probe = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ADMIN[0],
        aws_secret_access_key=ADMIN[1],
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
    )
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            stop()
            tail = (workdir / "weed.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"weed exited with {proc.returncode}:\n{tail}")
        try:
            probe.list_buckets()
            break
        except Exception:
            if time.monotonic() > deadline:
                stop()
                raise RuntimeError(f"SeaweedFS not ready after {timeout}s") from None
            time.sleep(0.2)
    return S3Server(endpoint, ADMIN[0], ADMIN[1], stop, pid=proc.pid)


# ---------------------------------------------------------------- moto (in process)


@dataclass
class MotoServer(S3Server):
    """moto's S3 in this process; `requests` counts every request it served."""

    requests: list[tuple[str, str, str]] = field(default_factory=list, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    in_flight: int = 0
    max_in_flight: int = 0
    """Most requests served at once since reset_counts (moto answers each one whole)."""

    def count(self, method: str, *, bucket: str, query: str | None = None) -> int:
        """Requests of `method` on objects of `bucket` (optionally with `query` in the URL)."""
        with self.lock:
            return sum(
                1
                for m, path, q in self.requests
                if m == method
                and path.startswith(f"/{bucket}/")
                and (query is None or query in q.split("&") or q.startswith(query + "="))
            )

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()
            self.max_in_flight = 0

    def seed(self, bucket: str, objects: Iterable[tuple[str, bytes]]) -> int:
        """Put objects straight into moto's backend (~10k/s), skipping HTTP."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        n = 0
        for key, body in objects:
            backend.put_object(bucket, key, body)
            n += 1
        return n


def start_moto() -> MotoServer:
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    server = MotoServer("", "testing", "testing", lambda: None)
    app = DomainDispatcherApplication(create_backend_app)

    def counting_app(environ: dict[str, Any], start_response: Any) -> Any:
        with server.lock:
            server.requests.append(
                (environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ["QUERY_STRING"])
            )
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            return app(environ, start_response)
        finally:
            with server.lock:
                server.in_flight -= 1

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    httpd = make_server("127.0.0.1", 0, counting_app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="moto-s3", daemon=True)
    thread.start()

    def stop() -> None:
        httpd.shutdown()
        thread.join(timeout=10)

    server.endpoint = f"http://127.0.0.1:{httpd.server_address[1]}"
    server.stop = stop
    return server


# ---------------------------------------------------------------- a proxy that fails on purpose


_SLOW_DOWN_BODY = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>SlowDown</Code>"
    b"<Message>Please reduce your request rate.</Message></Error>"
)
SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    + f"Content-Length: {len(_SLOW_DOWN_BODY)}\r\n\r\n".encode()
    + _SLOW_DOWN_BODY
)


class FlakyProxy:
    """A loopback TCP proxy that pipes bytes to `upstream`, or fails connections on demand.

    A failing connection either gets `503 SlowDown` (after its request head is read) with
    `Connection: close`, or is reset at once ("drop"). A fresh boto3 client sends one request
    per failed connection, so "the next N connections fail" is "the next N requests fail".
    `outage()` fails every connection, including open keep-alive ones, until `restore()`.
    """

    def __init__(self, upstream: str):
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.fail_left = 0
        self.fail_mode = "503"
        self.down = False
        self.accepted = 0
        self.failed = 0
        self.live: set[socket.socket] = set()
        self.thread = threading.Thread(target=self._serve, name="flaky-proxy", daemon=True)
        self.thread.start()

    def fail_next(self, n: int, mode: str = "503") -> None:
        with self.lock:
            self.fail_left, self.fail_mode = n, mode

    def outage(self, mode: str = "drop") -> None:
        with self.lock:
            self.down, self.fail_mode = True, mode
            live, self.live = list(self.live), set()
        for s in live:
            _reset(s)

    def restore(self) -> None:
        with self.lock:
            self.down, self.fail_left = False, 0

    def close(self) -> None:
        self.listener.close()
        self.outage()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                fail = self.down or self.fail_left > 0
                if fail:
                    self.failed += 1
                    self.fail_left = max(0, self.fail_left - 1)
                mode = self.fail_mode
            if fail:
                threading.Thread(target=self._fail, args=(conn, mode), daemon=True).start()
            else:
                threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    def _fail(self, conn: socket.socket, mode: str) -> None:
        if mode == "drop":
            _reset(conn)
            return
        with contextlib.suppress(OSError):
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                head += chunk
            conn.sendall(SLOW_DOWN)
        with contextlib.suppress(OSError):
            conn.close()

    def _pipe(self, conn: socket.socket) -> None:
        try:
            up = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            _reset(conn)
            return
        with self.lock:
            self.live.update((conn, up))

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        up.settimeout(None)
        t = threading.Thread(target=pump, args=(up, conn), daemon=True)
        t.start()
        pump(conn, up)
        t.join()
        with self.lock:
            self.live.discard(conn)
            self.live.discard(up)
        for s in (conn, up):
            with contextlib.suppress(OSError):
                s.close()


def _reset(s: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), so the peer sees a reset connection, not a clean end."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()


# ---------------------------------------------------------------- pytest fixtures


@pytest.fixture(scope="session")
def seaweed() -> Iterator[S3Server]:
    work = Path(tempfile.mkdtemp(prefix="mixsync-weed-"))
    server = start_seaweedfs(work)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoServer]:
    server = start_moto()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def flaky(seaweed: S3Server) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(seaweed.endpoint)
    try:
        yield proxy
    finally:
        proxy.close()
