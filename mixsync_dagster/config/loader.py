"""Loading syncs.yaml: read, resolve {env: VAR}, validate, and report problems by field.

Loading is all-or-nothing: `load_config` either returns a fully validated `MixsyncConfig` (every
`{env: VAR}` resolved, every cross-reference checked) or raises one `ConfigError` listing every
problem at once, each one line naming the file, the sync, the field and the fix. No problem
quotes a value read from the environment (see `mixsync_dagster.redaction`).

The steps, each in its own module: `yamlfile` (the file as a document: size, UTF-8, duplicate
keys, bounded nesting and aliases), `env` (where `{env: VAR}` may stand, and reading it), the
pydantic `models` (each field), `checks` (between sections, on the data as written, so a
missing bucket is reported even when fields elsewhere fail) and `problems` (naming the field).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mixsync_dagster.config.checks import (
    MUX_PREFIX,
    cross_check,
    nul_problems,
    source_path_problem,
    split_bucket_path,
    split_drive_path,
)
from mixsync_dagster.config.env import resolve_env
from mixsync_dagster.config.models import MixsyncConfig, resolve_root
from mixsync_dagster.config.problems import from_pydantic, where
from mixsync_dagster.config.yamlfile import DocumentError, DuplicateKey, parse, read_text
from mixsync_dagster.errors import ConfigError, ConfigProblem
from mixsync_dagster.redaction import register

CONFIG_ENV_VAR = "MIXSYNC_CONFIG"
DEFAULT_CONFIG_NAME = "syncs.yaml"

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_NAME",
    "MUX_PREFIX",
    "config_path",
    "load_config",
    "parse_config",
    "source_path_problem",
    "split_bucket_path",
    "split_drive_path",
]


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`-c/--config`, else `$MIXSYNC_CONFIG`, else `./syncs.yaml`."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV_VAR)
    return Path(env) if env else Path(DEFAULT_CONFIG_NAME)


def _file_problem(message: str, fix: str) -> ConfigProblem:
    return ConfigProblem(field="(file)", message=message, fix=fix)


def load_config(path: str | os.PathLike[str] | None = None) -> MixsyncConfig:
    """Read, resolve and validate a syncs.yaml. Raises ConfigError listing every problem."""
    p = config_path(path)
    shown = str(p)
    try:
        raw, duplicates = parse(read_text(p))
    except DocumentError as e:
        fix = e.fix or f"create it, pass -c PATH, or set {CONFIG_ENV_VAR}"
        raise ConfigError(shown, [_file_problem(e.message, fix)]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            shown,
            [
                _file_problem(
                    "the top level must be a mapping",
                    "start with keys such as 'connections:', 'buckets:' and 'syncs:'",
                )
            ],
        )
    base_dir = os.path.dirname(os.path.realpath(p))
    return parse_config(raw, source_file=shown, base_dir=base_dir, duplicates=duplicates)


def parse_config(
    raw: dict[str, Any],
    *,
    source_file: str,
    base_dir: str,
    duplicates: list[DuplicateKey] | None = None,
) -> MixsyncConfig:
    """Validate an already-parsed YAML document (see load_config)."""

    def at(loc: tuple[Any, ...]) -> tuple[str | None, str]:
        return where(loc, raw)

    problems = [_duplicate_problem(d, at) for d in duplicates or ()]
    env_problems: list[ConfigProblem] = []
    resolved, read = resolve_env(raw, at, env_problems)
    _register_roots(resolved, read, base_dir)
    nul = nul_problems(resolved, at)
    problems += env_problems + nul
    # A field already reported (its variable unset, a NUL in it) adds nothing by failing again.
    reported = {(p.sync, p.field) for p in env_problems + nul}
    for key in ("base_dir", "source_file"):
        if key in resolved:
            problems.append(ConfigProblem(field=key, message="unknown key", fix=f"remove '{key}'"))
    cfg: MixsyncConfig | None = None
    try:
        cfg = MixsyncConfig.model_validate(
            {**resolved, "base_dir": base_dir, "source_file": source_file}
        )
    except ValidationError as e:
        found = [from_pydantic(err, raw) for err in e.errors()]
        problems += [p for p in found if (p.sync, p.field) not in reported]
    problems += cross_check(resolved, base_dir)
    if problems:
        raise ConfigError(source_file, problems)
    assert cfg is not None
    return cfg


def _duplicate_problem(d: DuplicateKey, at: Any) -> ConfigProblem:
    sync, field = at((*d.loc, d.key))
    first, again = d.lines
    return ConfigProblem(
        sync=sync,
        field=field,
        message=f"written twice (lines {first} and {again}); YAML would keep only the last one",
        fix="keep one of them (merge their contents if both are needed)",
    )


def _register_roots(doc: Any, read: dict[tuple[Any, ...], str], base_dir: str) -> None:
    """A local root read from the environment is shown resolved (an absolute path, a file://
    URL): mask that form too."""
    for loc, var in read.items():
        if len(loc) == 3 and loc[0] == "connections" and loc[2] == "root":
            root = doc["connections"][loc[1]]["root"]
            register(str(resolve_root(base_dir, root)), var)
