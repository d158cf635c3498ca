"""Providers list a source in resumable pages and open files; one module per provider."""

from mixsync_dagster.providers.base import Provider, get_provider

__all__ = ["Provider", "get_provider"]
