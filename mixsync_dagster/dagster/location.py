"""The code location `dagster dev` and the daemon load (see workspace.yaml).

Definitions are built when Dagster loads the location, from $MIXSYNC_CONFIG or ./syncs.yaml;
importing this module builds nothing, so the CLI can use any config file from any folder.

A bad config fails the load with exactly the lines `mixsync validate` prints and no stack trace
(there is nothing in mixsync's frames a user could act on).
"""

from dagster import Definitions, definitions
from dagster._core.errors import DagsterUserCodeProcessError
from dagster._utils.error import SerializableErrorInfo

from mixsync_dagster.config import config_path
from mixsync_dagster.dagster.definitions import build_definitions
from mixsync_dagster.errors import ConfigError


def load_error(error: ConfigError) -> DagsterUserCodeProcessError:
    """The load error Dagster shows as it is: its message, no stack, no cause.

    Dagster wraps an exception raised while loading definitions in a DagsterUserCodeLoadError
    whose stack and cause are the user's frames. A DagsterError passes its boundary unwrapped,
    and a DagsterUserCodeProcessError carrying one already-serialized error is reported as that
    error (the path errors from a user code process take to the webserver), so the UI, the
    GraphQL API and `dagster definitions validate` show our lines and nothing else."""
    info = SerializableErrorInfo(message=str(error), stack=[], cls_name=type(error).__name__)
    return DagsterUserCodeProcessError(str(error), user_code_process_error_infos=[info])


@definitions
def defs() -> Definitions:
    try:
        return build_definitions(config_path())
    except ConfigError as e:
        raise load_error(e) from None
