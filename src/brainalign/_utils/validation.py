"""Argument validation with messages that name the parameter, the value and the fix."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "check_file",
    "check_option",
    "check_positive",
    "check_type",
    "suggest",
]


def suggest(value: str, options: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest options, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=n, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def check_option(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``allowed`` (MNE-style message).

    Parameters
    ----------
    name : str
        The parameter's name, as the user typed it.
    value : object
        The value received.
    allowed : iterable
        The accepted values.

    Returns
    -------
    value : object
        ``value`` unchanged, so that the call can be used inline.
    """
    allowed = list(allowed)
    if value in allowed:
        return value
    hint = suggest(value, allowed) if isinstance(value, str) else ""
    raise ValueError(
        f"Invalid value for the {name!r} parameter. Allowed values are "
        f"{', '.join(repr(a) for a in allowed)}, but got {value!r} instead.{hint}"
    )


def check_type(name: str, value: Any, types: type | tuple[type, ...], what: str) -> Any:
    """Check ``isinstance(value, types)``; ``what`` describes the expected type in words."""
    if not isinstance(value, types):
        raise TypeError(f"{name!r} must be {what}, got {type(value).__name__} ({value!r:.80}).")
    return value


def check_positive(name: str, value: float, *, strict: bool = True) -> float:
    """Check that a number is positive (``strict``) or non-negative."""
    ok = value > 0 if strict else value >= 0
    if not ok:
        word = "positive" if strict else "non-negative"
        raise ValueError(f"{name!r} must be {word}, got {value!r}.")
    return value


def check_file(path: str | os.PathLike, name: str = "fname", *, what: str = "file") -> Path:
    """Return ``path`` as a :class:`~pathlib.Path` after checking that the file exists.

    The error names the parameter, the resolved path and, when the folder exists, the closest
    file names in it.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise IsADirectoryError(f"{name!r} must be a {what}, but {str(path)!r} is a directory.")
    hint = ""
    if path.parent.is_dir():
        hint = suggest(path.name, (p.name for p in path.parent.iterdir()))
    raise FileNotFoundError(
        f"The {what} given as {name!r} does not exist: {str(path.resolve())!r}.{hint} "
        "Check the path, or fetch the dataset with `brainalign fetch MANIFEST`."
    )
