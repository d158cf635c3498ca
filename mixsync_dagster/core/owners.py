"""Who may act on a pass, and whether an owner is still alive.

Owner ids say what kind of actor holds a pass:
- `sensor:<deployment>`: a Dagster deployment's sensor, between runs. Alive while its claim is
  renewed (every tick and every commit of its runs).
- `run:<run id>`: a Dagster run. Alive while Dagster says the run is in flight (the Dagster layer
  answers; run monitoring and heartbeats are Dagster's).
- `cli:<host>:<pid>:<start time>`: `mixsync sync`. Alive while that process exists, which can be
  checked on its own host only (psutil); elsewhere, until its claim lapses.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import psutil

Liveness = Callable[[str], "bool | None"]
"""owner id -> True (alive), False (dead), None (cannot tell: trust the claim's expiry)."""


def process_id() -> str:
    """`host:pid:start time` of this process: names it even after its pid is reused."""
    proc = psutil.Process()
    return f"{socket.gethostname()}:{proc.pid}:{proc.create_time():.3f}"


def cli_owner() -> str:
    return f"cli:{process_id()}"


def sensor_owner(deployment: str) -> str:
    return f"sensor:{deployment}"


def run_owner(run_id: str) -> str:
    return f"run:{run_id}"


def describe(owner: str) -> str:
    """An owner id as a person reads it."""
    kind, _, rest = owner.partition(":")
    if kind == "cli":
        host, pid, _start = [*rest.rsplit(":", 2), "", ""][:3]
        return f"`mixsync sync` (pid {pid} on {host})"
    if kind == "run":
        return f"run {rest}"
    if kind == "sensor":
        return f"the sensor of deployment {rest}"
    return owner


def process_alive(proc: str) -> bool | None:
    """For a process id (`host:pid:start`, or a `cli:` owner) on this host: does that very
    process still run? None when it ran on another host (psutil cannot see it)."""
    if proc.startswith("cli:"):
        proc = proc[4:]
    try:
        host, pid_text, started = proc.rsplit(":", 2)
        pid = int(pid_text)
        start = float(started)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        p = psutil.Process(pid)
        # A reused pid belongs to a process that started later.
        return abs(p.create_time() - start) < 0.01 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
