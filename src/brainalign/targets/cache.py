"""On-disk cache of stimulus features: atomic, streamed, checksummed entries.

An entry is one array of features, ``(n_stimuli, ...)``, for one model, one set of weights, one
output (layer), one preprocessing, one pooling and one ordered set of stimuli. It is stored as two
files in the cache folder::

    <cache_dir>/<key[:2]>/<key>.npy    the array, NumPy's .npy format (memory-mappable)
    <cache_dir>/<key[:2]>/<key>.json   its header: sha256 of the .npy file, shape, dtype, size, spec

The ``.npy`` file is written batch by batch into a preallocated memory map under a temporary name,
and renamed onto its final name only when complete; the JSON header is written (atomically) last,
and is what makes an entry valid. A process killed during a write therefore leaves either a
temporary file (never read) or an ``.npy`` without header, which :meth:`FeatureCache.load` reports
and removes. Every load checks the header against the file (size, shape, dtype and, unless
``verify=False``, the sha256 of the whole file): an entry that does not match is removed with a
:class:`~brainalign._utils.errors.BrainAlignWarning` and recomputed, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from brainalign._utils.atomic import atomic_path, atomic_write, file_sha256
from brainalign._utils.errors import BrainAlignWarning
from brainalign._utils.progress import logger

__all__ = [
    "CacheWriter",
    "FeatureCache",
    "default_cache_dir",
    "make_cache_key",
]

_FORMAT = "brainalign-feature-cache"
_VERSION = 1


def default_cache_dir() -> Path:
    """Return the default cache folder: ``$BRAINALIGN_CACHE`` or ``~/.cache/brainalign``.

    Features live in its ``features/`` subfolder.
    """
    root = os.environ.get("BRAINALIGN_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "brainalign"
    return base / "features"


def _canonical(obj: Any) -> Any:
    """Turn ``obj`` into JSON-serialisable data with a stable form (sorted keys, lists)."""
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return repr(obj)


def make_cache_key(spec: Mapping[str, Any]) -> str:
    """Return the hex SHA-256 of a canonical JSON form of ``spec``.

    Parameters
    ----------
    spec : mapping
        Everything the features depend on: model, weights checksum, output (layer),
        preprocessing, pooling, dtype and the content hash of the stimulus set.

    Returns
    -------
    key : str
        64 hexadecimal characters; equal specs (in any key order) give equal keys.
    """
    text = json.dumps(_canonical(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CacheWriter:
    """Write one cache entry batch by batch (use through :meth:`FeatureCache.writer`).

    Rows must be appended in order; the checksum is computed while writing, so the file is never
    read back. Nothing is visible under the entry's final name until :meth:`commit` succeeds.
    """

    def __init__(
        self,
        cache: FeatureCache,
        key: str,
        shape: tuple[int, ...],
        dtype: Any,
        spec: Mapping[str, Any],
    ) -> None:
        self._cache = cache
        self.key = key
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.spec = dict(spec)
        self._n_written = 0
        self._ctx: Any = None
        self._array: np.memmap | None = None
        self._hash = hashlib.sha256()
        self.path = cache._paths(key)[0]

    def __enter__(self) -> CacheWriter:
        self._cache.remove(self.key)
        self._ctx = atomic_path(self.path, suffix=".npy")
        tmp = self._ctx.__enter__()
        self._array = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.dtype, shape=self.shape)
        with open(tmp, "rb") as fh:  # the .npy header, hashed before the data rows
            self._hash.update(fh.read(self._array.offset))
        return self

    def append(self, rows: np.ndarray) -> None:
        """Write the next ``rows``, shape ``(n_rows, *shape[1:])``, after those already written."""
        if self._array is None:
            raise RuntimeError("CacheWriter.append() called outside its 'with' block.")
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:]:
            raise ValueError(
                f"Features of shape {rows.shape[1:]} cannot be written into a cache entry of "
                f"per-stimulus shape {self.shape[1:]}."
            )
        stop = self._n_written + rows.shape[0]
        if stop > self.shape[0]:
            raise ValueError(f"Too many rows for the cache entry: {stop} > {self.shape[0]}.")
        self._array[self._n_written : stop] = rows
        self._hash.update(rows.tobytes())
        self._n_written = stop

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        array, self._array = self._array, None
        if array is not None:
            array.flush()
            del array
        if exc_type is None and self._n_written != self.shape[0]:
            exc = ValueError(
                f"Cache entry {self.key} received {self._n_written} of {self.shape[0]} rows."
            )
            self._ctx.__exit__(type(exc), exc, None)
            raise exc
        self._ctx.__exit__(exc_type, exc, tb)  # renames onto the final .npy on success
        if exc_type is None:
            self._cache._write_header(self, self._hash.hexdigest())


class FeatureCache:
    """A folder of feature arrays keyed by :func:`make_cache_key`.

    Parameters
    ----------
    cache_dir : path-like | None
        The folder; ``None`` uses :func:`default_cache_dir`.
    verify : bool
        Check the sha256 of every entry on load (reads the whole file). ``False`` still checks
        the header, the size, the shape and the dtype.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, *, verify: bool = True) -> None:
        self.cache_dir = (
            Path(cache_dir).expanduser() if cache_dir is not None else (default_cache_dir())
        )
        self.verify = verify

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.cache_dir)!r}, verify={self.verify})"

    def _paths(self, key: str) -> tuple[Path, Path]:
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"Invalid cache key {key!r}: expected a hex digest.")
        folder = self.cache_dir / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.json"

    def path(self, key: str) -> Path:
        """Return the ``.npy`` path of the entry ``key`` (whether or not it exists)."""
        return self._paths(key)[0]

    def remove(self, key: str) -> None:
        """Delete the entry ``key`` (header first, so that no half entry looks valid)."""
        npy, header = self._paths(key)
        header.unlink(missing_ok=True)
        npy.unlink(missing_ok=True)

    def writer(
        self,
        key: str,
        shape: tuple[int, ...],
        dtype: Any = "float32",
        spec: Mapping[str, Any] | None = None,
    ) -> CacheWriter:
        """Return a context manager that streams a new entry to disk.

        Parameters
        ----------
        key : str
            The entry's key.
        shape : tuple of int
            Full shape of the array, ``(n_stimuli, ...)``.
        dtype : dtype-like
            Stored dtype.
        spec : mapping | None
            What the key was made from, stored in the header for inspection.

        Examples
        --------
        >>> with cache.writer(key, (n, 8)) as w:  # doctest: +SKIP
        ...     for batch in batches:
        ...         w.append(batch)
        """
        return CacheWriter(self, key, shape, dtype, spec or {})

    def _write_header(self, writer: CacheWriter, sha256: str) -> None:
        npy, header = self._paths(writer.key)
        info = {
            "format": _FORMAT,
            "version": _VERSION,
            "key": writer.key,
            "sha256": sha256,
            "shape": list(writer.shape),
            "dtype": writer.dtype.str,
            "n_bytes": npy.stat().st_size,
            "created": datetime.now(timezone.utc).isoformat(),
            "spec": _canonical(writer.spec),
        }
        with atomic_write(header, "w") as fh:
            json.dump(info, fh, indent=1)

    def _invalid(self, key: str, npy: Path, why: str) -> None:
        warnings.warn(
            f"The cached features {str(npy)!r} are unusable ({why}); the entry was removed and "
            "will be recomputed.",
            BrainAlignWarning,
            stacklevel=3,
        )
        self.remove(key)

    def load(self, key: str, *, mmap: bool = True, verify: bool | None = None) -> np.ndarray | None:
        """Return the array of entry ``key``, or ``None`` when absent or invalid.

        Parameters
        ----------
        key : str
            The entry's key.
        mmap : bool
            Return a read-only memory map instead of reading the array into memory.
        verify : bool | None
            Check the sha256 (``None``: the cache's setting). The size, shape and dtype are
            always checked.

        Returns
        -------
        array : ndarray | None
            ``None`` when there is no entry; an entry that fails a check is removed with a
            ``BrainAlignWarning`` and ``None`` is returned.
        """
        npy, header = self._paths(key)
        if not header.exists():
            if npy.exists():
                self._invalid(key, npy, "its header is missing: an interrupted write")
            return None
        try:
            with open(header, encoding="utf-8") as fh:
                info = json.load(fh)
            expected = (info["format"], info["key"], info["sha256"], info["shape"], info["dtype"])
            if expected[0] != _FORMAT or expected[1] != key:
                raise ValueError("foreign header")
        except (OSError, ValueError, KeyError, TypeError) as err:
            self._invalid(key, npy, f"its header {str(header)!r} is damaged: {err}")
            return None
        if not npy.exists():
            self._invalid(key, npy, "the array file is missing")
            return None
        size = npy.stat().st_size
        if size != info.get("n_bytes"):
            self._invalid(key, npy, f"it has {size} bytes, its header says {info.get('n_bytes')}")
            return None
        try:
            array = np.load(npy, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            self._invalid(key, npy, f"it cannot be read as .npy: {err}")
            return None
        if list(array.shape) != list(info["shape"]) or array.dtype.str != info["dtype"]:
            self._invalid(
                key,
                npy,
                f"shape/dtype {array.shape}/{array.dtype.str} differ from the header's "
                f"{tuple(info['shape'])}/{info['dtype']}",
            )
            return None
        if self.verify if verify is None else verify:
            digest = file_sha256(npy, chunk_size=1 << 22)
            if digest != info["sha256"]:
                del array
                self._invalid(key, npy, "its sha256 differs from the header's: the file changed")
                return None
        logger.debug("Loaded cached features %s %s", npy, array.shape)
        return array if mmap else np.array(array)

    def contains(self, key: str) -> bool:
        """Whether a header exists for ``key`` (without verifying the entry)."""
        return self._paths(key)[1].exists()
