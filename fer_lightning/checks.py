"""Small argument checks shared by configs, sources, encodings and nets, so every bad
value fails with the same shape of message: the config key, the allowed values, the value."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def check_choice(key: str, value: Any, allowed: Collection[Any]) -> None:
    """Raise ValueError ``<key> must be one of [...], got <value>`` unless ``value`` is allowed."""
    if value not in allowed:
        raise ValueError(f"{key} must be one of {list(allowed)}, got {value!r}")
