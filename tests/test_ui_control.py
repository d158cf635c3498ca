"""One control surface, through the API the UI itself uses: a real `dagster-webserver` and
`dagster-daemon` on a temporary DAGSTER_HOME (the repo's dagster.yaml), driven and read through
GraphQL, with the `mixsync` CLI run as a user runs it.

Two syncs: `alpha` syncs a folder where one file always fails (a required mapping has no value),
so its dead-letter queue is not empty; `beta` points at a folder that does not exist and
suspends at its first given-up pass (max_consecutive_failures 1).

Shown: the sensor's state is the one switch (pause via the CLI → STOPPED in the UI; stop in the
UI → `status` says PAUSED; start in the UI → running and ACTIVE; a suspension stops the sensor;
`mixsync resume` starts it); each sync's asset carries five checks with results (failing for
the suspended sync and for the non-empty DLQ), lists the sensor among its automations and
links it; every finished pass leaves exactly one observation; ticks say what they did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mixsync_dagster.core.health import CHECK_NAMES
from mixsync_dagster.state import StateStore
from tests.dagster_server import REPO, DagsterServers, prepare_home
from tests.harness import write_config

LOCATION = "mixsync"
BIN = Path(sys.executable).parent / "mixsync"
OK_NAME = {
    "mappings": {
        "n": {
            "source": {"type": "filename_regex", "pattern": r"^ok_(\d+)", "group": 1},
            "required": True,
        }
    }
}


def wait_for(what: str, check: Callable[[], Any], servers: DagsterServers, timeout: float = 150):
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        servers.check_alive()
        last = check()
        if last:
            return last
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what} (last: {last})\n{servers.logs_tail()}")


def checks_of(servers: DagsterServers, sync: str) -> dict[str, bool | None]:
    """Each check's latest result on the asset page: True/False, None while it has none."""
    node = servers.asset_node(["mixsync", sync])
    out: dict[str, bool | None] = {}
    for c in node["assetChecksOrError"]["checks"]:
        ex = c["executionForLatestMaterialization"]
        out[c["name"]] = None if ex is None else ex["status"] == "SUCCEEDED"
    return out


