"""A sync wired to its live state store, provider and target."""

from __future__ import annotations

from dataclasses import dataclass, field

from mixsync_dagster.config import MixsyncConfig, SyncConfig
from mixsync_dagster.core.filters import filters_hash
from mixsync_dagster.providers.base import Provider, get_provider
from mixsync_dagster.state import StateStore, hash64
from mixsync_dagster.targets.base import BucketTarget, get_target


@dataclass(frozen=True)
class SyncRuntime:
    """Everything a step needs for one sync: its config and the live store, provider, target."""

    cfg: MixsyncConfig
    sync: SyncConfig
    store: StateStore
    provider: Provider
    target: BucketTarget
    sync_id: int = field(default=0)
    filter_hash: int = field(default=0)
    """64-bit hash of the sync's filters: a tracked verdict made under other filters is stale."""

    @property
    def name(self) -> str:
        return self.sync.name

    def source_ref(self, key: str) -> str:
        return f"{self.provider.name}:{self.sync.connection_id}:{key}"


def open_runtime(cfg: MixsyncConfig, sync_name: str) -> SyncRuntime:
    """Wire up the store, provider and target of one declared sync."""
    sync = cfg.sync(sync_name)
    store = StateStore(cfg.state_url())
    provider = get_provider(cfg, sync.connection_id)
    target = get_target(cfg, sync.bucket, store.engine)
    return SyncRuntime(
        cfg,
        sync,
        store,
        provider,
        target,
        sync_id=store.sync_id(sync.name),
        filter_hash=hash64(filters_hash(sync.file_filters)),
    )
