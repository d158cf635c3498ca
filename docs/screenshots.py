"""Take the README's screenshots of the Dagster UI after a few passes (not part of `make test`).

    .venv/bin/python docs/screenshots.py [--passes 4] [--out docs/screenshots]

Copies the example (`examples/inbox/` and a `syncs.yaml` like the repo's) into a temporary
folder, adds a second sync whose folder is missing (so one asset shows a suspended sync's red
checks) and a file that always fails (so the example's dead-letter queue check is red), starts
a real `dagster-webserver` and `dagster-daemon` on a temporary DAGSTER_HOME (the repo's
dagster.yaml), drops a new file into the inbox before each pass, and once `--passes` passes are
done photographs the sensor page, the asset page (checks, plots) and the runs page with
headless Chromium (`apt-get install -y chromium`), driven by playwright-core from npm when it is
installed (`npm install --prefix docs/.node playwright-core`), else by Chromium's own
`--screenshot` with a virtual-time budget. Nothing is written outside the temporary folder
but the PNG files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.dagster_server import DagsterServers, prepare_home  # noqa: E402

LOCATION = "mixsync"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = {
    # name: (path, a button to click first, or "")
    "sensor": ("/locations/mixsync/sensors/mixsync_inbox_files", ""),
    "asset": ("/assets/mixsync/inbox_files", ""),
    "asset_checks": ("/assets/mixsync/inbox_files?view=checks", ""),
    "asset_plots": ("/assets/mixsync/inbox_files", "Plots"),
    "runs": ("/runs", ""),
}
NODE_SHOT = r"""
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
(async () => {
  const [exe, userDir, base, out, pages] = process.argv.slice(2);
  const context = await chromium.launchPersistentContext(userDir, {
    executablePath: exe, headless: true, viewport: { width: 1440, height: 1000 },
    args: JSON.parse(process.env.CHROMIUM_FLAGS),
  });
  const page = await context.newPage();
  for (const [name, [path, click]] of Object.entries(JSON.parse(pages))) {
    await page.goto(base + path, { waitUntil: "networkidle" });
    // A first visit may greet with a "Join the Dagster community" dialog: skip it.
    await page.getByRole("button", { name: "Skip" }).click({ timeout: 3000 }).catch(() => {});
    if (click) {
      const target = page.getByText(click, { exact: true }).first();
      await target.scrollIntoViewIfNeeded({ timeout: 10000 });
      await target.click();
      // What the click shows sits below the fold of an inner pane: a taller window shows it.
      await page.setViewportSize({ width: 1440, height: 1900 });
    }
    await page.waitForTimeout(2500);  // let the UI settle (tables, plots)
    await page.screenshot({ path: `${out}/${name}.png` });
    await page.setViewportSize({ width: 1440, height: 1000 });
    console.log(`${out}/${name}.png`);
  }
  await context.close();
})().catch((e) => { console.error(e); process.exit(1); });
"""


def example(tmp: Path) -> Path:
    """The repo's example in `tmp`, plus a failing file and a sync with a missing folder."""
    shutil.copytree(REPO / "examples", tmp / "examples")
    (tmp / "examples" / "inbox" / "unreadable.bin").write_bytes(b"\0" * 16)
    cfg = tmp / "syncs.yaml"
    text = (REPO / "syncs.yaml").read_text()
    # One file always fails: a required mapping that has no value for it.
    text = text.replace(
        "        file_name: {source: name}",
        "        file_name: {source: name}\n"
        "      mappings:\n"
        "        title: {source: {type: filename_regex, pattern: '^(?!unreadable)(.+)$'},"
        " required: true}",
    )
    text += (
        "\n  - name: shared_drive\n"
        "    bucket: media\n"
        "    connection_id: examples\n"
        "    source_path: unmounted_share/\n"
        "    polling_interval_seconds: 30\n"
        "    max_consecutive_failures: 1\n"
    )
    cfg.write_text(text)
    return cfg


def wait_passes(servers: DagsterServers, state_db: Path, inbox: Path, passes: int) -> None:
    from mixsync_dagster.state import StateStore

    store = StateStore(f"sqlite:///{state_db}")
    sid = store.sync_id("inbox_files")
    seen = 0
    deadline = time.monotonic() + 60 * passes + 120
    while time.monotonic() < deadline:
        servers.check_alive()
        p = store.get_pass(sid)
        done = 0 if p is None else (p.pass_no if p.state == "done" else p.pass_no - 1)
        if done > seen:
            seen = done
            print(f"pass {done} done", flush=True)
            if done >= passes:
                return
            if done % 2:
                # Something new for every other pass: runs on the runs page, and passes that
                # end inside their tick ("listed 8, 0 new") on the sensor page.
                (inbox / f"dropped_{done}.txt").write_text(f"dropped before pass {done + 1}\n")
        time.sleep(2)
    raise SystemExit(f"only {seen} pass(es) in time\n{servers.logs_tail()}")


def shoot(base: str, out: Path, tmp: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    node_modules = REPO / "docs" / ".node" / "node_modules" / "playwright-core"
    if shutil.which("node") and node_modules.exists():
        script = tmp / "shoot.js"
        script.write_text(NODE_SHOT)
        env = {
            **os.environ,
            "PLAYWRIGHT_CORE": str(node_modules),
            "CHROMIUM_FLAGS": json.dumps([f for f in FLAGS if f != "--headless"]),
        }
        subprocess.run(
            [
                "node",
                str(script),
                CHROMIUM,
                str(tmp / "chromium-profile"),
                base,
                str(out),
                json.dumps(PAGES),
            ],
            env=env,
            check=True,
        )
        return
    for name, (path, _click) in PAGES.items():
        profile = tmp / f"chromium-{name}"
        profile.mkdir()
        subprocess.run(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--window-size=1440,1000",
                "--virtual-time-budget=15000",
                f"--screenshot={out / (name + '.png')}",
                base + path,
            ],
            check=True,
            capture_output=True,
        )
        print(out / f"{name}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mixsync-shots-") as t:
        tmp = Path(t)
        cfg = example(tmp)
        home = tmp / "dagster_home"
        env = {**os.environ, "MIXSYNC_CONFIG": str(cfg), "DAGSTER_HOME": str(home)}
        prepare_home(home, REPO / "dagster.yaml", env)
        servers = DagsterServers(
            home=home, workspace=REPO / "workspace.yaml", log_dir=tmp / "logs", env=env
        )
        try:
            servers.start_all(LOCATION)
            inbox = tmp / "examples" / "inbox"
            wait_passes(servers, tmp / ".mixsync" / "state.db", inbox, args.passes)
            shoot(f"http://127.0.0.1:{servers.port}", Path(args.out), tmp)
        finally:
            servers.stop()


if __name__ == "__main__":
    main()
