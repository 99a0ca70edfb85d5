"""Surface readers: GIfTI functional files and FreeSurfer MGH/MGZ overlays, one or two hemispheres.

A surface file holds one map per TR (a time series) or per trial (beta maps, e.g. NSD's
``lh.betas_session01.mgh`` on fsaverage). Which it is comes from the caller: ``events`` makes a
``"timeseries"`` Recording (each map a TR), ``design`` a ``"trials"`` Recording (each map a
trial); with neither, the maps are a time series without events.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from brainalign._utils.validation import check_file, check_positive
from brainalign.io.design import design_trials, events_trials, label
from brainalign.io.fmri import (
    READ_ERRORS,
    as_list,
    corrupt,
    describe,
    drop_invalid_voxels,
    header_tr,
    invalid_columns,
    tr_seconds,
)
from brainalign.io.recording import Recording

__all__ = ["load_surface"]

_HEMI_PATTERNS = (
    (re.compile(r"(^|[._-])(lh|left|l|hemi-l)([._-]|$)"), "lh"),
    (re.compile(r"(^|[._-])(rh|right|r|hemi-r)([._-]|$)"), "rh"),
)

#: GIfTI intents of geometry arrays (a mesh, not data).
_MESH_INTENTS = (
    nib.nifti1.intent_codes["NIFTI_INTENT_POINTSET"],
    nib.nifti1.intent_codes["NIFTI_INTENT_TRIANGLE"],
)


def _hemi_of(obj: Any) -> str | None:
    """``"lh"``/``"rh"`` from a file name (``lh.``, ``_left``, ``hemi-L``, ``.L.``), or None."""
    if not isinstance(obj, str | os.PathLike):
        return None
    name = Path(obj).name.lower()
    found = {h for pattern, h in _HEMI_PATTERNS if pattern.search(name)}
    return found.pop() if len(found) == 1 else None


def _load(obj: Any, name: str, what: str) -> tuple[Any, str]:
    """A nibabel image (GIfTI or MGH/NIfTI) from a path or in memory, and its description."""
    if isinstance(obj, str | os.PathLike):
        path = check_file(obj, name, what=what)
        try:
            return nib.load(path), describe(path)
        except READ_ERRORS as err:
            raise corrupt(name, describe(path), what, err) from err
    if isinstance(obj, nib.gifti.GiftiImage | nib.spatialimages.SpatialImage):
        return obj, describe(obj)
    raise TypeError(
        f"{name!r} must be a path or a nibabel GIfTI/MGH image, got {type(obj).__name__}."
    )


def _surface_maps(obj: Any, name: str) -> tuple[np.ndarray, float | None, str]:
    """The maps of one hemisphere ``(n_maps, n_vertices)`` float32, the TR (s) and origin."""
    img, where = _load(obj, name, "surface data file")
    if isinstance(img, nib.gifti.GiftiImage):  # decoded by nib.load
        maps = _gifti_maps(img, name, where)
        step = img.darrays[0].meta.get("TimeStep") if img.darrays[0].meta else None
        tr = tr_seconds(float(step), "unknown", where) if step else None
        return maps, tr, where
    shape = tuple(int(n) for n in img.shape)
    if len(shape) not in (3, 4) or shape[1:3] != (1, 1):
        raise ValueError(
            f"{name!r} ({where}) has shape {shape}; a surface overlay is (n_vertices, 1, 1) or "
            "(n_vertices, 1, 1, n_maps). For volumes use load_nifti_runs or load_nifti_betas."
        )
    try:
        maps = np.asanyarray(img.dataobj).reshape(shape[0], -1).T
    except READ_ERRORS as err:
        raise corrupt(name, where, "surface data file", err) from err
    tr = header_tr(img, where) if len(shape) == 4 else None
    return np.array(maps, dtype=np.float32), tr, where  # a copy: the image is never changed


def _gifti_maps(img: Any, name: str, where: str) -> np.ndarray:
    """``(n_maps, n_vertices)`` float32 from the data arrays of a GIfTI image."""
    if not img.darrays:
        raise ValueError(f"{name!r} ({where}) is a GIfTI file without data arrays.")
    if any(d.intent in _MESH_INTENTS for d in img.darrays):
        raise ValueError(
            f"{name!r} ({where}) is a surface mesh (GIfTI pointset/triangles), not data; pass "
            "it as mesh= and the functional .func.gii as data."
        )
    arrays = [np.asarray(d.data) for d in img.darrays]
    if len(arrays) == 1 and arrays[0].ndim == 2:
        maps = arrays[0].T  # a single (n_vertices, n_maps) array
    elif all(a.ndim == 1 and a.shape == arrays[0].shape for a in arrays):
        maps = np.stack(arrays)  # one (n_vertices,) array per TR/trial
    else:
        raise ValueError(
            f"{name!r} ({where}) has data arrays of shapes {sorted({a.shape for a in arrays})}; "
            "expected one (n_vertices,) array per map or a single (n_vertices, n_maps) array."
        )
    return np.array(maps, dtype=np.float32)  # a copy: the image is never changed


def _mesh(obj: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(coords (n_vertices, 3) mm, faces (n_faces, 3))`` from a file, image, tuple or mesh."""
    if isinstance(obj, tuple) and len(obj) == 2:
        coords, faces = (np.asarray(a) for a in obj)
    elif hasattr(obj, "coordinates") and hasattr(obj, "faces"):  # nilearn mesh objects
        coords, faces = np.asarray(obj.coordinates), np.asarray(obj.faces)
    elif isinstance(obj, nib.gifti.GiftiImage) or str(obj).lower().endswith((".gii", ".gii.gz")):
        img, where = _load(obj, name, "GIfTI surface")
        try:
            coords, faces = img.agg_data(("pointset", "triangle"))
        except READ_ERRORS as err:
            raise corrupt(name, where, "GIfTI surface", err) from err
        if not isinstance(coords, np.ndarray) or not isinstance(faces, np.ndarray):
            raise ValueError(
                f"{name!r} ({where}) has no pointset and triangle arrays; it is not a surface "
                "mesh (a .surf.gii such as fsaverage's pial_left.gii.gz)."
            )
    elif isinstance(obj, str | os.PathLike):
        path = check_file(obj, name, what="FreeSurfer surface")
        try:
            coords, faces = nib.freesurfer.read_geometry(path)
        except READ_ERRORS as err:
            raise corrupt(name, describe(path), "FreeSurfer surface (e.g. lh.pial)", err) from err
    else:
        raise TypeError(
            f"{name!r} must be a GIfTI/FreeSurfer surface file, a GiftiImage, a nilearn mesh or "
            f"a (coords, faces) tuple, got {type(obj).__name__}."
        )
    if coords.ndim != 2 or coords.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(
            f"{name!r}: a mesh needs coords (n_vertices, 3) and faces (n_faces, 3), got "
            f"{coords.shape} and {faces.shape}."
        )
    return coords.astype(float), faces.astype(np.int64)


