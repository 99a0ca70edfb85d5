"""fMRI volume readers: 4-D NIfTI runs (time series) and per-trial beta maps.

The helpers here (file checks, masks, TR, dropping NaN/constant voxels) are shared with
:mod:`brainalign.io.nsd` (HDF5 betas) and :mod:`brainalign.io.surface` (GIfTI/MGH);
trial tables come from :mod:`brainalign.io.design`.

Masking is done with nibabel directly rather than with nilearn's ``NiftiMasker``: the masker
resamples images whose grid differs from the mask's, whereas a mismatch must be an error here;
and reading the stored values (memory-mapped when uncompressed, in their on-disk dtype) and
scaling only the masked voxels, block by block, keeps the memory to one float32 copy of the
masked data instead of float64 copies of whole 4-D images. nilearn does what it does best:
``compute_multi_epi_mask`` (``mask="epi"``) and ``nilearn.signal.clean`` (per-run standardising
and detrending, as ``NiftiMasker`` does).
"""

from __future__ import annotations

import os
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.filebasedimages import ImageFileError

from brainalign._utils.errors import BrainAlignWarning, CorruptFileError
from brainalign._utils.validation import check_file, check_option, check_positive
from brainalign.io.design import design_trials, events_trials, label
from brainalign.io.recording import Recording

__all__ = ["load_nifti_betas", "load_nifti_runs"]

#: Errors raised by nibabel, gzip and numpy when the bytes of a file are damaged or missing.
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError)

#: Largest float64 block (bytes) materialised at once while masking volumes.
_CHUNK_BYTES = 256 * 2**20

#: Seconds per unit of the NIfTI ``xyzt_units`` time code.
_SECONDS_PER_UNIT = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


# --------------------------------------------------------------------------------------------
# files and images
# --------------------------------------------------------------------------------------------


def describe(obj: Any) -> str:
    """Name an input in messages: the file path, or what the in-memory object is."""
    if isinstance(obj, str | os.PathLike):
        return repr(str(obj))
    if isinstance(obj, pd.DataFrame):
        return f"<DataFrame {obj.shape[0]}×{obj.shape[1]}>"
    shape = getattr(obj, "shape", None)
    shape = "" if shape is None else f" of shape {tuple(int(n) for n in shape)}"
    return f"<in-memory {type(obj).__name__}{shape}>"


def corrupt(name: str, where: str, what: str, err: BaseException) -> CorruptFileError:
    """The error for a file that exists but cannot be read as ``what``."""
    return CorruptFileError(
        f"{name!r} ({where}) cannot be read as a {what} ({type(err).__name__}: "
        f"{' '.join(str(err).split())}). The file is truncated, damaged or in another format; "
        "download it again (compare its checksum with `brainalign validate`) or re-export it."
    )


def as_list(obj: Any) -> list:
    """One input or a list/tuple of inputs, as a list."""
    return list(obj) if isinstance(obj, list | tuple) else [obj]


def load_image(obj: Any, name: str, *, what: str = "NIfTI image") -> tuple[Any, Path | None]:
    """Load a nibabel image from a path (checked), or accept an in-memory nibabel image."""
    if isinstance(obj, str | os.PathLike):
        path = check_file(obj, name, what=what)
        try:
            return nib.load(path), path
        except READ_ERRORS as err:
            raise corrupt(name, repr(str(path)), what, err) from err
    if isinstance(obj, nib.spatialimages.SpatialImage):
        return obj, None
    raise TypeError(
        f"{name!r} must be a path or a nibabel image, got {type(obj).__name__} ({obj!r:.80})."
    )


def read_volume(img: Any, name: str, where: str) -> np.ndarray:
    """The whole (scaled) array of a small image, e.g. a mask, with corrupt files reported."""
    try:
        return np.asanyarray(img.dataobj)
    except READ_ERRORS as err:
        raise corrupt(name, where, "NIfTI image", err) from err


