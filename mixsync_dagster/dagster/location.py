"""The code location `dagster dev` and the daemon load (see workspace.yaml).

Definitions are built when Dagster loads the location, from $MIXSYNC_CONFIG or ./syncs.yaml;
importing this module builds nothing, so the CLI can use any config file from any folder.
"""

from dagster import Definitions, definitions

from mixsync_dagster.config import config_path
from mixsync_dagster.dagster.definitions import build_definitions


@definitions
def defs() -> Definitions:
    return build_definitions(config_path())