def load_surface(
    data: Any,
    *,
    mesh: Any = None,
    subject: str = "01",
    session: str = "01",
    tr: float | None = None,
    events: Any = None,
    design: Any = None,
    hemi: Any = None,
    scale: float | None = None,
) -> Recording:
    """Read surface data (GIfTI or MGH/MGZ) of one or two hemispheres.

    Parameters
    ----------
    data : path | GiftiImage | MGHImage | list of those
        One file per hemisphere: a GIfTI functional file (``.func.gii``, one data array per
        map, or a single ``(n_vertices, n_maps)`` array) or a FreeSurfer overlay
        (``.mgz``/``.mgh`` of shape ``(n_vertices, 1, 1, n_maps)``, or ``(n_vertices, 1, 1)``
        for a single map). Two hemispheres are concatenated along vertices, in the given order.
    mesh : path | GiftiImage | (coords, faces) | nilearn mesh | list of those | None
        The surface of each hemisphere (same order and vertex count as ``data``): a GIfTI
        surface (``.surf.gii``, ``.gii.gz``), a FreeSurfer surface file (``lh.pial``), a
        nilearn mesh or a tuple. Gives ``mesh`` (faces re-indexed into the concatenation) and
        ``voxel_coords`` (vertex coordinates, mm).
    subject, session : str
        Labels for the trial table.
    tr : float | None
        Repetition time (s); by default the MGH header's TR (ms → s) or the GIfTI
        ``TimeStep`` metadata, when set.
    events : path | DataFrame | None
        BIDS-style events of this run (see :func:`~brainalign.io.load_nifti_runs`): the maps
        are a time series.
    design : path | DataFrame | None
        One row per map (see :func:`~brainalign.io.read_design_table`): each map is a trial's
        beta map and the Recording is of kind ``"trials"``.
    hemi : str | list of str | None
        Hemisphere labels, ``"lh"``/``"rh"``; by default taken from the file names (``lh.``,
        ``_left``, ``hemi-L`` …), else ``"lh"`` then ``"rh"`` in the order given.
    scale : float | None
        Divide the stored values by this (NSD's int16 betas: 300).

    Returns
    -------
    recording : Recording
        ``data`` ``(n_maps, n_vertices)`` float32, ``kind`` ``"timeseries"`` (or ``"trials"``
        with ``design``); ``roi_labels`` is each vertex's hemisphere; ``metadata["hemi"]`` the
        hemispheres in order and ``metadata["n_vertices_per_hemi"]`` their vertex counts.
        Vertices that are NaN or constant across maps (e.g. a zeroed medial wall) are dropped
        with a warning; ``metadata["vertex_indices"]`` gives each column's vertex in the
        concatenated mesh.
    """
    if events is not None and design is not None:
        raise ValueError(
            "Pass either events= (the maps are a time series) or design= (each map is a "
            "trial), not both."
        )
    subject, session = label(subject, "sub-"), label(session, "ses-")
    items = as_list(data)
    if not 1 <= len(items) <= 2:
        raise ValueError(f"'data' must hold one or two hemispheres, got {len(items)} files.")
    hemis = _hemis(items, hemi)
    parts = [
        _surface_maps(item, "data" if len(items) == 1 else f"data[{i}]")
        for i, item in enumerate(items)
    ]
    n_maps = {p[0].shape[0] for p in parts}
    if len(n_maps) != 1:
        raise ValueError(
            f"The hemispheres have different numbers of maps: "
            f"{ {p[2]: p[0].shape[0] for p in parts} }; they must come from the same run."
        )
    n_vertices = [p[0].shape[1] for p in parts]
    values = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts], axis=1)
    where = ", ".join(p[2] for p in parts)
    if scale is not None:
        values /= np.float32(check_positive("scale", scale))
    if tr is None:
        tr = next((p[1] for p in parts if p[1] is not None), None)
    else:
        tr = float(check_positive("tr", tr))
    mesh_tuple, coords = _meshes(mesh, n_vertices, hemis)
    if design is not None:
        trials, _, _ = design_trials(design, values.shape[0], subject=subject, session=session)
        kind, tr = "trials", None
    else:
        trials = events_trials(events, 1, subject=subject, session=session)
        kind = "timeseries"
    rec = Recording(
        data=values,
        trials=trials,
        modality="fmri",
        kind=kind,
        subject=subject,
        voxel_coords=coords,
        roi_labels=np.repeat(np.asarray(hemis, dtype=str), n_vertices),
        mesh=mesh_tuple,
        tr=tr,
        source=Path(items[0]) if isinstance(items[0], str | os.PathLike) else None,
        metadata={
            "files": [p[2] for p in parts],
            "hemi": list(hemis),
            "n_vertices_per_hemi": dict(zip(hemis, n_vertices)),
            "scale": scale,
        },
    )
    bad = invalid_columns(values)
    rec = drop_invalid_voxels(rec, warn=True, where=where, bad=bad)
    rec.metadata["vertex_indices"] = np.flatnonzero(~bad)
    return rec