def _check_4d(img: Any, name: str, where: str, fix: str) -> None:
    if len(img.shape) != 4:
        shape = tuple(int(n) for n in img.shape)
        raise ValueError(
            f"{name!r} ({where}) is a {len(shape)}-D image of shape {shape}, but "
            f"a 4-D image (x, y, z, volumes) is needed. {fix}"
        )


def _fmt_affine(affine: np.ndarray) -> str:
    return str(np.round(np.asarray(affine, float), 3).tolist())


def check_same_grid(
    shape: tuple,
    affine: np.ndarray | None,
    ref_shape: tuple,
    ref_affine: np.ndarray | None,
    what: str,
) -> None:
    """Raise when an image (mask, labels, other run) is not on the reference grid."""
    shape, ref_shape = tuple(int(n) for n in shape), tuple(int(n) for n in ref_shape)
    same_affine = affine is None or ref_affine is None or np.allclose(affine, ref_affine, atol=1e-3)
    if shape == ref_shape and same_affine:
        return
    affines = ""
    if affine is not None and ref_affine is not None:
        affines = f"; affine {_fmt_affine(affine)} vs {_fmt_affine(ref_affine)}"
    raise ValueError(
        f"{what} is not on the grid of the data: shape {shape} vs {ref_shape}"
        f"{affines}. Resample it onto the data first, e.g. "
        "nilearn.image.resample_to_img(img, data_img, interpolation='nearest') for masks and "
        "labels."
    )


def read_mask(mask: Any) -> tuple[np.ndarray, np.ndarray | None, str]:
    """A boolean 3-D mask (non-zero finite values), its affine (None for arrays), its origin."""
    if isinstance(mask, np.ndarray):
        arr, affine, where = np.asarray(mask), None, describe(mask)
    else:
        img, path = load_image(mask, "mask", what="mask image")
        where = describe(path if path is not None else img)
        arr, affine = read_volume(img, "mask", where), np.asarray(img.affine, float)
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(
            f"'mask' ({where}) must be a 3-D image, got shape {arr.shape}; pass one volume "
            "(e.g. nilearn.image.index_img(mask, 0))."
        )
    out = np.isfinite(arr) & (arr != 0)
    if not out.any():
        raise ValueError(f"The mask {where} is empty (no non-zero voxel); check the file.")
    return out, affine, where


def resolve_mask(
    mask: Any, ref_shape: tuple, ref_affine: np.ndarray | None, ref_where: str
) -> np.ndarray:
    """:func:`read_mask`, checked against the grid of the data (an array: shape only)."""
    arr, affine, where = read_mask(mask)
    affine = None if ref_affine is None else affine
    check_same_grid(arr.shape, affine, ref_shape, ref_affine, f"The mask {where} for {ref_where}")
    return arr


def voxel_coords(mask: np.ndarray, affine: np.ndarray | None) -> np.ndarray | None:
    """World (mm) coordinates of the mask's voxels, in C order (the order of data columns)."""
    if affine is None:
        return None
    return nib.affines.apply_affine(affine, np.argwhere(mask))


def roi_names_of(
    roi_labels: Any,
    roi_names: Mapping[Any, str] | None,
    mask: np.ndarray,
    ref_affine: np.ndarray | None,
    ref_where: str,
) -> np.ndarray | None:
    """The ROI name of each masked voxel from an integer label image (0 → ``""``)."""
    if roi_labels is None:
        if roi_names is not None:
            raise ValueError("'roi_names' needs 'roi_labels' (the integer label image).")
        return None
    if isinstance(roi_labels, np.ndarray):
        arr, affine, where = roi_labels, None, describe(roi_labels)
    else:
        img, path = load_image(roi_labels, "roi_labels", what="label image")
        where = describe(path if path is not None else img)
        arr, affine = read_volume(img, "roi_labels", where), img.affine
    what = f"The label image 'roi_labels' {where} for {ref_where}"
    check_same_grid(arr.shape, None if ref_affine is None else affine, mask.shape, ref_affine, what)
    values = np.asarray(arr)[mask]
    if not np.all(np.isfinite(values)) or not np.allclose(values, np.rint(values)):
        raise ValueError(
            f"'roi_labels' {where} must hold integer labels, but it has non-integer values "
            f"such as {values[~np.isclose(values, np.rint(values))][:3].tolist()}. Pass an "
            "atlas/label image (not a probability map)."
        )
    names = dict(roi_names or {})
    uniq, inverse = np.unique(np.rint(values).astype(np.int64), return_inverse=True)
    lut = ["" if u == 0 else str(names.get(int(u), names.get(str(u), u))) for u in uniq]
    return np.asarray(lut, dtype=str)[inverse]


