"""Bucket targets: where synced files become objects; one module per backend."""

from mixsync_dagster.targets.base import BucketTarget, ObjectResult, ObjectSpec, get_target

__all__ = ["BucketTarget", "ObjectResult", "ObjectSpec", "get_target"]
