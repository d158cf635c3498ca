"""Linux's openat2(2) with RESOLVE_NO_SYMLINKS: a path opened in one system call, refused if
anything along it is a symlink.

The local provider's fast path for reading a file it listed. Its careful walk (open the root,
each folder with O_NOFOLLOW, look at the file, open it, compare) makes about ten system calls
a file, a tenth of a first pass over small files; the kernel does the same check in one. Any
refusal or error hands the file back to the careful walk, which also says why it refuses.
Python's `os` has no openat2, hence ctypes; elsewhere than Linux 5.6+ (or under a seccomp
filter that forbids it) the fast path is simply off.
"""

from __future__ import annotations

import ctypes
import errno
import sys
from collections.abc import Callable
from typing import Any

_SYS_OPENAT2 = 437
"""The same number on every Linux architecture: system calls added since 5.1 share theirs."""
_AT_FDCWD = -100
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_HOW_SIZE = ctypes.sizeof(_OpenHow)


def _load() -> Callable[..., Any] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_long
    fn.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    return fn


_syscall = _load()
_enabled = _syscall is not None


def available() -> bool:
    """Whether the fast path is on (Linux with openat2 allowed, as far as seen so far)."""
    return _enabled


def open_no_symlinks(path: bytes, flags: int) -> int | None:
    """A descriptor of the absolute `path` opened with `flags`, no symlink followed on the
    way; None on any error, for the caller to take its careful path. A kernel without openat2
    (ENOSYS), or a seccomp filter refusing it (EPERM), turns the fast path off for good."""
    global _enabled
    if not _enabled or _syscall is None:
        return None
    how = _OpenHow(flags, 0, _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    fd = int(_syscall(_SYS_OPENAT2, _AT_FDCWD, path, ctypes.byref(how), _HOW_SIZE))
    if fd >= 0:
        return fd
    if ctypes.get_errno() in (errno.ENOSYS, errno.EPERM):
        _enabled = False
    return None
