"""The syncs.yaml contract (`models`) and how a file becomes one (`loader`)."""

from mixsync_dagster.config.loader import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_NAME,
    config_path,
    load_config,
    parse_config,
    split_bucket_path,
    split_drive_path,
)
from mixsync_dagster.config.models import *  # noqa: F403
from mixsync_dagster.config.models import __all__ as _models_all

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_NAME",
    "config_path",
    "load_config",
    "parse_config",
    "split_bucket_path",
    "split_drive_path",
    *_models_all,
]
