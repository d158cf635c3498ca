"""Running vs paused: the sync's sensor state in the Dagster instance is the one source of truth.

`mixsync pause` / `resume`, the toggle in the UI and a suspension all stop or start the sync's
sensor in the instance; `status`, `trigger`, `sync` and the sensor itself read it from there.
The state store only mirrors who paused it, for messages (it never decides).

Reading needs no code: a sensor's stored state is found by its selector (code location,
repository, sensor name), and our sensors run by default (no stored state means running).

Writing goes through the instance's own `stop_sensor` / `start_sensor`, the calls the UI's
GraphQL mutations make. They need a `RemoteSensor` (to create a state that does not exist yet,
and to start one), which we get by loading the same code location in process
(`InProcessCodeLocation` of `mixsync_dagster.dagster.location` under the workspace's location
name), the way Dagster's own tools load code. Chosen over running the GraphQL mutations
through dagster_graphql's test utilities (a test API, needing the same workspace anyway) and
over writing instigator rows by hand (which would skip Dagster's bookkeeping, such as the
sensor's start time that tells a later start from an earlier stop).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from dagster import DagsterInstance
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.definitions.selector import InstigatorSelector
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.remote_representation.code_location import InProcessCodeLocation
from dagster._core.remote_representation.external import RemoteSensor
from dagster._core.scheduler.instigation import InstigatorState, SensorInstigatorData
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from mixsync_dagster.clock import utc_from_timestamp
from mixsync_dagster.core.runtime import SyncRuntime
from mixsync_dagster.core.status import SensorState

LOCATION_NAME = "mixsync"
"""The code location's name in workspace.yaml; sensor selectors (and so their stored state)
derive from it. A deployment must keep it."""
REPOSITORY_NAME = "__repository__"
"""The repository name Dagster gives a code location's single `Definitions`."""
LOCATION_MODULE = "mixsync_dagster.dagster.location"

_load_lock = threading.Lock()


def sensor_name(sync: str) -> str:
    return f"mixsync_{sync}"


def selector_id(sync: str) -> str:
    """The id under which the instance stores the sync's sensor state."""
    return InstigatorSelector(
        location_name=LOCATION_NAME, repository_name=REPOSITORY_NAME, name=sensor_name(sync)
    ).get_id()


def stored_state(instance: DagsterInstance, sync: str) -> InstigatorState | None:
    """The sensor's stored state; None before its first tick, stop or start."""
    wanted = selector_id(sync)
    # Matched by selector, whatever process stored it (daemon, webserver, this CLI): their
    # code location origins differ, their selectors do not.
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.selector_id == wanted:
            return state
    return None


def view(instance: DagsterInstance, sync: str) -> SensorState:
    """Running or stopped, as the UI shows it (our sensors default to running)."""
    state = stored_state(instance, sync)
    started = None
    if state is not None and isinstance(state.instigator_data, SensorInstigatorData):
        ts = state.instigator_data.last_sensor_start_timestamp
        started = utc_from_timestamp(ts) if ts else None
    return SensorState(
        name=sensor_name(sync),
        running=state is None or state.is_running,
        started_at=started,
    )


@contextmanager
def remote_sensor(instance: DagsterInstance, config_path: str, sync: str) -> Iterator[RemoteSensor]:
    """The sync's sensor as the webserver and daemon see it: the code location loaded in
    process from `config_path`, under the workspace's location name."""
    with _load_lock:
        # The location module builds Definitions from $MIXSYNC_CONFIG at load time.
        saved = os.environ.get("MIXSYNC_CONFIG")
        os.environ["MIXSYNC_CONFIG"] = str(config_path)
        try:
            origin = InProcessCodeLocationOrigin(
                loadable_target_origin=LoadableTargetOrigin(
                    module_name=LOCATION_MODULE, attribute="defs"
                ),
                location_name=LOCATION_NAME,
            )
            location = InProcessCodeLocation(origin, instance=instance)
        finally:
            if saved is None:
                os.environ.pop("MIXSYNC_CONFIG", None)
            else:
                os.environ["MIXSYNC_CONFIG"] = saved
    with location:
        yield location.get_repository(REPOSITORY_NAME).get_sensor(sensor_name(sync))


def stop(instance: DagsterInstance, sync: str, *, config_path: str | None = None) -> bool:
    """Stop the sync's sensor (the UI shows it stopped). True if it was running.

    A sensor with a stored state is stopped without loading code; one that never ticked needs
    `config_path` to load its definition (else False: nothing was stopped)."""
    state = stored_state(instance, sync)
    if state is not None:
        if not state.is_running:
            return False
        instance.stop_sensor(state.instigator_origin_id, state.selector_id, None)
        return True
    if config_path is None:
        return False
    with remote_sensor(instance, config_path, sync) as remote:
        instance.stop_sensor(remote.get_remote_origin_id(), remote.selector_id, remote)
    return True


def start(instance: DagsterInstance, sync: str, *, config_path: str) -> bool:
    """Start the sync's sensor. True if it was stopped."""
    if view(instance, sync).running:
        return False
    with remote_sensor(instance, config_path, sync) as remote:
        instance.start_sensor(remote)
    return True


def started_after(sensor: SensorState, at: datetime | None) -> bool:
    """Whether someone started the sensor after `at` (an earlier stop we recorded)."""
    return at is not None and sensor.started_at is not None and sensor.started_at > at


def pause(instance: DagsterInstance, rt: SyncRuntime, *, config_path: str, by: str) -> bool:
    """`mixsync pause`: stop the sensor, then note who did. True if it was running."""
    stopped = stop(instance, rt.name, config_path=config_path)
    if stopped:
        rt.store.note_paused(rt.sync_id, by)
    return stopped


def resume(instance: DagsterInstance, rt: SyncRuntime, *, config_path: str) -> tuple[bool, bool]:
    """`mixsync resume` (what starting the sensor in the UI also does): start the sensor, clear
    a suspension and the pause note. Returns (the sensor was stopped, the sync was suspended)."""
    started = start(instance, rt.name, config_path=config_path)
    was_suspended = rt.store.resume(rt.name)
    return started, was_suspended


def stop_for_suspension(
    instance: DagsterInstance, rt: SyncRuntime, *, config_path: str | None = None
) -> bool:
    """A SUSPENDED sync's sensor is stopped too, so the UI shows it. True if this stopped it."""
    row = rt.store.get_sync(rt.name)
    if row["status"] != "SUSPENDED":
        return False
    if not stop(instance, rt.name, config_path=config_path):
        return False
    rt.store.note_paused(
        rt.sync_id, f"auto-suspend after {row['consecutive_failures']} failed passes in a row"
    )
    return True
