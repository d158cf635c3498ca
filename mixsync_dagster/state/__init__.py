"""The state store: the only code that reads or writes mixsync's tables."""

from mixsync_dagster.state.mirror import PassReport
from mixsync_dagster.state.schema import Tracked, hash64
from mixsync_dagster.state.store import CLAIM_TTL_SECONDS, Claim, PassRow, StateStore, chunks
from mixsync_dagster.state.tracking import Doomed, Outcome, TrackedRow

__all__ = [
    "CLAIM_TTL_SECONDS",
    "Claim",
    "Doomed",
    "Outcome",
    "PassReport",
    "PassRow",
    "StateStore",
    "Tracked",
    "TrackedRow",
    "chunks",
    "hash64",
]
