"""Which process runs a sync, and whether it is still alive: the facts `unlock` decides on."""

from __future__ import annotations

import os
import socket


def _start_ticks(pid: int) -> str | None:
    """The process start time in clock ticks (Linux), so a reused pid is not mistaken."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after its ')' are fixed.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def worker_id() -> str:
    """`host:pid:start` for the current process."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '-'}"


def is_alive(worker: str) -> bool | None:
    """True/False for a worker on this host; None when it ran elsewhere (cannot tell)."""
    try:
        host, pid_text, start = worker.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start != "-":
        now = _start_ticks(pid)
        if now is not None and now != start:
            return False  # the pid was reused by another process
    return True
