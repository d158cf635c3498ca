"""The Dagster resource that hands ops and sensors a live SyncRuntime."""

import functools
import os

from dagster import ConfigurableResource

from mixsync_dagster.config import MixsyncConfig, load_config
from mixsync_dagster.core.engine import SyncRuntime, open_runtime


@functools.lru_cache(maxsize=8)
def _cached_config(path: str, mtime_ns: int) -> MixsyncConfig:
    return load_config(path)


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
        return open_runtime(self.config(), sync_name)
