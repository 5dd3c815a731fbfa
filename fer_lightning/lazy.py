"""Names a module re-exports from heavier modules, imported only when first used.

A command module (``fer_lightning.train``, ``.predict``, ...) keeps earlier import paths
working (``from fer_lightning.predict import Predictor``) without importing torch or
Lightning when the command only answers ``--help`` or a config error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(module: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) for ``module`` that imports
    ``exports[name]`` and returns its ``name`` the first time ``name`` is asked for."""
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)
    return __getattr__


def exports_of(module: str, *names: str) -> dict[str, str]:
    """``{name: module}`` for each of ``names``: one entry of a re-export table."""
    return dict.fromkeys(names, module)
