"""The Dagster resource that hands ops and sensors a live SyncRuntime."""

import functools
import os

from dagster import ConfigurableResource

from mixsync_dagster.config import MixsyncConfig, load_config
from mixsync_dagster.core.runtime import SyncRuntime, open_runtime


@functools.lru_cache(maxsize=8)
def _cached_config(path: str, mtime_ns: int) -> MixsyncConfig:
    return load_config(path)


@functools.lru_cache(maxsize=64)
def _cached_runtime(path: str, mtime_ns: int, sync: str) -> SyncRuntime:
    # One runtime (store, provider and target, with their HTTP/boto clients and connection
    # pools) per config version and sync, reused by every tick and op of this process.
    return open_runtime(_cached_config(path, mtime_ns), sync)


def current_config(path: str) -> MixsyncConfig:
    """The config at `path`, re-read only when the file changes."""
    return _cached_config(path, os.stat(path).st_mtime_ns)


class MixsyncResource(ConfigurableResource):
    """Points at a syncs.yaml; everything else (secrets included) is resolved from it at use.

    Only the file path is resource config, so no secret ever lands in run config or the UI.
    """

    config_path: str

    def config(self) -> MixsyncConfig:
        return current_config(self.config_path)

    def runtime(self, sync_name: str) -> SyncRuntime:
        return _cached_runtime(self.config_path, os.stat(self.config_path).st_mtime_ns, sync_name)
