"""NSD-style HDF5 betas: per-trial beta maps stored as scaled integers, read in blocks with h5py.

The Natural Scenes Dataset's data manual ("Functional data (NSD)",
https://cvnlab.slite.page/p/6CusMRYfk0/Functional-data-NSD) says the betas are in percent signal
change, but that some files store them multiplied by 300 and converted to int16 to save space,
to be cast to floating point and divided by 300 on load. Its volumetric HDF5 files hold
``/betas`` as X × Y × Z × 750 trials written by MATLAB (column-major), which h5py (row-major)
reads as ``(750, Z, Y, X)``; both that order and ``(n_trials, X, Y, Z)`` are accepted, matched
against the mask's shape. Other writers store ``(n_trials, n_voxels)`` directly.

Only the voxels and trials asked for are read: the bounding box of the selected voxels, in
blocks of at most 64 MiB, along trials, or along the first spatial axis when each chunk of the
file holds every trial of a few voxels (NSD's ``[1 1 1 750]`` chunks).
"""

from __future__ import annotations

from typing import Any

import h5py
import nibabel as nib
import numpy as np
import pandas as pd

from brainalign._utils.errors import CorruptFileError
from brainalign._utils.validation import check_file, check_positive, suggest
from brainalign.io.design import design_trials, label
from brainalign.io.fmri import drop_invalid_voxels, invalid_columns, read_mask, voxel_coords
from brainalign.io.recording import Recording

__all__ = ["load_nsd_betas"]

#: Largest block (bytes of the stored dtype) read from the file at once.
_BLOCK_BYTES = 64 * 2**20


def _corrupt(path: Any, err: BaseException) -> CorruptFileError:
    reason = " ".join(str(err).split())
    return CorruptFileError(
        f"'betas' ({str(path)!r}) cannot be read as an HDF5 file ({reason}). The file is "
        "truncated, damaged or not HDF5; download it again (compare its checksum with "
        "`brainalign validate`)."
    )


def _attrs(ds: h5py.Dataset) -> dict[str, Any]:
    """Small attributes (≤ 4096 values) of the file root and of the dataset, which wins."""
    out: dict[str, Any] = {}
    for holder in (ds.file.attrs, ds.attrs):
        for key, value in holder.items():
            value = np.asarray(value)
            if value.size <= 4096:
                out[key] = value.tolist() if value.ndim else value.item()
    return out


