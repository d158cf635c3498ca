"""A bad syncs.yaml fails the Dagster code location with exactly the lines `mixsync validate`
prints, and no stack trace: through `dagster definitions validate` (in-process loading) and
through a real `dagster-webserver` (gRPC code server, GraphQL `workspaceOrError`, then
`reloadRepositoryLocation` after each edit of the file, ending with a good file that loads)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.dagster_server import BIN, REPO, DagsterServers

SECRET = "Sup3r-Secret-Namespace-Value"

FIELDS = """\
connections: {inbox: {provider: local, root: ./data}}
buckets:
  media: {target: mixpeek, bucket_id: b1, namespace: {env: MIXSYNC_LOC_NS}, api_key: k123}
syncs:
  - {name: a, bucket: nowhere, connection_id: inbox, source_path: x, batch_size: true}
  - {name: b, bucket: media, connection_id: inbox, source_path: '../..', batch_size: 1}
  - {name: b, bucket: media, connection_id: inbox, source_path: y,
     file_filters: {include_patterns: ['{a,b']}}
"""

BAD: dict[str, str | bytes] = {
    "field_errors": FIELDS,
    "nesting_3000_deep": "syncs: " + "[" * 3000 + "]" * 3000 + "\n",
    "alias_bomb": 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
        for i in range(9)
    ),
    "latin1_byte": b"syncs: []\n# caf\xe9\n",
    "duplicate_keys": "syncs: []\nsyncs: []\n",
}

GOOD = """\
connections: {inbox: {provider: local, root: ./data}}
buckets: {media: {target: local}}
syncs: [{name: good, bucket: media, connection_id: inbox, source_path: ''}]
"""


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def env_for(config: Path, home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    return {
        **os.environ,
        "MIXSYNC_CONFIG": str(config),
        "DAGSTER_HOME": str(home),
        "MIXSYNC_LOC_NS": SECRET,
    }


def validate_lines(config: Path, env: dict[str, str]) -> str:
    """What `mixsync validate` says about the file (exit 2, on stderr)."""
    res = subprocess.run(
        [str(BIN / "mixsync"), "-c", str(config), "validate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res
    assert "Traceback" not in res.stderr
    return res.stderr.strip()


@pytest.mark.parametrize("case", ["field_errors", "nesting_3000_deep", "latin1_byte"])
def test_definitions_validate_shows_the_config_lines_only(tmp_path: Path, case: str) -> None:
    config = write(tmp_path / "syncs.yaml", BAD[case])
    env = env_for(config, tmp_path / "home")
    expected = validate_lines(config, env)
    res = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "mixsync_dagster.dagster.location"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert expected in out, out
    for banned in ("Traceback", 'File "', "Stack Trace", "RecursionError", "UnicodeDecodeError"):
        assert banned not in out
    assert SECRET not in out


WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError {
        __typename
        ... on PythonError { message stack className cause { message } }
        ... on RepositoryLocation { repositories { name } }
    }
} } } }
"""

RELOAD = """
mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
} }
"""


def location_state(servers: DagsterServers, after: float) -> dict[str, Any] | None:
    """The mixsync location's entry once it is loaded (after `after`, a monotonic time)."""
    data = servers.graphql(WORKSPACE_QUERY)["workspaceOrError"]
    for entry in data.get("locationEntries") or []:
        if entry["name"] == "mixsync" and entry["loadStatus"] == "LOADED":
            return dict(entry["locationOrLoadError"])
    return None


def wait_for(servers: DagsterServers, predicate: Any, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        servers.check_alive()
        try:
            last = location_state(servers, 0)
        except Exception as e:  # the webserver may not answer yet
            last = e
        if isinstance(last, dict) and predicate(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"location never reached the state: {last}\n{servers.logs_tail()}")


@pytest.mark.daemon
@pytest.mark.timeout(600)
def test_the_webserver_shows_the_config_lines_and_no_stack(tmp_path: Path) -> None:
    config = tmp_path / "syncs.yaml"
    home = tmp_path / "home"
    env = env_for(config, home)
    (tmp_path / "data").mkdir()
    cases = ["field_errors", "alias_bomb", "duplicate_keys"]
    write(config, BAD[cases[0]])
    servers = DagsterServers(
        home=home, workspace=REPO / "workspace.yaml", log_dir=tmp_path / "logs", env=env
    )
    servers.start_webserver()
    try:
        for i, case in enumerate(cases):
            write(config, BAD[case])
            expected = validate_lines(config, env)
            if i:
                servers.graphql(RELOAD, {"name": "mixsync"})
            err = wait_for(
                servers,
                lambda e, x=expected: e["__typename"] == "PythonError" and e["message"] == x,
            )
            assert err["stack"] == [], case
            assert err["cause"] is None, case
            assert err["className"] == "ConfigError", case
            assert SECRET not in str(err)
        write(config, GOOD)
        servers.graphql(RELOAD, {"name": "mixsync"})
        ok = wait_for(servers, lambda e: e["__typename"] == "RepositoryLocation")
        assert ok["repositories"], ok
    finally:
        servers.stop()
