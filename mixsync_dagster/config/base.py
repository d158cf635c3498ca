"""The base of every syncs.yaml model: unknown keys are errors, and a loaded config is frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