@pytest.mark.daemon
@pytest.mark.timeout(420)
def test_the_ui_and_the_cli_agree_and_health_shows_as_asset_checks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "alpha").mkdir(parents=True)
    for name in ("ok_1.txt", "ok_2.txt", "bad.txt"):
        (src / "alpha" / name).write_text(name)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    config = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[
            {
                "name": "alpha",
                "source_path": "alpha",
                "polling_interval_seconds": 30,
                "schema_mapping": OK_NAME,
            },
            {
                "name": "beta",
                "source_path": "beta",
                "polling_interval_seconds": 30,
                "max_consecutive_failures": 1,
            },
        ],
    )
    home = tmp_path / "dagster_home"
    env = {**os.environ, "MIXSYNC_CONFIG": str(config), "DAGSTER_HOME": str(home)}
    prepare_home(home, REPO / "dagster.yaml", env)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN), "-c", str(config), *args], env=env, capture_output=True, text=True
        )

    def status(sync: str) -> dict[str, Any]:
        out = cli("status", sync, "--json")
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout)["syncs"][0])

    servers = DagsterServers(
        home=home, workspace=REPO / "workspace.yaml", log_dir=tmp_path / "logs", env=env
    )
    try:
        servers.start_all(LOCATION)

        # beta's first tick fails to list: suspended, and its sensor stopped itself.
        wait_for(
            "beta's sensor stopped by its suspension",
            lambda: servers.sensors(LOCATION)["mixsync_beta"]["status"] == "STOPPED",
            servers,
        )
        rec = status("beta")
        assert (rec["status"], rec["sensor"]["status"]) == ("SUSPENDED", "STOPPED")
        beta = wait_for(
            "beta's check results",
            lambda: (c := checks_of(servers, "beta"))["not_suspended"] is not None and c,
            servers,
        )
        assert beta["not_suspended"] is False and beta["last_listing_succeeded"] is False
        assert beta["dlq_empty"] is True

        # alpha's first tick recorded its checks (all green: nothing had failed yet); the run
        # it requested failed one file, and the run's results turn the DLQ check red. (The run
        # writes its materialization and five evaluations as separate events: wait until the
        # page shows all five against the new materialization.)
        alpha = wait_for(
            "alpha's DLQ check failing after its first run",
            lambda: (
                (c := checks_of(servers, "alpha"))["dlq_empty"] is False
                and None not in c.values()
                and c
            ),
            servers,
        )
        assert set(alpha) == set(CHECK_NAMES)
        assert alpha["not_suspended"] and alpha["no_failed_batches"]
        assert alpha["last_listing_succeeded"] and alpha["recent_complete_pass"]
        node = servers.asset_node(["mixsync", "alpha"])
        # Not "No automations found": the sensor targets the asset, and the description links it.
        assert {"__typename": "Sensor", "name": "mixsync_alpha"} in node["targetingInstigators"]
        assert "(/locations/mixsync/sensors/mixsync_alpha)" in node["description"]
        described = {c["name"]: c["description"] for c in node["assetChecksOrError"]["checks"]}
        assert "dead-letter queue" in described["dlq_empty"]

        # Pause via the CLI: the UI shows the sensor STOPPED.
        out = cli("pause", "alpha")
        assert out.returncode == 0 and "STOPPED" in out.stdout, out.stderr
        assert servers.sensors(LOCATION)["mixsync_alpha"]["status"] == "STOPPED"
        assert status("alpha")["status"] == "PAUSED"
        out = cli("trigger", "alpha")
        assert out.returncode == 1 and "STOPPED" in out.stderr

        # Start it in the UI: `status` says it runs again.
        assert servers.start_sensor(LOCATION, "mixsync_alpha") == "RUNNING"
        rec = status("alpha")
        assert (rec["status"], rec["sensor"]["status"], rec["paused_by"]) == (
            "ACTIVE",
            "RUNNING",
            None,
        )
        # Stop it in the UI: `status` says so, and who.
        state_id = servers.sensors(LOCATION)["mixsync_alpha"]["id"]
        assert servers.stop_sensor(state_id) == "STOPPED"
        rec = status("alpha")
        assert (rec["status"], rec["sensor"]["status"]) == ("PAUSED", "STOPPED")
        assert "stopped in the Dagster UI" in rec["paused_by"]
        assert servers.start_sensor(LOCATION, "mixsync_alpha") == "RUNNING"

        # Resume beta with the CLI once its folder exists: the sensor runs, the next tick
        # lists fine, and the asset's checks turn green.
        (src / "beta").mkdir()
        (src / "beta" / "x.txt").write_text("x")
        out = cli("resume", "beta")
        assert out.returncode == 0 and "suspension cleared" in out.stdout, out.stderr
        assert servers.sensors(LOCATION)["mixsync_beta"]["status"] == "RUNNING"
        assert status("beta")["status"] == "ACTIVE"
        wait_for(
            "beta's checks green after the resume",
            lambda: all(checks_of(servers, "beta").values()),
            servers,
        )

        # alpha's next pass (unchanged but for the failed file, not yet due for a retry) ends
        # inside a tick, which says so.
        # (The pass number moves when the pass begins; the tick records its reason when it
        # ends, so wait for the reason itself.)
        store = StateStore(state_url)

        def tick_reasons() -> list[str]:
            ticks = servers.sensor_ticks(LOCATION, "mixsync_alpha")
            return [t["skipReason"] or "" for t in ticks]

        wait_for(
            "a tick of alpha's that says its pass found nothing new",
            lambda: any("listed 3, 0 new" in r for r in tick_reasons()),
            servers,
            timeout=120,
        )
        p2 = store.get_pass(store.sync_id("alpha"))
        assert p2 is not None and p2.pass_no >= 2

        # Stop both sensors (as the UI does), let anything in flight end, then count: one
        # observation per finished pass, numbered as the passes are.
        for sync in ("alpha", "beta"):
            servers.stop_sensor(servers.sensors(LOCATION)[f"mixsync_{sync}"]["id"])
        wait_for(
            "no run in flight",
            lambda: all(r["status"] in ("SUCCESS", "FAILURE") for r in servers.runs()),
            servers,
        )
        for sync in ("alpha", "beta"):
            p = store.get_pass(store.sync_id(sync))
            assert p is not None
            finished = p.pass_no if p.state == "done" else p.pass_no - 1
            if sync == "beta":
                finished -= 1  # its first pass was given up, not finished
            obs = servers.observations(["mixsync", sync])
            numbers = sorted(
                next(e["intValue"] for e in o["metadataEntries"] if e["label"] == "pass_no")
                for o in obs
            )
            assert len(obs) == finished >= 1, (sync, numbers, p)
            assert len(set(numbers)) == len(numbers)  # never two for one pass
    finally:
        servers.stop()
