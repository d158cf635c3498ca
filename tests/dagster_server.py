"""Start and stop a real `dagster-webserver` and `dagster-daemon` on a temporary DAGSTER_HOME.

Used by the daemon tests. Every process is started in its own session (process group) with
SIGINT/SIGTERM restored to their defaults, and stopped through its Popen handle: SIGTERM to
its group (the server and the code server / run workers it spawned), SIGKILL after a grace
period. Nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _default_signals() -> None:
    # A process started from a background shell job inherits SIGINT ignored; the servers
    # would then ignore our stop request.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def prepare_home(home: Path, instance_yaml: Path, env: dict[str, str]) -> None:
    """Copy the instance config (parsed and re-dumped, content unchanged) and migrate once.

    A fresh SQLite DAGSTER_HOME must be initialised by a single process before several
    processes open it.
    """
    home.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load(instance_yaml.read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    res = subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"],
        env={**env, "DAGSTER_HOME": str(home)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_default_signals,
    )
    assert res.returncode == 0, f"dagster instance migrate failed:\n{res.stdout}\n{res.stderr}"


class DagsterServers:
    """A webserver and a daemon sharing one DAGSTER_HOME and one workspace file."""

    def __init__(self, *, home: Path, workspace: Path, log_dir: Path, env: dict[str, str]):
        self.home = home
        self.workspace = workspace
        self.log_dir = log_dir
        self.env = {**env, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------ processes

    def _start(self, name: str, argv: list[str]) -> None:
        log = (self.log_dir / f"{name}.log").open("wb")
        try:
            self.procs[name] = subprocess.Popen(
                argv,
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_default_signals,
            )
        finally:
            log.close()  # the child holds its own descriptor

    def start_webserver(self) -> None:
        self._start(
            "webserver",
            [
                str(BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-w",
                str(self.workspace),
            ],
        )

    def start_daemon(self) -> None:
        self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)])

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}\n{self.logs_tail()}")

    def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM each process group, then SIGKILL what is left after the grace period."""
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():
            # Also reaps children (code server, run workers) that outlived their parent.
            _signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.procs.clear()

    def logs_tail(self, n_chars: int = 4000) -> str:
        out = []
        for f in sorted(self.log_dir.glob("*.log")):
            text = f.read_text(errors="replace")
            out.append(f"----- {f.name} (last {n_chars} chars) -----\n{text[-n_chars:]}")
        return "\n".join(out)

    # ------------------------------------------------------------ GraphQL

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = httpx.post(self.url, json={"query": query, "variables": variables or {}}, timeout=30)
        if resp.status_code >= 500:
            raise AssertionError(f"GraphQL answered {resp.status_code}: {resp.text[:3000]}")
        resp.raise_for_status()
        body = resp.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def wait_location_loaded(self, location: str, timeout: float = 120.0) -> None:
        query = """
        { workspaceOrError { __typename ... on Workspace { locationEntries {
            name loadStatus
            locationOrLoadError { __typename ... on PythonError { message } }
        } } } }
        """
        last: Any = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                data = self.graphql(query)
            except (httpx.HTTPError, ValueError) as e:
                last = e
            else:
                last = data
                entries = data["workspaceOrError"].get("locationEntries") or []
                for e in entries:
                    if e["name"] != location or e["loadStatus"] != "LOADED":
                        continue
                    err = e["locationOrLoadError"]
                    if err["__typename"] == "PythonError":
                        raise AssertionError(f"code location failed to load: {err['message']}")
                    return
            time.sleep(0.5)
        raise AssertionError(f"code location {location} not loaded: {last}\n{self.logs_tail()}")

    def wait_daemons_healthy(self, timeout: float = 120.0) -> list[str]:
        """Wait until every required daemon reports healthy; returns their types."""
        query = """
        { instance { daemonHealth { allDaemonStatuses {
            daemonType required healthy lastHeartbeatErrors { message }
        } } } }
        """
        last: Any = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            statuses = self.graphql(query)["instance"]["daemonHealth"]["allDaemonStatuses"]
            required = [s for s in statuses if s["required"]]
            last = required
            if required and all(s["healthy"] for s in required):
                return [s["daemonType"] for s in required]
            time.sleep(1.0)
        raise AssertionError(f"daemons not healthy: {last}\n{self.logs_tail()}")

    def start_all(self, location: str) -> list[str]:
        """The webserver with `location` loaded, then the daemon, healthy: what `make run`
        gives a user. Returns the daemon types that report healthy."""
        self.start_webserver()
        self.wait_location_loaded(location)
        self.start_daemon()
        return self.wait_daemons_healthy()

    def sensors(self, location: str) -> dict[str, dict[str, Any]]:
        query = """
        query($sel: RepositorySelector!) { sensorsOrError(repositorySelector: $sel) {
            __typename ... on Sensors { results { name sensorState { id status } } }
            ... on PythonError { message }
        } }
        """
        sel = {"repositoryLocationName": location, "repositoryName": "__repository__"}
        data = self.graphql(query, {"sel": sel})["sensorsOrError"]
        assert data["__typename"] == "Sensors", data
        return {s["name"]: s["sensorState"] for s in data["results"]}

    def stop_sensor(self, state_id: str) -> str:
        query = """
        mutation($id: String!) { stopSensor(id: $id) {
            __typename ... on StopSensorMutationResult { instigationState { status } }
            ... on PythonError { message }
        } }
        """
        data = self.graphql(query, {"id": state_id})["stopSensor"]
        assert data["__typename"] == "StopSensorMutationResult", data
        return str(data["instigationState"]["status"])

    def start_sensor(self, location: str, name: str) -> str:
        """What the UI's toggle does to a stopped sensor (the startSensor mutation)."""
        query = """
        mutation($sel: SensorSelector!) { startSensor(sensorSelector: $sel) {
            __typename ... on Sensor { sensorState { status } }
            ... on PythonError { message }
        } }
        """
        sel = {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "sensorName": name,
        }
        data = self.graphql(query, {"sel": sel})["startSensor"]
        assert data["__typename"] == "Sensor", data
        return str(data["sensorState"]["status"])

    def sensor_ticks(self, location: str, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """The sensor's latest ticks (newest first): status, skip reason, error, runs."""
        query = """
        query($sel: SensorSelector!, $limit: Int) { sensorOrError(sensorSelector: $sel) {
            __typename ... on Sensor { sensorState { ticks(limit: $limit) {
                status skipReason runIds cursor error { message }
            } } }
        } }
        """
        sel = {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "sensorName": name,
        }
        data = self.graphql(query, {"sel": sel, "limit": limit})["sensorOrError"]
        assert data["__typename"] == "Sensor", data
        return list(data["sensorState"]["ticks"])

    def asset_node(self, path: list[str]) -> dict[str, Any]:
        """What the asset page shows: description, automations, checks and their latest result."""
        query = """
        query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
            __typename ... on AssetNode {
                description
                targetingInstigators { __typename ... on Sensor { name } }
                assetChecksOrError { __typename ... on AssetChecks { checks {
                    name description
                    executionForLatestMaterialization { status evaluation {
                        success severity description
                    } }
                } } }
            }
        } }
        """
        data = self.graphql(query, {"key": {"path": path}})["assetNodeOrError"]
        assert data["__typename"] == "AssetNode", data
        return dict(data)

    def observations(self, path: list[str], limit: int = 200) -> list[dict[str, Any]]:
        """The asset's observations (newest first) with their numeric metadata."""
        query = """
        query($key: AssetKeyInput!, $limit: Int) { assetOrError(assetKey: $key) {
            __typename ... on Asset { assetObservations(limit: $limit) {
                timestamp runId description
                metadataEntries { label ... on IntMetadataEntry { intValue } }
            } }
        } }
        """
        data = self.graphql(query, {"key": {"path": path}, "limit": limit})["assetOrError"]
        assert data["__typename"] == "Asset", data
        return list(data["assetObservations"])

    def runs(self) -> list[dict[str, Any]]:
        query = """
        { runsOrError { __typename ... on Runs { results {
            runId jobName status startTime endTime tags { key value }
        } } ... on PythonError { message } } }
        """
        data = self.graphql(query)["runsOrError"]
        assert data["__typename"] == "Runs", data
        return list(data["results"])


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    # start_new_session=True made the child the leader of a group whose id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
