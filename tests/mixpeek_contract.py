"""The Mixpeek API contract, read from the vendor's SDK (`mixpeek` 1.3.783, OpenAPI v0.82).

`problems(Model, body)` checks a JSON body against the SDK's pydantic model of that request or
response, the way the API does since 2026-11-02 ("Keys this body does not declare ... are
refused with 422 extra_forbidden naming the accepted keys", in every `mixpeek/api/*.py`):

- a key the model does not declare (its `__properties`) is `extra_forbidden`, unless the model
  keeps undeclared keys (`additional_properties`), at every level (a blob inside an object
  inside a bulk create is checked against `CreateBlobRequest`);
- then the model itself validates types, bounds and enums (`Model.from_dict`, which is what the
  SDK's own client does with answers).

Two places where the generated models cannot be used as they are, both stated here:

- `FilterCondition.value` is typed `DynamicValue` only (a generator artifact: the API's own
  docs filter with literal values, e.g. `{"field": "file_size_bytes", "operator": "gte",
  "value": 1000000}` in `list_uploads_buckets`); and `AndInner` (condition | group) accepts any
  dict through `LogicalOperatorInput.additional_properties`. Filter trees are therefore checked
  by `filter_problems`: a node is a condition (`field`, `operator` from `FilterOperator`, any
  JSON `value`) or a group (`AND`/`OR`/`NOT` lists, `case_sensitive`, and shorthand equality
  keys, which LogicalOperatorInput keeps as additional properties).
- `closed=True` refuses undeclared keys even on a model with `additional_properties`, for
  endpoints whose own description says so (`list_objects_buckets`: "A body key this endpoint
  does not read is rejected with a 422").
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from mixpeek.models.and_inner import AndInner
from mixpeek.models.filter_condition import FilterCondition
from mixpeek.models.filter_operator import FilterOperator
from mixpeek.models.logical_operator_input import LogicalOperatorInput
from pydantic import BaseModel, ValidationError

Problem = tuple[list[Any], str, str]
"""(location, message, type), FastAPI style: (["body", "objects", 3, "blobs", 0, "x"], ...)."""

FILTER_OPERATORS = tuple(o.value for o in FilterOperator)


def declared(model: type[BaseModel]) -> list[str]:
    """The JSON keys a generated model declares (its name-mangled `__properties`)."""
    return list(getattr(model, f"_{model.__name__}__properties"))


def is_open(model: type[BaseModel]) -> bool:
    """True when the model keeps undeclared keys (`additional_properties`)."""
    return "additional_properties" in model.model_fields


def _wrapper(model: type[BaseModel]) -> bool:
    """anyOf / oneOf wrappers (`Data`, `AndInner`): validated whole by their from_dict."""
    return "actual_instance" in model.model_fields


def _nested(tp: Any) -> tuple[str, type[BaseModel]] | None:
    """('one' | 'list' | 'dict', Model) when an annotation holds a generated model."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is not type(None):
                found = _nested(a)
                if found:
                    return found
        return None
    if origin is typing.Annotated:
        return _nested(args[0])
    if origin is list and args:
        inner = _nested(args[0])
        return ("list", inner[1]) if inner and inner[0] == "one" else None
    if origin is dict and len(args) == 2:
        inner = _nested(args[1])
        return ("dict", inner[1]) if inner and inner[0] == "one" else None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return ("one", tp)
    return None


def problems(
    model: type[BaseModel], value: Any, loc: list[Any] | None = None, *, closed: bool = False
) -> list[Problem]:
    """Every way `value` breaks the SDK's `model` (empty: the API accepts it)."""
    loc = list(loc or [])
    if model is LogicalOperatorInput or model is AndInner:
        return filter_problems(value, loc)
    if _wrapper(model):
        try:
            model.from_dict(value)  # type: ignore[attr-defined]
        except (ValueError, TypeError) as e:
            return [(loc, str(e).splitlines()[0], "value_error")]
        return []
    if not isinstance(value, dict):
        return [(loc, "Input should be a valid dictionary", "dict_type")]
    keys = declared(model)
    out: list[Problem] = []
    if closed or not is_open(model):
        for k in value:
            if k not in keys:
                msg = f"Extra inputs are not permitted (accepted keys: {', '.join(keys)})"
                out.append(([*loc, k], msg, "extra_forbidden"))
    nested: list[Problem] = []
    for name, f in model.model_fields.items():
        if name == "additional_properties":
            continue
        key = f.alias or name
        v = value.get(key)
        sub = _nested(f.annotation) if v is not None else None
        if sub is None:
            continue
        kind, inner = sub
        if kind == "one":
            nested += problems(inner, v, [*loc, key])
        elif kind == "list" and isinstance(v, list):
            for i, item in enumerate(v):
                nested += problems(inner, item, [*loc, key, i])
        elif kind == "dict" and isinstance(v, dict):
            for k, item in v.items():
                nested += problems(inner, item, [*loc, key, k])
    if nested:  # the model's own check would repeat them with a shorter location
        return out + nested
    try:
        model.from_dict(value)  # type: ignore[attr-defined]
    except ValidationError as e:
        for err in e.errors():
            out.append(([*loc, *err["loc"]], str(err["msg"]), str(err["type"])))
    except (ValueError, TypeError) as e:
        out.append((loc, str(e).splitlines()[0], "value_error"))
    return out


def filter_problems(node: Any, loc: list[Any]) -> list[Problem]:
    """A filter tree: conditions and AND/OR/NOT groups (see the module docstring)."""
    if not isinstance(node, dict):
        return [(loc, "Input should be a valid dictionary", "dict_type")]
    if "field" in node or "operator" in node:
        out: list[Problem] = []
        for k in node:
            if k not in declared(FilterCondition):
                out.append(([*loc, k], "Extra inputs are not permitted", "extra_forbidden"))
        if not isinstance(node.get("field"), str):
            out.append(([*loc, "field"], "Input should be a valid string", "string_type"))
        op = node.get("operator", "eq")
        if op not in FILTER_OPERATORS:
            out.append(([*loc, "operator"], f"Input should be one of {FILTER_OPERATORS}", "enum"))
        try:
            json.dumps(node.get("value"))
        except (TypeError, ValueError):
            out.append(([*loc, "value"], "Input should be JSON", "value_error"))
        return out
    out = []
    for group in ("AND", "OR", "NOT"):
        if group in node:
            items = node[group]
            if not isinstance(items, list):
                out.append(([*loc, group], "Input should be a valid list", "list_type"))
                continue
            for i, item in enumerate(items):
                out += filter_problems(item, [*loc, group, i])
    cs = node.get("case_sensitive")
    if cs is not None and not isinstance(cs, bool):
        out.append(([*loc, "case_sensitive"], "Input should be a valid boolean", "bool_type"))
    return out


def check_answer(model: type[BaseModel], body: Any) -> None:
    """The double's own answers must parse with the SDK's response model: a failure here is
    a bug in the double, so it raises (the request gets a 500 and the test fails)."""
    found = problems(model, body)
    if found:
        raise AssertionError(f"the double answered a {model.__name__} the SDK refuses: {found}")
