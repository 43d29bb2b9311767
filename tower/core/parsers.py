"""The API's JSON parser: DRF's, bounded in nesting depth and refusing non-finite numbers.

Python's decoder recurses once per level and raises RecursionError at about 1,000 levels (a 500
on every endpoint); anything that walks the data later (validation, deepcopy, the database's JSON
encoder) recurses as well. No Tower document needs more than a few levels, so the bound is low.
``NaN``, ``Infinity`` and numbers that overflow a float (``1e400``) are not JSON numbers a
graph or a setting can use, so they are refused here rather than deep in a service.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 64


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def json_depth_error(data: Any, *, max_depth: int = MAX_DEPTH) -> str | None:
    """Why ``data`` is nested too deeply, or None. Iterative, so any depth is safe to check."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            return f"the JSON is nested more than {max_depth} levels deep"
        stack.extend((child, depth + 1) for child in children)
    return None


def loads(text: str | bytes) -> Any:
    """``json.loads`` with Tower's bounds; raises ValueError with a message a person can read."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError(f"the JSON is nested more than {MAX_DEPTH} levels deep") from None
    if (problem := json_depth_error(data)) is not None:
        raise ValueError(problem)
    return data


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with :func:`loads`: a clear 400 for deep nesting and non-finite numbers."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            return loads(stream.read().decode(encoding))
        except UnicodeDecodeError:
            raise ParseError(f"JSON parse error - the body is not {encoding} text") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
