"""Optional dependencies, imported lazily with an error naming the ``pip install`` to run."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_optional"]


def import_optional(module: str, *, pip_name: str | None = None, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        pip_name = pip_name or module.split(".")[0]
        why = f" for {purpose}" if purpose else ""
        raise ImportError(
            f"brainalign needs the optional package {pip_name!r}{why}. Install it with "
            f"`pip install {pip_name}`."
        ) from err
