"""Recipe comparison: an index is only valid for the exact preprocessing recipe it was built with."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_MISSING = object()
_MAX_VALUE_CHARS = 60


def normalise_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe as it reads back from JSON (tuples become lists, keys strings): what is compared.

    Raises ValueError if the recipe is not a JSON object of finite values."""
    if not isinstance(recipe, Mapping):
        raise ValueError(f"a recipe must be a mapping (JSON object), not {type(recipe).__name__}")
    try:
        text = json.dumps(dict(recipe), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the recipe is not JSON-serialisable: {exc}") from exc
    result: dict[str, Any] = json.loads(text)
    return result


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def _canonical(value: Any) -> str:
    # Exact comparison: 1 and 1.0, or true and 1, are different recipes.
    return json.dumps(value, sort_keys=True)


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def recipe_differences(built: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(dotted key, description) for every leaf where two normalised recipes differ, sorted by key.

    Nested objects are compared key by key; lists are compared whole; values must match exactly
    (as canonical JSON), so 1 and 1.0 differ."""
    left: dict[str, Any] = {}
    right: dict[str, Any] = {}
    _flatten(dict(built), "", left)
    _flatten(dict(wanted), "", right)
    differences: list[tuple[str, str]] = []
    for key in sorted(set(left) | set(right)):
        a = left.get(key, _MISSING)
        b = right.get(key, _MISSING)
        if a is _MISSING:
            differences.append((key, f"{key}: only in the profile ({_show(b)})"))
        elif b is _MISSING:
            differences.append((key, f"{key}: only in the index ({_show(a)})"))
        elif _canonical(a) != _canonical(b):
            differences.append((key, f"{key}: index {_show(a)}, profile {_show(b)}"))
    return differences
