"""Helpers shared by the fMRI and M/EEG simulators: seeds, feature reduction, deterministic files.

Everything a simulator writes must be byte-identical for a given seed, so that a dataset can be
checked against the checksums of its manifest and regenerated anywhere. The writers here make
sure of it: HDF5 objects carry no timestamps (``track_times=False``), JSON and YAML keys are
written in a fixed order, and whole datasets are generated into a temporary folder that is
renamed into place only when complete (:func:`generate_atomically`).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from brainalign._utils.atomic import atomic_path, atomic_write, file_sha256
from brainalign._utils.validation import check_option

__all__ = [
    "GROUND_TRUTH_ARRAYS",
    "GROUND_TRUTH_INFO",
    "MANIFEST_NAME",
    "child_rng",
    "correlation_matrix",
    "file_entries",
    "generate_atomically",
    "load_ground_truth",
    "publish_files",
    "read_hdf5",
    "reduce_features",
    "save_ground_truth",
    "subject_labels",
    "to_jsonable",
    "top1_accuracy",
    "write_hdf5",
    "write_json",
    "write_manifest",
    "zscore_columns",
]

#: File names of the ground truth written beside every simulated dataset.
GROUND_TRUTH_INFO = "ground_truth.json"
GROUND_TRUTH_ARRAYS = "ground_truth.h5"
#: File name of the manifest written in every simulated dataset's folder.
MANIFEST_NAME = "manifest.yaml"


# --------------------------------------------------------------------------------------------
# seeds and labels
# --------------------------------------------------------------------------------------------


def child_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator for one named part of a simulation, independent of every other part.

    Each part (allocation of stimuli, anatomy of subject 2, noise of subject 3 …) draws from
    its own stream, derived from ``seed`` and the ``keys`` through
    :class:`numpy.random.SeedSequence`, so adding or resizing one part never changes the
    numbers another part draws.

    Parameters
    ----------
    seed : int
        The simulation's seed (non-negative).
    *keys : str | int
        Names of the part; strings enter through their CRC-32 (stable across platforms and
        Python versions, unlike ``hash``).

    Returns
    -------
    rng : numpy.random.Generator
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"'seed' must be a non-negative integer, got {seed!r}.")
    entropy = [int(seed)]
    for key in keys:
        entropy.append(zlib.crc32(key.encode("utf-8")) if isinstance(key, str) else int(key))
    return np.random.default_rng(np.random.SeedSequence(entropy))


def subject_labels(n_subjects: int) -> list[str]:
    """Subject labels ``"01"``, ``"02"`` … (two digits at least, as BIDS and NSD write them)."""
    width = max(2, len(str(n_subjects)))
    return [f"{i:0{width}d}" for i in range(1, n_subjects + 1)]


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------


def zscore_columns(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score each column over rows (population SD); constant columns are dropped.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_columns)

    Returns
    -------
    z : ndarray, shape (n_rows, n_kept) float64
    kept : ndarray of bool, shape (n_columns,)
        Which columns vary (were kept).
    """
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    kept = std > 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0)))
    z = (x[:, kept] - x[:, kept].mean(axis=0)) / std[kept]
    return z, kept


