"""Production Dagster: runs, event logs and sensor state on PostgreSQL (docs/deploy's
dagster.postgres.yaml), with the code location, the daemon and the webserver as three
processes (docs/deploy's workspace.grpc.yaml). A sync runs through it end to end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from dagster import DagsterInstance, DagsterRunStatus

from tests.conftest import PG_URL, postgres_reachable
from tests.dagster_server import BIN, REPO, DagsterServers, _default_signals, free_port
from tests.harness import objects, write_config

DEPLOY = REPO / "docs" / "deploy"


@pytest.fixture
def dagster_db():
    """A fresh PostgreSQL database for Dagster's own storage (dropped afterwards)."""
    if not postgres_reachable():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is not reachable; CI must not skip it")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 not reachable")
    name = "dagster_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    yield name
    with admin.connect() as c:
        c.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    admin.dispose()


@pytest.mark.daemon
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_a_sync_runs_through_a_postgres_backed_instance(tmp_path: Path, dagster_db: str, src):
    for i in range(120):
        (src / f"d{i // 40}").mkdir(exist_ok=True)
        (src / f"d{i // 40}" / f"f{i:03d}.txt").write_text(f"file {i}")
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "max_objects_per_run": 50, "polling_interval_seconds": 30}],
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.postgres.yaml", home / "dagster.yaml")
    port = free_port()
    workspace = yaml.safe_load((DEPLOY / "workspace.grpc.yaml").read_text())
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=port)
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    env = {
        **os.environ,
        "MIXSYNC_CONFIG": str(cfg),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_USERNAME": "root",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_DB": dagster_db,
        "DAGSTER_PG_PORT": "5432",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    code_log = (logs / "code_server.log").open("wb")
    code_server = subprocess.Popen(
        [
            *(str(BIN / "dagster"), "api", "grpc", "-m", "mixsync_dagster.dagster.location"),
            *("-h", "127.0.0.1", "-p", str(port)),
        ],
        env=env,
        cwd=tmp_path,
        stdout=code_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_default_signals,
    )
    servers = DagsterServers(
        home=home, workspace=tmp_path / "workspace.yaml", log_dir=logs, env=env
    )
    try:
        # The gRPC server listens once it has loaded the code location.
        deadline = time.monotonic() + 120
        while True:
            assert code_server.poll() is None, (logs / "code_server.log").read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the code server never listened"
                time.sleep(0.3)
        daemons = servers.start_all("mixsync")
        assert {"SENSOR", "QUEUED_RUN_COORDINATOR"} <= set(daemons), daemons
        # The sensor is running by default: its first tick starts the pass, runs carry it on.
        deadline = time.monotonic() + 180
        while len(objects(state_url)) < 120:
            servers.check_alive()
            assert code_server.poll() is None, (logs / "code_server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, servers.logs_tail()
            time.sleep(0.5)
        runs = servers.runs()
        assert len(runs) >= 3, runs  # 120 files, at most 50 a run
    finally:
        servers.stop()
        code_server.terminate()
        try:
            code_server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code_server.kill()
        code_log.close()
    assert sorted(o["source_key"] for o in objects(state_url)) == sorted(
        f"d{i // 40}/f{i:03d}.txt" for i in range(120)
    )
    # Everything Dagster recorded lives in PostgreSQL: read it back through the same file.
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_PG_")})
    with DagsterInstance.from_config(str(home)) as inst:
        assert type(inst.run_storage).__name__ == "PostgresRunStorage"
        assert type(inst.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(inst.schedule_storage).__name__ == "PostgresScheduleStorage"
        records = inst.get_run_records()
        assert records and all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in records)
        assert all(r.dagster_run.tags.get("mixsync/sync") == "s1" for r in records)
    admin = sa.create_engine(PG_URL.rsplit("/", 1)[0] + f"/{dagster_db}")
    with admin.connect() as c:
        n = c.exec_driver_sql("SELECT count(*) FROM runs").scalar_one()
        ticks = c.exec_driver_sql("SELECT count(*) FROM job_ticks").scalar_one()
    admin.dispose()
    assert n == len(records) and ticks >= 1