def masked_rows(img: Any, mask: np.ndarray, name: str, where: str) -> np.ndarray:
    """The masked values of a 4-D image, shape ``(n_volumes, n_voxels)`` float32.

    The stored values are read once (memory-mapped for uncompressed files) and scaled by the
    header's slope/intercept block by block in float64, so the result equals
    ``img.get_fdata()[mask].T`` cast to float32.
    """
    try:
        if nib.is_proxy(img.dataobj) and hasattr(img.dataobj, "get_unscaled"):
            raw = img.dataobj.get_unscaled()
            slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
        else:
            raw, slope, inter = np.asanyarray(img.dataobj), 1.0, 0.0
        n_vol = raw.shape[3]
        out = np.empty((n_vol, int(mask.sum())), np.float32)
        step = max(1, _CHUNK_BYTES // (mask.size * 8))
        for t0 in range(0, n_vol, step):
            block = np.asarray(raw[..., t0 : t0 + step][mask], dtype=np.float64)
            out[t0 : t0 + step] = (block * slope + inter).T
    except READ_ERRORS as err:
        raise corrupt(name, where, "NIfTI image", err) from err
    return out


def tr_seconds(value: float, unit: str, where: str) -> float | None:
    """A TR in seconds from a header value and its unit (``"sec"``, ``"msec"``, ``"usec"``,
    anything else read as seconds); ``None`` when unset (0, NaN).

    A value of 100 s or more is read as milliseconds mislabelled as seconds (nibabel's
    ``example4d.nii.gz`` stores 2000 "sec"), with a warning.
    """
    if not np.isfinite(value) or value <= 0:
        return None
    tr = float(value) * _SECONDS_PER_UNIT.get(unit, 1.0)
    if tr >= 100:
        warnings.warn(
            f"The header of {where} gives TR = {value:g} {unit}; no fMRI TR is that long, so it "
            f"is read as {tr / 1000:g} s (milliseconds labelled as {unit}). Pass tr= to set it.",
            BrainAlignWarning,
            stacklevel=4,
        )
        tr /= 1000
    return tr


def header_tr(img: Any, where: str) -> float | None:
    """TR in seconds from the 4th zoom and the header's time unit (MGH: ms); None when unset."""
    zooms = img.header.get_zooms()
    if len(zooms) < 4:
        return None
    if isinstance(img, nib.freesurfer.mghformat.MGHImage):
        unit = "msec"
    elif hasattr(img.header, "get_xyzt_units"):
        unit = img.header.get_xyzt_units()[1]
    else:
        unit = "unknown"
    return tr_seconds(float(zooms[3]), unit, where)


def invalid_columns(data: np.ndarray) -> np.ndarray:
    """Columns with a NaN/inf value, or constant over rows (when there are several rows)."""
    bad = ~np.isfinite(data).all(axis=0)
    if data.shape[0] > 1:
        bad |= (data == data[:1]).all(axis=0)
    return bad


def drop_invalid_voxels(
    rec: Recording, *, warn: bool, where: str, bad: np.ndarray | None = None
) -> Recording:
    """Remove NaN/constant voxels (warning when ``warn``); raise when none would remain.

    ``bad`` is :func:`invalid_columns` of ``rec.data`` when the caller already computed it.
    """
    bad = invalid_columns(rec.data) if bad is None else bad
    n_bad, n_all = int(bad.sum()), bad.size
    rows = "TRs" if rec.kind == "timeseries" else "trials"
    if n_bad == n_all:
        raise ValueError(
            f"All {n_all} voxels of {where} are NaN or constant across the {rec.data.shape[0]} "
            f"{rows}; there is no signal to read. Check the mask (does it cover the brain in "
            "this image?) and the file (is it all zeros?)."
        )
    if n_bad:
        if warn:
            warnings.warn(
                f"Dropped {n_bad} of {n_all} voxels of {where} that are NaN or constant across "
                f"the {rec.data.shape[0]} {rows}; {n_all - n_bad} remain.",
                BrainAlignWarning,
                stacklevel=3,
            )
        rec = rec.select(features=~bad)
    rec.metadata["n_dropped_voxels"] = n_bad
    return rec


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------


def _load_stack(
    inputs: Any, name: str, fix_3d: str
) -> tuple[list[Any], list[Path | None], list[str]]:
    """Load 4-D images on one grid (checks dimensions and grids against the first)."""
    items = as_list(inputs)
    if not items:
        raise ValueError(f"{name!r} is empty; pass at least one 4-D image.")
    imgs: list[Any] = []
    paths: list[Path | None] = []
    wheres: list[str] = []
    for i, item in enumerate(items):
        label_i = name if len(items) == 1 else f"{name}[{i}]"
        img, path = load_image(item, label_i)
        where = describe(path if path is not None else img)
        _check_4d(img, label_i, where, fix_3d)
        if imgs:
            what = f"{label_i} ({where}) compared with {wheres[0]}"
            ref = imgs[0]
            check_same_grid(img.shape[:3], img.affine, ref.shape[:3], ref.affine, what)
        imgs.append(img)
        paths.append(path)
        wheres.append(where)
    return imgs, paths, wheres


def _mask_or_all(mask: Any, imgs: list[Any], wheres: list[str]) -> np.ndarray:
    shape, affine = imgs[0].shape[:3], imgs[0].affine
    if mask is None:
        return np.ones(shape, bool)
    if isinstance(mask, str) and mask == "epi":
        from nilearn.masking import compute_multi_epi_mask

        with warnings.catch_warnings():  # an empty mask is an error below
            warnings.filterwarnings("ignore", message="Computed an empty mask")
            epi = compute_multi_epi_mask(imgs)
        out = np.asarray(epi.dataobj) != 0
        if not out.any():
            raise ValueError(
                f"nilearn's compute_multi_epi_mask found no brain voxel in {wheres}; these are "
                "probably not raw EPI volumes (already masked or detrended). Pass mask=None "
                "(non-constant voxels) or a brain mask image."
            )
        return out
    return resolve_mask(mask, shape, affine, wheres[0])


def _clean(
    data: np.ndarray, runs: np.ndarray, standardize: Any, detrend: bool, tr: float | None
) -> np.ndarray:
    from nilearn import signal

    method = check_option(
        "standardize", standardize, (False, True, "zscore_sample", "zscore", "psc")
    )
    method = "zscore_sample" if method is True else method
    cleaned = signal.clean(
        data, runs=runs, detrend=bool(detrend), standardize=method, filter=False, t_r=tr
    )
    return np.asarray(cleaned, dtype=np.float32)


def load_nifti_runs(
    func: Any,
    mask: Any = None,
    *,
    events: Any = None,
    subject: str = "01",
    session: str = "01",
    tr: float | None = None,
    roi_labels: Any = None,
    roi_names: Mapping[Any, str] | None = None,
    standardize: bool | str = False,
    detrend: bool = False,
) -> Recording:
    """Read one or several 4-D NIfTI runs as a masked time series.

    Parameters
    ----------
    func : path | nibabel image | list of those
        The runs, each ``(nx, ny, nz, n_trs)``, all on the same grid. Any 4-D format nibabel
        reads works (NIfTI-1/2, ``.mgz``). Images are read, never changed.
    mask : path | nibabel image | ndarray of bool (nx, ny, nz) | "epi" | None
        Brain or ROI mask on the grid of ``func`` (non-zero voxels are kept). ``None`` keeps
        every voxel whose signal is finite and not constant over all TRs (this drops the
        zeroed-out background of masked data but keeps the noisy background of raw EPI; pass a
        mask for raw data). ``"epi"`` computes one with
        :func:`nilearn.masking.compute_multi_epi_mask`. With an explicit mask, voxels that are
        NaN or constant are dropped with a :class:`~brainalign._utils.errors.BrainAlignWarning`.
    events : path | DataFrame | list of those | None
        BIDS-style events, one table per run (or one table with a ``run`` column, 1-based):
        ``onset`` (s from the start of the run), ``duration`` and a stimulus column
        (``stimulus_id``, else ``stim_file``, else ``trial_type``). Events without a stimulus
        (``n/a``) are dropped with a warning; other columns are kept.
    subject, session : str
        Labels for the trial table (``"sub-"``/``"ses-"`` prefixes are removed).
    tr : float | None
        Repetition time in seconds; by default read from the header's 4th zoom (ms and µs
        converted). All runs must agree.
    roi_labels : path | nibabel image | ndarray | None
        Integer label image on the same grid; ``roi_names`` maps labels to names (missing
        labels keep their number, 0 is ``""``).
    roi_names : mapping int → str | None
        Names of the labels of ``roi_labels``.
    standardize : bool | {"zscore_sample", "zscore", "psc"}
        Standardise each voxel within each run with :func:`nilearn.signal.clean` (``True`` is
        ``"zscore_sample"``).
    detrend : bool
        Remove a linear trend from each voxel within each run (nilearn, before standardising).

    Returns
    -------
    recording : Recording
        ``kind="timeseries"``; ``data`` ``(n_trs_total, n_voxels)`` float32 with the TRs of all
        runs concatenated; ``metadata["run_of_tr"]`` (n_trs_total,) gives the run (1-based, as
        in the trial table's ``run`` column) of each TR, ``metadata["n_trs_per_run"]`` the run
        lengths; ``mask``, ``affine``, ``voxel_coords`` (mm, in the order of the columns),
        ``tr`` (s) and the trial table of the events.
    """
    subject, session = label(subject, "sub-"), label(session, "ses-")
    imgs, paths, wheres = _load_stack(
        func,
        "func",
        "For trial-wise beta maps use load_nifti_betas; to join 3-D volumes into a run use "
        "nilearn.image.concat_imgs.",
    )
    if tr is None:
        trs = [header_tr(img, w) for img, w in zip(imgs, wheres)]
        known = [t for t in trs if t is not None]
        if known and not np.allclose(known, known[0], rtol=1e-4):
            raise ValueError(
                f"The runs have different TRs in their headers: {dict(zip(wheres, trs))}; "
                "pass tr= (seconds) if the headers are wrong, or load the runs separately."
            )
        tr = known[0] if known else None
    else:
        tr = float(check_positive("tr", tr))
    mask_arr = _mask_or_all(mask, imgs, wheres)
    blocks = [masked_rows(img, mask_arr, "func", w) for img, w in zip(imgs, wheres)]
    n_per_run = [b.shape[0] for b in blocks]
    data = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    del blocks
    run_of_tr = np.repeat(np.arange(1, len(imgs) + 1), n_per_run)
    affine = np.asarray(imgs[0].affine, float)
    rec = Recording(
        data=data,
        trials=events_trials(events, len(imgs), subject=subject, session=session),
        modality="fmri",
        kind="timeseries",
        subject=subject,
        affine=affine,
        mask=mask_arr,
        voxel_coords=voxel_coords(mask_arr, affine),
        roi_labels=roi_names_of(roi_labels, roi_names, mask_arr, affine, wheres[0]),
        tr=tr,
        source=paths[0],
        metadata={
            "files": [str(p) if p is not None else w for p, w in zip(paths, wheres)],
            "run_of_tr": run_of_tr,
            "n_trs_per_run": n_per_run,
        },
    )
    explicit_mask = mask is not None and not (isinstance(mask, str) and mask == "epi")
    rec = drop_invalid_voxels(rec, warn=explicit_mask, where=", ".join(wheres))
    if standardize is not False or detrend:
        rec.data = _clean(rec.data, run_of_tr, standardize, detrend, tr)
    return rec


def load_nifti_betas(
    betas: Any,
    design: Any,
    mask: Any = None,
    *,
    subject: str = "01",
    session: str = "01",
    roi_labels: Any = None,
    roi_names: Mapping[Any, str] | None = None,
    scale: float | None = None,
) -> Recording:
    """Read per-trial beta maps stored as 4-D NIfTI (4th axis = trials, like NSD's
    ``betas_session*.nii.gz``).

    Parameters
    ----------
    betas : path | nibabel image | list of those
        ``(nx, ny, nz, n_trials)`` images on one grid; several are concatenated along trials
        (e.g. one file per session).
    design : path | DataFrame | None
        The design table, one row per trial in the order of the betas (see
        :func:`read_design_table`). ``None`` gives each trial its own stimulus id
        (``"0"``, ``"1"``, …).
    mask : path | nibabel image | ndarray of bool | None
        Brain or ROI mask on the grid of ``betas``. ``None`` keeps the voxels whose betas are
        finite and vary across trials (this removes NSD's zeroed-out background). With a mask,
        NaN or constant voxels are dropped with a warning.
    subject, session : str
        Labels for the trial table (a design ``session`` column takes precedence; a design
        ``subject`` column must match ``subject``).
    roi_labels, roi_names
        As in :func:`load_nifti_runs`.
    scale : float | None
        Divide the stored values by this factor; NSD's int16 files store percent signal change
        × 300, so pass ``scale=300``. ``None`` keeps the values as stored (after the header's
        slope/intercept).

    Returns
    -------
    recording : Recording
        ``kind="trials"``; ``data`` ``(n_trials, n_voxels)`` float32.
    """
    subject, session = label(subject, "sub-"), label(session, "ses-")
    imgs, paths, wheres = _load_stack(
        betas,
        "betas",
        "Stack single-trial 3-D maps into one 4-D image with nilearn.image.concat_imgs.",
    )
    n_per_file = [int(img.shape[3]) for img in imgs]
    trials, _, _ = design_trials(
        design if design is not None else pd.DataFrame(index=range(sum(n_per_file))),
        sum(n_per_file),
        subject=subject,
        session=session,
    )
    mask_arr = _mask_or_all(mask, imgs, wheres)
    blocks = [masked_rows(img, mask_arr, "betas", w) for img, w in zip(imgs, wheres)]
    data = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    del blocks
    if scale is not None:
        data /= np.float32(check_positive("scale", scale))
    affine = np.asarray(imgs[0].affine, float)
    rec = Recording(
        data=data,
        trials=trials,
        modality="fmri",
        kind="trials",
        subject=subject,
        affine=affine,
        mask=mask_arr,
        voxel_coords=voxel_coords(mask_arr, affine),
        roi_labels=roi_names_of(roi_labels, roi_names, mask_arr, affine, wheres[0]),
        source=paths[0],
        metadata={
            "files": [str(p) if p is not None else w for p, w in zip(paths, wheres)],
            "n_trials_per_file": n_per_file,
            "scale": scale,
        },
    )
    return drop_invalid_voxels(rec, warn=mask is not None, where=", ".join(wheres))