def reduce_features(
    features: np.ndarray,
    n_components: int,
    *,
    center_patterns: bool = True,
    name: str = "features",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Z-score features, centre each stimulus's pattern, keep the first principal components.

    The scores keep the geometry of the standardised features up to the discarded components
    (not whitened). With ``center_patterns``, each stimulus's pattern is centred across
    features after the z-scoring, so the cosine similarity of two rows of scores approximates
    the Pearson correlation of the two stimuli's feature patterns: correlation-distance RDMs of
    the layer and of any orthonormal read-out of the scores agree.

    Parameters
    ----------
    features : ndarray, shape (n_stimuli, ...)
        Features of one layer; trailing axes are flattened.
    n_components : int
        Components to keep; fewer are kept when the features have lower rank
        (``min(n_stimuli - 1, n_varying_features)``).
    center_patterns : bool
        Subtract each stimulus's mean over the z-scored features (the columns keep zero mean).
    name : str
        The layer's name, for error messages.

    Returns
    -------
    scores : ndarray, shape (n_stimuli, n_kept) float64
        Principal component scores (zero mean over stimuli), in decreasing order of variance;
        the sign of each component is fixed so that its largest-magnitude loading is positive
        (deterministic).
    info : dict
        ``explained_variance_ratio`` ``(n_kept,)`` (fraction of the total variance of the
        standardised, centred features) and ``n_features`` (the number of varying features).
    """
    x = np.asarray(features)
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(
            f"The features of {name!r} must have shape (n_stimuli, ...) with at least 2 stimuli, "
            f"got shape {x.shape}."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"The features of {name!r} hold NaN or infinite values; fix them first.")
    z, kept = zscore_columns(x.reshape(x.shape[0], -1))
    if z.shape[1] == 0:
        raise ValueError(
            f"Every feature of {name!r} is constant across the {x.shape[0]} stimuli; such a layer "
            "cannot drive responses. Check the stimuli (are they all the same image?)."
        )
    if center_patterns:
        z = z - z.mean(axis=1, keepdims=True)  # column means stay 0 (their mean is 0)
    # eigendecomposition of the smaller Gram matrix (much faster than an SVD of z for
    # n_stimuli << n_features, and the other way round)
    n, d = z.shape
    gram = z @ z.T if n <= d else z.T @ z
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    rank = int(np.sum(evals > evals[0] * 1e-12)) if evals[0] > 0 else 0
    k = min(int(n_components), rank, n - 1)
    if n <= d:
        s = np.sqrt(evals[:k])
        scores = evecs[:, :k] * s
        loadings = (evecs[:, :k].T @ z) / s[:, None]
    else:
        loadings = evecs[:, :k].T
        scores = z @ loadings.T
    signs = np.sign(loadings[np.arange(k), np.argmax(np.abs(loadings), axis=1)])
    signs[signs == 0] = 1.0
    scores = scores * signs
    total = float(np.sum(z**2))
    s = np.sqrt(evals[:k])
    info = {
        "explained_variance_ratio": (s**2) / total,
        "n_features": np.asarray(int(kept.sum())),
    }
    return scores, info


def correlation_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlations between the rows of ``a`` and the rows of ``b``.

    Parameters
    ----------
    a : ndarray, shape (n_a, n_features)
    b : ndarray, shape (n_b, n_features)

    Returns
    -------
    r : ndarray, shape (n_a, n_b)
        ``r[i, j]`` is the correlation of ``a[i]`` and ``b[j]`` across features (0 where a row
        is constant).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    na[na == 0] = np.inf
    nb[nb == 0] = np.inf
    return (a / na) @ (b / nb).T


def top1_accuracy(scores: np.ndarray, *, larger_is_better: bool = True) -> float:
    """Fraction of rows whose best-scoring column is their own (the diagonal).

    Parameters
    ----------
    scores : ndarray, shape (n_queries, n_candidates)
        Query ``i``'s correct candidate is ``i``. Ties count as failures (a query whose own
        score ties with another's is not identified).
    larger_is_better : bool
        ``True`` for similarities, ``False`` for distances.

    Returns
    -------
    accuracy : float
        In ``[0, 1]``; chance is ``1 / n_candidates``.
    """
    s = np.asarray(scores, dtype=np.float64)
    if not larger_is_better:
        s = -s
    n = s.shape[0]
    own = s[np.arange(n), np.arange(n)]
    others = s.copy()
    others[np.arange(n), np.arange(n)] = -np.inf
    return float(np.mean(own > others.max(axis=1)))


# --------------------------------------------------------------------------------------------
# deterministic files
# --------------------------------------------------------------------------------------------


def to_jsonable(obj: Any) -> Any:
    """Turn NumPy scalars/arrays, paths, tuples and dataclass-like mappings into JSON data."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, os.PathLike):
        return Path(obj).as_posix()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON with sorted keys, atomically (same object → same bytes)."""
    path = Path(path)
    text = json.dumps(to_jsonable(obj), indent=1, sort_keys=True, allow_nan=False) + "\n"
    with atomic_write(path, "w") as fh:
        fh.write(text)
    return path


def write_hdf5(
    path: str | os.PathLike,
    datasets: Mapping[str, np.ndarray],
    *,
    attrs: Mapping[str, Any] | None = None,
    dataset_attrs: Mapping[str, Mapping[str, Any]] | None = None,
    compression: str | None = None,
) -> Path:
    """Write arrays to an HDF5 file whose bytes depend only on the content.

    Parameters
    ----------
    path : path-like
        The file (written under a temporary name, then renamed).
    datasets : mapping of str to ndarray
        Dataset paths (``"a/b"`` creates the group ``a``) and their arrays; strings are stored
        as UTF-8 variable-length strings.
    attrs : mapping | None
        Attributes of the root.
    dataset_attrs : mapping of str to mapping | None
        Attributes of some datasets.
    compression : {"gzip", None}
        Compression of every dataset (``"gzip"``, level 4, is deterministic too).

    Returns
    -------
    path : Path
    """
    import h5py

    check_option("compression", compression, ("gzip", None))
    path = Path(path)
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w", track_order=False) as h5:
        for key, value in (attrs or {}).items():
            h5.attrs[key] = value
        for name, array in datasets.items():
            parent = name.rsplit("/", 1)[0] if "/" in name else ""
            if parent and parent not in h5:
                h5.create_group(parent, track_order=False)
            arr = np.asarray(array)
            kwargs: dict[str, Any] = {"track_times": False}
            if arr.dtype.kind in "UO":
                arr = np.asarray([str(v) for v in arr.ravel()], dtype=object).reshape(arr.shape)
                kwargs["dtype"] = h5py.string_dtype()
            elif compression and arr.size > 0 and arr.ndim > 0:
                kwargs.update(compression=compression, compression_opts=4)
            ds = h5.create_dataset(name, data=arr, **kwargs)
            for key, value in (dataset_attrs or {}).get(name, {}).items():
                ds.attrs[key] = value
    return path


def read_hdf5(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file, by path (strings decoded to ``str`` arrays)."""
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                if h5py.check_string_dtype(obj.dtype) is not None:
                    out[name] = obj.asstr()[()]
                    if isinstance(out[name], np.ndarray):
                        out[name] = out[name].astype(str)
                else:
                    out[name] = obj[()]

        h5.visititems(visit)
    return out


def save_ground_truth(
    folder: str | os.PathLike, info: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> list[Path]:
    """Write a simulation's ground truth: ``ground_truth.json`` and ``ground_truth.h5``.

    Parameters
    ----------
    folder : path-like
        The dataset's folder.
    info : mapping
        JSON-serialisable description (parameters, definitions, scalar results).
    arrays : mapping of str to ndarray
        Arrays, by HDF5 path (``"sub-01/clean"``), written gzip-compressed.

    Returns
    -------
    paths : list of Path
        The two files.
    """
    folder = Path(folder)
    return [
        write_json(folder / GROUND_TRUTH_INFO, info),
        write_hdf5(folder / GROUND_TRUTH_ARRAYS, arrays, compression="gzip"),
    ]


def load_ground_truth(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read what :func:`save_ground_truth` wrote.

    Returns
    -------
    info : dict
    arrays : dict of str to ndarray
    """
    folder = Path(folder)
    info_path = folder / GROUND_TRUTH_INFO
    arrays_path = folder / GROUND_TRUTH_ARRAYS
    for path in (info_path, arrays_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"The simulated dataset {str(folder)!r} has no {path.name!r}; it is incomplete or "
                "not a simulated dataset. Generate it again (brainalign simulate …)."
            )
    with open(info_path, encoding="utf-8") as fh:
        info = json.load(fh)
    return info, read_hdf5(arrays_path)


# --------------------------------------------------------------------------------------------
# manifests and atomic generation
# --------------------------------------------------------------------------------------------


def file_entries(
    folder: str | os.PathLike,
    paths: Iterable[str | os.PathLike],
    *,
    role: str,
    description: str = "",
) -> list[dict[str, Any]]:
    """Manifest ``files`` entries (path, size, sha256, role) for files inside ``folder``.

    Parameters
    ----------
    folder : path-like
        The data root.
    paths : iterable of path-like
        Files, absolute or relative to ``folder``.
    role : str
        One of :data:`brainalign.io.manifest.FILE_ROLES`.
    description : str
        Shared description.
    """
    folder = Path(folder)
    out = []
    for p in paths:
        p = Path(p)
        full = p if p.is_absolute() else folder / p
        entry: dict[str, Any] = {
            "path": full.relative_to(folder).as_posix(),
            "size": full.stat().st_size,
            "sha256": file_sha256(full),
            "role": role,
        }
        if description:
            entry["description"] = description
        out.append(entry)
    return out


def write_manifest(folder: str | os.PathLike, manifest: Mapping[str, Any]) -> Path:
    """Validate a manifest mapping against the schema and write it as ``manifest.yaml``.

    The keys are written in the given order (``sort_keys=False``), so the same mapping always
    gives the same bytes.

    Raises
    ------
    ManifestError
        When the mapping does not follow the schema of :mod:`brainalign.io.manifest`.
    """
    import yaml

    from brainalign.io.manifest import manifest_from_dict

    data = to_jsonable(manifest)
    manifest_from_dict(data, source=Path(folder) / MANIFEST_NAME)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    path = Path(folder) / MANIFEST_NAME
    with atomic_write(path, "w") as fh:
        fh.write(text)
    return path


def publish_files(folder: str | os.PathLike) -> None:
    """Give every file under ``folder`` the permissions a plain ``open()`` would (the umask's).

    Atomic writes go through :func:`tempfile.mkstemp`, whose files are private (``0600``); a
    dataset meant to be shared (a cache folder) should not be.
    """
    folder = Path(folder)
    probe = folder / f".probe-{uuid.uuid4().hex[:8]}"
    probe.touch()
    mode = probe.stat().st_mode & 0o777
    probe.unlink()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


def generate_atomically(
    dest: str | os.PathLike,
    build: Callable[[Path], Any],
    *,
    if_exists: str = "error",
) -> tuple[Path, Any]:
    """Build a folder under a temporary name beside ``dest``, then rename it onto ``dest``.

    A process killed while building leaves a hidden ``.<name>.tmp-…`` folder, never a
    half-written ``dest``.

    Parameters
    ----------
    dest : path-like
        The final folder.
    build : callable
        ``build(tmp_folder)`` writes the content (the folder exists and is empty); its return
        value is returned.
    if_exists : {"error", "replace", "keep"}
        What to do when ``dest`` exists and is not empty: raise a ``FileExistsError``, replace
        it (after the new folder is complete), or keep it and discard the new one (for caches
        that another process may have filled meanwhile).

    Returns
    -------
    dest : Path
    result : object
        What ``build`` returned.
    """
    check_option("if_exists", if_exists, ("error", "replace", "keep"))
    dest = Path(dest).expanduser()

    def occupied() -> bool:
        return dest.exists() and (not dest.is_dir() or any(dest.iterdir()))

    if occupied() and if_exists == "error":
        raise FileExistsError(
            f"The output folder {str(dest)!r} exists and is not empty. Choose another folder, "
            "delete it, or pass overwrite=True to replace it."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        result = build(tmp)
        publish_files(tmp)
        if dest.exists() and not occupied():
            dest.rmdir()
        if occupied():
            if if_exists == "keep":
                shutil.rmtree(tmp)
                return dest, result
            if if_exists == "error":
                raise FileExistsError(
                    f"The output folder {str(dest)!r} was filled by another process while this "
                    "one was generating; nothing was overwritten."
                )
            trash = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dest, trash)
            os.replace(tmp, dest)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest, result
