"""Alembic environment: always run from `mixsync_dagster.state.migrate` on a live connection."""

from alembic import context

from mixsync_dagster.state.migrate import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
context.run_migrations()
