"""The exceptions mixsync raises, grouped by what a caller can do about them."""

from __future__ import annotations


class MixsyncError(Exception):
    """Base of every error mixsync raises on purpose."""


class ConfigError(MixsyncError):
    """The YAML is wrong: fix the file. Carries one line per problem."""

    def __init__(self, path: str, problems: list[ConfigProblem]):
        self.path = path
        self.problems = problems
        lines = [f"{path}: {len(problems)} problem(s) in the sync configuration"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class ConfigProblem:
    """One problem in a config file: where (sync, field), what, and how to fix it."""

    def __init__(self, *, field: str, message: str, fix: str, sync: str | None = None):
        self.sync = sync
        self.field = field
        self.message = message
        self.fix = fix

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