def _hemis(items: list, hemi: Any) -> list[str]:
    if hemi is not None:
        hemis = [str(h) for h in as_list(hemi)]
    else:
        found = [_hemi_of(item) for item in items]
        hemis = [str(h) for h in found] if None not in found else ["lh", "rh"][: len(items)]
    if len(hemis) != len(items) or len(set(hemis)) != len(hemis):
        raise ValueError(
            f"'hemi' must give one distinct label per file of 'data' ({len(items)}), got {hemis}."
        )
    return hemis


def _meshes(
    mesh: Any, n_vertices: list[int], hemis: list[str]
) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray | None]:
    """The concatenated mesh and the vertex coordinates, checked against the data."""
    if mesh is None:
        return None, None
    meshes = list(mesh) if isinstance(mesh, list) else [mesh]
    if len(meshes) != len(n_vertices):
        raise ValueError(
            f"'mesh' has {len(meshes)} surfaces but 'data' has {len(n_vertices)} hemispheres; "
            "pass one mesh per hemisphere, in the same order."
        )
    coords, faces, offset = [], [], 0
    for i, (obj, n, h) in enumerate(zip(meshes, n_vertices, hemis)):
        c, f = _mesh(obj, "mesh" if len(meshes) == 1 else f"mesh[{i}]")
        if len(c) != n:
            raise ValueError(
                f"The mesh of hemisphere {h!r} ({describe(obj)}) has {len(c)} vertices but its "
                f"data have {n}; use the surface the data were sampled on (e.g. fsaverage5 has "
                "10242 vertices per hemisphere)."
            )
        coords.append(c)
        faces.append(f + offset)
        offset += n
    all_coords = np.concatenate(coords)
    return (all_coords, np.concatenate(faces)), all_coords
