"""mixsync-dagster: keep a bucket in step with files in someone else's storage, on Dagster."""

__version__ = "0.1.0"