def _rows_index(rows: np.ndarray) -> slice | np.ndarray:
    """A slice for consecutive rows, else the (increasing) positions for h5py."""
    if rows[-1] - rows[0] + 1 == len(rows):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _read_selection(ds: h5py.Dataset, rows: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Values ``(len(rows), len(coords))`` at trial positions ``rows`` (increasing) and storage
    indices ``coords`` ``(n, ds.ndim - 1)``, reading only their bounding box, block by block."""
    lo, hi = coords.min(axis=0), coords.max(axis=0) + 1
    out = np.empty((len(rows), len(coords)), ds.dtype)
    itemsize = ds.dtype.itemsize
    if ds.chunks is not None and ds.chunks[0] >= ds.shape[0]:
        # voxel-major chunks: every block covers all trials of a slab of the first spatial axis
        slab_bytes = len(rows) * int(np.prod(hi[1:] - lo[1:])) * itemsize
        step = max(1, _BLOCK_BYTES // max(slab_bytes, 1))
        for a0 in range(int(lo[0]), int(hi[0]), step):
            inside = (coords[:, 0] >= a0) & (coords[:, 0] < a0 + step)
            if not inside.any():
                continue
            bounds = zip([a0, *lo[1:]], [min(a0 + step, int(hi[0])), *hi[1:]])
            index = (_rows_index(rows), *(slice(int(a), int(b)) for a, b in bounds))
            block = ds[index]
            local = (slice(None), *(coords[inside] - np.r_[a0, lo[1:]]).T)
            out[:, inside] = block[local]
    else:
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        local = (slice(None), *(coords - lo).T)
        step = max(1, _BLOCK_BYTES // (int(np.prod(hi - lo)) * itemsize))
        for r0 in range(0, len(rows), step):
            index = (_rows_index(rows[r0 : r0 + step]), *box)
            out[r0 : r0 + step] = ds[index][local]
    return out


def _positions(value: Any, n: int, name: str) -> np.ndarray:
    """Sorted unique positions in ``range(n)`` from integers or a boolean mask."""
    arr = np.asarray(value)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"A boolean {name!r} must have shape ({n},), got {arr.shape}.")
        arr = np.flatnonzero(arr)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name!r} must be a 1-D array of integer positions or a boolean mask.")
    if arr.size == 0 or arr.min() < 0 or arr.max() >= n:
        raise ValueError(
            f"{name!r} must select positions in 0..{n - 1}, got {arr.size} values in "
            f"{[int(arr.min()), int(arr.max())] if arr.size else '[]'}."
        )
    return np.unique(arr)


def _select_trials(
    table: pd.DataFrame, has_session: bool, session: str | None, n_file: int, where: str, path
) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows of the design and positions in the file for ``session`` (see load_nsd_betas)."""
    if session is None:
        if len(table) != n_file:
            raise ValueError(
                f"The design table {where} has {len(table)} rows but 'betas' ({str(path)!r}) "
                f"has {n_file} trials; it needs one row per trial, in the order of the betas. "
                "Pass session= to pick one session's rows from a longer design."
            )
        return table, np.arange(n_file)
    if not has_session:
        raise ValueError(
            f"session={session!r} needs a 'session' column in the design table {where}; it "
            f"has {list(table.columns)}."
        )
    rows = (table["session"] == session).to_numpy()
    if not rows.any():
        found = sorted(table["session"].unique().tolist())
        raise ValueError(
            f"The design table {where} has no trial of session {session!r}; its sessions are "
            f"{found[:20]}."
        )
    if len(table) == n_file:  # the file holds every trial of the design
        return table[rows], np.flatnonzero(rows)
    if rows.sum() == n_file:  # the file holds this session only (NSD's betas_sessionNN)
        return table[rows], np.arange(n_file)
    raise ValueError(
        f"'betas' ({str(path)!r}) has {n_file} trials, which is neither the {len(table)} rows "
        f"of the design table {where} nor the {int(rows.sum())} rows of session {session!r}; "
        "check that the two files belong together."
    )


def load_nsd_betas(
    betas: Any,
    design: Any,
    *,
    subject: str = "01",
    session: Any = None,
    mask: Any = None,
    dataset: str = "betas",
    scale: float | None = 300.0,
    voxel_indices: Any = None,
    trials: Any = None,
) -> Recording:
    """Read NSD-style per-trial betas from an HDF5 file, in blocks, as percent signal change.

    Parameters
    ----------
    betas : str | path-like
        The HDF5 file (e.g. NSD's ``betas_session01.hdf5``). It is opened read-only.
    design : path | DataFrame | None
        The design table (see :func:`~brainalign.io.read_design_table`): one row per trial, in
        the order of the file's trials (or of the whole experiment, see ``session``); NSD's
        ``73KID``/``nsd_id`` columns give the stimulus ids, kept as written. ``None`` uses the
        trial positions as stimulus ids.
    subject : str
        Subject label (a design ``subject`` column must hold only this subject).
    session : str | int | None
        Read the trials of this session (matched against the design's ``session`` column,
        ``1`` ≡ ``"01"``). When the file has as many trials as the design, only that session's
        trials are read from it; when it has as many as the session's rows, the file holds that
        session alone (NSD's one-file-per-session layout).
    mask : path | nibabel image | ndarray of bool | None
        Needed for a volumetric dataset ``(n_trials, X, Y, Z)`` or NSD's ``(n_trials, Z, Y, X)``
        (the order is found by matching the mask's shape): the voxels to read, in the mask's C
        order. For a ``(n_trials, n_voxels)`` dataset, an optional mask with exactly
        ``n_voxels`` voxels, giving their positions (in C order) and coordinates.
    dataset : str
        Name of the dataset in the file.
    scale : float | None
        Integer datasets are divided by ``scale`` (NSD: 300) to give percent signal change;
        float datasets are returned as stored and ``scale`` is ignored (recorded as ``None`` in
        ``metadata["scale"]``).
    voxel_indices : array of int or bool | None
        Columns to read, as positions among the voxels of the file (2-D) or of the mask (4-D);
        returned in increasing order.
    trials : array of int or bool | None
        Trials to read, as positions among the trials of ``session`` (all trials when
        ``session`` is None); returned in increasing order.

    Returns
    -------
    recording : Recording
        ``kind="trials"``, ``data`` ``(n_trials, n_voxels)`` float32 in percent signal change.
        NaN or constant voxels are dropped with a warning. ``metadata`` holds ``scale``,
        ``dataset``, ``file_trials`` (the position in the file of each row),
        ``voxel_indices`` (the position of each column among the file's/mask's voxels) and
        ``hdf5_attrs`` (small attributes of the dataset and root).

    Notes
    -----
    Attributes read (on the dataset, else on the root): ``affine`` (4×4, voxel → mm; checked
    against the mask image's affine), and for 2-D datasets without ``mask``: ``voxel_ijk``
    ``(n_voxels, 3)`` voxel indices of the columns (→ ``voxel_coords`` with ``affine``) and
    ``volume_shape`` (3 ints; with ``voxel_ijk`` in C order it gives ``mask``).
    """
    subject = label(subject, "sub-")
    session = None if session is None else label(session, "ses-")
    path = check_file(betas, "betas", what="HDF5 file")
    if design is not None:  # checked before the (large) file is opened
        table, where, present = design_trials(design, None, subject=subject, session="01")
    try:
        fh = h5py.File(path, "r")
    except OSError as err:
        raise _corrupt(path, err) from err
    with fh:
        ds = _dataset(fh, dataset, path)
        n_file = int(ds.shape[0])
        if design is None:
            table, where, present = design_trials(
                pd.DataFrame(index=range(n_file)), n_file, subject=subject, session="01"
            )
        table, rows = _select_trials(table, "session" in present, session, n_file, where, path)
        if trials is not None:
            keep = _positions(trials, len(rows), "trials")
            table, rows = table.iloc[keep], rows[keep]
        table = table.reset_index(drop=True).rename_axis("trial")
        attrs = _attrs(ds)
        vol_mask, affine, storage = _geometry(ds, attrs, mask, path)
        cols = np.arange(len(storage))
        if voxel_indices is not None:
            cols = _positions(voxel_indices, len(storage), "voxel_indices")
        try:
            raw = _read_selection(ds, rows, storage[cols])
        except OSError as err:
            raise _corrupt(path, err) from err
        integer = np.issubdtype(ds.dtype, np.integer)
    data = raw.astype(np.float32)
    del raw
    if integer and scale is not None:
        data /= np.float32(check_positive("scale", scale))
    coords = None
    if vol_mask is not None:
        selected = np.zeros(vol_mask.shape, bool)
        selected.flat[np.flatnonzero(vol_mask)[cols]] = True
        vol_mask = selected
        coords = voxel_coords(vol_mask, affine)
    elif affine is not None and "voxel_ijk" in attrs:
        coords = nib.affines.apply_affine(affine, np.asarray(attrs["voxel_ijk"])[cols])
    rec = Recording(
        data=data,
        trials=table,
        modality="fmri",
        kind="trials",
        subject=subject,
        affine=affine,
        mask=vol_mask,
        voxel_coords=coords,
        source=path,
        metadata={
            "scale": float(scale) if integer and scale is not None else None,
            "dataset": dataset,
            "file_trials": rows,
            "hdf5_attrs": attrs,
        },
    )
    bad = invalid_columns(data)
    rec = drop_invalid_voxels(rec, warn=True, where=repr(str(path)), bad=bad)
    rec.metadata["voxel_indices"] = cols[~bad]
    return rec


def _dataset(fh: h5py.File, dataset: str, path: Any) -> h5py.Dataset:
    """The betas dataset, with its dimensions checked."""
    if dataset not in fh or not isinstance(fh[dataset], h5py.Dataset):
        names: list[str] = []
        fh.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        raise ValueError(
            f"'betas' ({str(path)!r}) has no dataset {dataset!r}; its datasets are "
            f"{names[:20]}.{suggest(dataset, names)} Pass dataset=NAME."
        )
    ds = fh[dataset]
    if ds.ndim not in (2, 4):
        raise ValueError(
            f"Dataset {dataset!r} of {str(path)!r} has shape {ds.shape}; expected "
            "(n_trials, n_voxels), (n_trials, X, Y, Z) or NSD's (n_trials, Z, Y, X)."
        )
    return ds


def _geometry(
    ds: h5py.Dataset, attrs: dict[str, Any], mask: Any, path: Any
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """The volume mask (or None), the affine (or None) and the storage index of each column."""
    affine = None if "affine" not in attrs else np.asarray(attrs["affine"], float)
    if affine is not None and affine.shape != (4, 4):
        raise ValueError(
            f"The 'affine' attribute of {str(path)!r} has shape {affine.shape}; it must be 4×4."
        )
    if mask is None:
        if ds.ndim == 4:
            raise ValueError(
                f"Dataset {ds.name!r} of {str(path)!r} is volumetric, shape {ds.shape}; pass "
                "mask= (a brain or ROI mask on its grid, e.g. NSD's nsdgeneral.nii.gz > 0) to "
                "say which voxels to read."
            )
        vol_mask = None
        if "voxel_ijk" in attrs and "volume_shape" in attrs:
            ijk = np.asarray(attrs["voxel_ijk"], int)
            shape = tuple(int(v) for v in attrs["volume_shape"])
            flat = np.ravel_multi_index(tuple(ijk.T), shape)
            if len(ijk) == ds.shape[1] and np.all(np.diff(flat) > 0):
                vol_mask = np.zeros(shape, bool)
                vol_mask.flat[flat] = True
        return vol_mask, affine, np.arange(ds.shape[1])[:, None]
    arr, mask_affine, where = read_mask(mask)
    if (
        mask_affine is not None
        and affine is not None
        and not np.allclose(mask_affine, affine, atol=1e-3)
    ):
        raise ValueError(
            f"The mask {where} has affine {np.round(mask_affine, 3).tolist()} but {str(path)!r} "
            f"records affine {np.round(affine, 3).tolist()}; resample the mask onto the betas' "
            "grid (nilearn.image.resample_to_img(mask, ref, interpolation='nearest'))."
        )
    affine = mask_affine if mask_affine is not None else affine
    ijk = np.argwhere(arr)
    if ds.ndim == 2:
        if len(ijk) != ds.shape[1]:
            raise ValueError(
                f"The mask {where} has {len(ijk)} voxels but dataset {ds.name!r} of "
                f"{str(path)!r} has {ds.shape[1]} columns; a mask for (n_trials, n_voxels) "
                "betas must have one voxel per column (the mask the file was made with)."
            )
        return arr, affine, np.arange(ds.shape[1])[:, None]
    spatial = tuple(ds.shape[1:])
    if spatial == arr.shape:
        return arr, affine, ijk
    if spatial[::-1] == arr.shape:  # MATLAB-written (n_trials, Z, Y, X), as NSD's files
        return arr, affine, ijk[:, ::-1]
    raise ValueError(
        f"The mask {where} has shape {arr.shape} but dataset {ds.name!r} of {str(path)!r} has "
        f"volumes of shape {spatial} (read as X, Y, Z) or {spatial[::-1]} (as Z, Y, X); "
        "resample the mask onto the betas' grid (nilearn.image.resample_to_img(mask, ref, "
        "interpolation='nearest'))."
    )
