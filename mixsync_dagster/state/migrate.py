"""Bring a state database to the current schema with Alembic, once per process and URL.

The version is kept in `mixsync_alembic_version` (not `alembic_version`, which Dagster's own
PostgreSQL storage uses when it shares the database). A database made before Alembic came in
(schema v3, `mixsync_schema` version row) is upgraded by the same revisions: the first one
completes whatever v1-v3 left out and is a no-op on a v3 database.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection

VERSION_TABLE = "mixsync_alembic_version"
HEAD = "0004"
SCHEMA_LOCK_ID = 0x6D697873  # "mixs": serializes migrations across processes on PostgreSQL


def current_revision(c: Connection) -> str | None:
    if not inspect(c).has_table(VERSION_TABLE):
        return None
    return c.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade(eng: Engine, target: str = "head") -> None:
    """Migrate to `target` (default: the newest revision). Safe when processes race."""
    if target == "head":
        with eng.connect() as c:
            if current_revision(c) == HEAD:
                return  # the common case: one query, no Alembic import
    from alembic import command
    from alembic.config import Config

    with eng.begin() as c:
        if c.dialect.name == "postgresql":
            c.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_ID})")
        else:
            # pysqlite would run each DDL statement in autocommit; an explicit immediate
            # transaction makes the migration atomic and serializes concurrent first uses.
            c.exec_driver_sql("BEGIN IMMEDIATE")
        if target == "head" and current_revision(c) == HEAD:
            return
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        cfg.attributes["connection"] = c
        command.upgrade(cfg, target)
