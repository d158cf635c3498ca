"""A sync wired to its live state store, provider and target, plus small shared helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, update

from mixsync_dagster import state as st
from mixsync_dagster.config import MixsyncConfig, SyncConfig
from mixsync_dagster.providers.base import Provider, get_provider
from mixsync_dagster.state import StateStore
from mixsync_dagster.targets.base import BucketTarget


@dataclass(frozen=True)
class SyncRuntime:
    """Everything a step needs for one sync: its config and the live store, provider, target."""

    cfg: MixsyncConfig
    sync: SyncConfig
    store: StateStore
    provider: Provider
    target: BucketTarget

    @property
    def name(self) -> str:
        return self.sync.name

    def source_ref(self, key: str) -> str:
        return f"{self.provider.name}:{self.sync.connection_id}:{key}"


def open_runtime(cfg: MixsyncConfig, sync_name: str) -> SyncRuntime:
    """Wire up the store, provider and target of one declared sync."""
    from mixsync_dagster.targets import get_target

    sync = cfg.sync(sync_name)
    store = StateStore(cfg.state_url())
    provider = get_provider(cfg, sync.connection_id)
    target = get_target(cfg, sync.bucket, store.engine)
    return SyncRuntime(cfg, sync, store, provider, target)


# ---------------------------------------------------------------- planning (sensor side)


def update_tracked(c: Any, sync: str, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk-update tracking rows; each dict has b_key plus the columns to set."""
    if not rows:
        return
    cols = [k for k in rows[0] if k != "b_key"]
    stmt = (
        update(st.tracked)
        .where(and_(st.tracked.c.sync == sync, st.tracked.c.source_key == bindparam("b_key")))
        .values({k: bindparam("v_" + k) for k in cols})
    )
    c.execute(stmt, [{"b_key": r["b_key"], **{"v_" + k: r[k] for k in cols}} for r in rows])
