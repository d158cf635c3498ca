"""Drive the real sensors and jobs against a real Dagster instance, tick by tick."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from dagster import DagsterInstance, Definitions, build_sensor_context

from mixsync_dagster.core.passes import PassCursor
from mixsync_dagster.dagster.definitions import build_definitions
from mixsync_dagster.state import StateStore
from mixsync_dagster.targets.local import LocalBucketTarget


def write_config(
    path: Path,
    *,
    state_url: str,
    syncs: list[dict[str, Any]],
    root: Path | None = None,
    connection: dict[str, Any] | None = None,
    buckets: dict[str, Any] | None = None,
) -> Path:
    """A syncs.yaml with one connection named `src`: a local folder `root`, or `connection`."""
    conn = connection if connection is not None else {"provider": "local", "root": str(root)}
    doc = {
        "state": {"url": state_url},
        "connections": {"src": conn},
        "buckets": buckets or {"media": {"target": "local"}},
        "syncs": [
            {"bucket": "media", "connection_id": "src", "source_path": "", **s} for s in syncs
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@dataclass
class Driver:
    """Plays the daemon: evaluates a sync's sensor and executes the runs it requests."""

    config: Path
    instance: DagsterInstance
    defs: Definitions = field(init=False)
    cursors: dict[str, str | None] = field(default_factory=dict)
    runs: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.defs = build_definitions(self.config)

    def tick(self, sync: str) -> tuple[list[Any], str | None]:
        sensor = self.defs.get_sensor_def(f"mixsync_{sync}")
        with build_sensor_context(
            instance=self.instance,
            cursor=self.cursors.get(sync),
            definitions=self.defs,
            resources=dict(self.defs.resources or {}),
        ) as ctx:
            data = sensor.evaluate_tick(ctx)
        self.cursors[sync] = data.cursor
        return list(data.run_requests or []), data.skip_message

    def execute(self, sync: str, request: Any, *, raise_on_error: bool = True) -> Any:
        job = self.defs.get_job_def(f"mixsync_{sync}_job")
        result = job.execute_in_process(
            run_config=request.run_config,
            tags=request.tags,
            instance=self.instance,
            raise_on_error=raise_on_error,
        )
        self.runs.append(result)
        return result

    def cursor(self, sync: str) -> PassCursor:
        return PassCursor.load(self.cursors.get(sync))

    def run_pass(self, sync: str, *, max_ticks: int = 200) -> int:
        """Tick and run until the current (or next) pass is finished; returns runs launched."""
        launched = 0
        started = False
        for _ in range(max_ticks):
            before = self.cursor(sync) if self.cursors.get(sync) else None
            requests, _ = self.tick(sync)
            cur = self.cursor(sync)
            if before is None or cur.pass_no != (before.pass_no if before else 0):
                started = True
            for r in requests:
                self.execute(sync, r)
                launched += 1
            if started and cur.finished:
                return launched
            if not requests and cur.finished and not started:
                # nothing due: force the next pass by rewinding the pass start
                self.cursors[sync] = json.dumps(
                    {
                        **json.loads(self.cursors[sync] or "{}"),
                        "started": "2000-01-01T00:00:00+00:00",
                    }
                )
        raise AssertionError("pass did not finish")


def objects(state_url: str, bucket: str = "media") -> list[dict[str, Any]]:
    store = StateStore(state_url)
    return LocalBucketTarget(store.engine, bucket).list_objects()


# The two helpers below are the only places the provider tests read the engine's cursor (where
# the listing position is kept); adapt them when the engine keeps it elsewhere.


def listing_position(driver: Driver, sync: str) -> str | None:
    """The provider position the sync's current pass will resume from."""
    return driver.cursor(sync).pos


def pass_finished(driver: Driver, sync: str) -> bool:
    """Whether the sync's current pass has listed everything and run its work."""
    return driver.cursor(sync).finished
