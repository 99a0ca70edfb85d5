"""Logging and progress bars: one logger for the package, tqdm for long loops."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["logger", "progress", "set_log_level"]

T = TypeVar("T")

logger = logging.getLogger("brainalign")


def set_log_level(verbose: bool | str | int | None) -> None:
    """Set the package's log level (``True`` → INFO, ``False`` → WARNING, or a level name)."""
    if verbose is None:
        return
    if isinstance(verbose, bool):
        level: int | str = logging.INFO if verbose else logging.WARNING
    else:
        level = verbose.upper() if isinstance(verbose, str) else verbose
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s [brainalign] %(message)s"))
        logger.addHandler(handler)


def progress(
    iterable: Iterable[T], *, desc: str, total: int | None = None, verbose: bool = True, **kw: Any
) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when ``verbose`` (tqdm is imported only when used)."""
    if not verbose:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, **kw)
