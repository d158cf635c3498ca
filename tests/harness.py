"""Drive the real sensors and jobs against a real Dagster instance, tick by tick."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from dagster import DagsterInstance, Definitions, build_sensor_context
from sqlalchemy import and_, select, update

from mixsync_dagster.dagster.definitions import build_definitions
from mixsync_dagster.state import PassRow, StateStore
from mixsync_dagster.state.schema import passes
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
        # The daemon records a tick's asset events (observations, check results) in the
        # instance outside any run; so does this stand-in.
        for event in data.asset_events:
            self.instance.report_runless_asset_event(event)
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

    def store(self) -> StateStore:
        return self.defs.resources["mixsync"].runtime(self._any_sync()).store

    def _any_sync(self) -> str:
        cfg = self.defs.resources["mixsync"].config()
        return cfg.syncs[0].name

    def pass_row(self, sync: str) -> PassRow | None:
        """The sync's current (or last) pass as stored."""
        rt = self.defs.resources["mixsync"].runtime(sync)
        return rt.store.get_pass(rt.sync_id)

    def make_due(self, sync: str) -> None:
        """Pretend the polling interval has passed since the last pass started."""
        rt = self.defs.resources["mixsync"].runtime(sync)
        with rt.store.tx() as c:
            c.execute(
                update(passes)
                .where(and_(passes.c.sync_id == rt.sync_id, passes.c.state != "open"))
                .values(started_at=datetime(2000, 1, 1, tzinfo=UTC))
            )
            c.execute(update(passes).where(passes.c.sync_id == rt.sync_id).values(retry_at=None))

    def run_pass(self, sync: str, *, max_ticks: int = 200) -> int:
        """Tick and run until the open pass (or, if none, the next one) is finished; returns
        the runs launched."""
        launched = 0
        before = self.pass_row(sync)
        if before is None or not before.is_open:
            self.make_due(sync)
        target = (before.pass_no if before is not None else 0) + (
            0 if before is not None and before.is_open else 1
        )
        for _ in range(max_ticks):
            requests, _ = self.tick(sync)
            for r in requests:
                self.execute(sync, r)
                launched += 1
            p = self.pass_row(sync)
            if p is not None and p.pass_no >= target and not p.is_open:
                return launched
            if p is not None and p.retry_at is not None:
                self.make_due(sync)
        raise AssertionError("pass did not finish")


def objects(state_url: str, bucket: str = "media") -> list[dict[str, Any]]:
    store = StateStore(state_url)
    return LocalBucketTarget(store.engine, bucket).list_objects()


def tracked_rows(state_url: str, sync: str) -> dict[str, dict[str, Any]]:
    """A sync's tracking rows by source key, with the status as its name (`synced`, ...)."""
    from mixsync_dagster.state.schema import Tracked, tracked

    store = StateStore(state_url)
    sid = store.sync_id(sync)
    with store.engine.connect() as c:
        rows = c.execute(select(tracked).where(tracked.c.sync_id == sid)).mappings()
        return {r["source_key"]: {**r, "status": Tracked(r["status"]).name.lower()} for r in rows}


def batch_rows(state_url: str) -> list[dict[str, Any]]:
    """Batches the state store remembers."""
    from mixsync_dagster.state.schema import batches

    with StateStore(state_url).engine.connect() as c:
        return [dict(r) for r in c.execute(select(batches)).mappings()]


# The two helpers below are the only places the provider tests read where the engine keeps the
# listing position; adapt them when the engine keeps it elsewhere.


def listing_position(driver: Driver, sync: str) -> str | None:
    """The provider position the sync's current pass will resume from."""
    p = driver.pass_row(sync)
    return p.position if p is not None else None


def pass_finished(driver: Driver, sync: str) -> bool:
    """Whether the sync's current pass has listed everything and run its work."""
    p = driver.pass_row(sync)
    return p is not None and not p.is_open
