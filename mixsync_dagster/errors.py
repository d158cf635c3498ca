"""The exceptions mixsync raises, grouped by what a caller can do about them."""

from __future__ import annotations

import sys

from mixsync_dagster.redaction import redact, scrub_exception


class MixsyncError(Exception):
    """Base of every error mixsync raises on purpose.

    Its message is redacted when it is made (no value read from the environment, no URL
    userinfo), and so is the exception being handled at that moment, which becomes its
    `__cause__` or `__context__` and is shown with it (Dagster's UI, logs, tracebacks)."""

    def __init__(self, *args: object):
        scrub_exception(sys.exception())
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


def one_line(text: str) -> str:
    """Control characters escaped (`\\n`, `\\x00`): a problem stays one line whatever the
    file holds."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ConfigError(MixsyncError):
    """The YAML is wrong: fix the file. Carries one line per problem."""

    def __init__(self, path: str, problems: list[ConfigProblem]):
        self.path = path
        self.problems = problems
        lines = [f"{one_line(path)}: {len(problems)} problem(s) in the sync configuration"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class ConfigProblem:
    """One problem in a config file: where (sync, field), what, and how to fix it.

    Each part is redacted and kept to one line when the problem is made."""

    def __init__(self, *, field: str, message: str, fix: str, sync: str | None = None):
        self.sync = one_line(redact(sync)) if sync is not None else None
        self.field = one_line(redact(field))
        self.message = one_line(redact(message))
        self.fix = one_line(redact(fix))

    def __str__(self) -> str:
        where = f"sync '{self.sync}', " if self.sync else ""
        return f"{where}field '{self.field}': {self.message}. Fix: {self.fix}"

    def __repr__(self) -> str:
        return f"ConfigProblem({self})"


class ProviderError(MixsyncError):
    """Listing or reading the source failed. Never means 'the file was deleted'."""


class TransientError(ProviderError):
    """Worth retrying: throttling, 5xx, a dropped connection."""


class AuthError(ProviderError):
    """Credentials were refused: fail fast and name the connection."""


class FileVanished(ProviderError):
    """A listed file was gone by the time it was read; not a failure of the sync."""


class PermanentFileError(MixsyncError):
    """This one file cannot be synced as it is (goes to the failure path, not a crash)."""


class SyncBusy(MixsyncError):
    """Another process owns the sync's open pass: nothing was done, and it is not a failure."""


class PassLost(SyncBusy):
    """This process's claim on the pass was taken over (it looked dead, or its run was
    superseded): it stops at once, having committed nothing after the takeover."""


class Interrupted(MixsyncError):
    """SIGINT or SIGTERM: the pass stopped at a safe point; the next one resumes from there."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by signal {signum}; the next pass resumes from the position")


class SyncNotFound(MixsyncError):
    """A command named a sync, bucket or connection that the config does not declare."""
