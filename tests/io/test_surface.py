"""Surface readers: GIfTI and MGH/MGZ overlays on fsaverage5, meshes, hemispheres."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainalign._utils.atomic import file_sha256
from brainalign._utils.errors import BrainAlignWarning, CorruptFileError
from brainalign.io.surface import load_surface

N_FS5 = 10242  # vertices per hemisphere of fsaverage5
TASK_GII = Path(nib.__file__).parent / "gifti" / "tests" / "data" / "task.func.gii"


@pytest.fixture(scope="module")
def fsaverage5():
    """Paths of nilearn's shipped fsaverage5 files (no download needed)."""
    from nilearn.datasets import fetch_surf_fsaverage

    try:
        paths = fetch_surf_fsaverage("fsaverage5")
    except Exception as err:  # pragma: no cover - depends on the installed nilearn
        pytest.skip(f"nilearn's fsaverage5 files are not available offline: {err}")
    return paths


def _mgh(path, data, tr_ms=None):
    img = nib.MGHImage(np.asarray(data, np.float32), np.eye(4))
    if tr_ms is not None:
        img.header.set_zooms((1.0, 1.0, 1.0, tr_ms))
    nib.save(img, path)
    return path


def _gifti(path, maps, *, timestep=None):
    meta = {"TimeStep": str(timestep)} if timestep is not None else None
    arrays = [
        nib.gifti.GiftiDataArray(m.astype(np.float32), intent="NIFTI_INTENT_TIME_SERIES", meta=meta)
        for m in maps
    ]
    img = nib.gifti.GiftiImage(darrays=arrays)
    if path is not None:
        nib.save(img, path)
        return path
    return img


def test_two_hemispheres_mgz_on_fsaverage5_meshes(tmp_path, rng, fsaverage5):
    lh = rng.normal(size=(N_FS5, 1, 1, 6)).astype(np.float32)
    rh = rng.normal(size=(N_FS5, 1, 1, 6)).astype(np.float32)
    paths = [_mgh(tmp_path / "lh.rest.fsa5.mgz", lh, 720.0),
             _mgh(tmp_path / "rh.rest.fsa5.mgz", rh, 720.0)]  # fmt: skip
    meshes = [fsaverage5["pial_left"], fsaverage5["pial_right"]]
    before = {p: (file_sha256(p), os.stat(p).st_mtime_ns) for p in paths}

    rec = load_surface(paths, mesh=meshes)

    assert rec.kind == "timeseries"
    assert rec.data.shape == (6, 2 * N_FS5)
    np.testing.assert_array_equal(rec.data, np.concatenate([lh[:, 0, 0].T, rh[:, 0, 0].T], 1))
    assert rec.tr == pytest.approx(0.72)
    assert rec.metadata["hemi"] == ["lh", "rh"]
    assert rec.metadata["n_vertices_per_hemi"] == {"lh": N_FS5, "rh": N_FS5}
    assert list(np.unique(rec.roi_labels, return_counts=True)[1]) == [N_FS5, N_FS5]
    assert rec.roi_labels[0] == "lh"
    assert rec.roi_labels[-1] == "rh"
    left, right = (nib.load(m).agg_data(("pointset", "triangle")) for m in meshes)
    coords, faces = rec.mesh
    np.testing.assert_allclose(coords, np.concatenate([left[0], right[0]]))
    np.testing.assert_array_equal(faces, np.concatenate([left[1], right[1] + N_FS5]))
    np.testing.assert_allclose(rec.voxel_coords, coords)
    np.testing.assert_array_equal(rec.metadata["vertex_indices"], np.arange(2 * N_FS5))
    assert before == {p: (file_sha256(p), os.stat(p).st_mtime_ns) for p in paths}


def test_real_shipped_gifti_maps(fsaverage5):
    rec = load_surface([fsaverage5["sulc_left"], fsaverage5["sulc_right"]])
    expected = np.concatenate(
        [nib.load(fsaverage5[k]).agg_data() for k in ("sulc_left", "sulc_right")]
    )
    assert rec.data.shape == (1, 2 * N_FS5)  # one map: no constant check across maps
    np.testing.assert_array_equal(rec.data[0], expected.astype(np.float32))
    assert rec.metadata["hemi"] == ["lh", "rh"]  # from the names *_left / *_right


def test_real_task_func_gii_from_nibabel():
    expected = nib.load(TASK_GII).agg_data().T.astype(np.float32)  # (10 TRs, 642 vertices)
    varying = np.flatnonzero(expected.std(axis=0) > 0)
    with pytest.warns(BrainAlignWarning, match=rf"Dropped {642 - varying.size} of 642 voxels"):
        rec = load_surface(TASK_GII, hemi="rh")
    np.testing.assert_array_equal(rec.data, expected[:, varying])
    np.testing.assert_array_equal(rec.metadata["vertex_indices"], varying)
    assert rec.tr is None  # its TimeStep is 0
    assert set(rec.roi_labels) == {"rh"}


def test_gifti_timestep_and_single_2d_array(tmp_path, rng):
    maps = rng.normal(size=(5, 40))
    path = _gifti(tmp_path / "sub-01_hemi-R_bold.func.gii", maps, timestep=1.5)
    rec = load_surface(path)
    np.testing.assert_array_equal(rec.data, maps.astype(np.float32))
    assert rec.tr == pytest.approx(1.5)
    assert rec.metadata["hemi"] == ["rh"]
    one = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(maps.T.astype(np.float32))])
    np.testing.assert_array_equal(load_surface(one).data, maps.astype(np.float32))


def test_design_makes_trials_and_scale_divides(tmp_path, rng):
    stored = np.round(rng.normal(size=(50, 1, 1, 4)) * 300).astype(np.float32)
    path = _mgh(tmp_path / "lh.betas_session01.mgh", stored)
    design = pd.DataFrame({"nsd_id": [11, 12, 11, 13]})
    rec = load_surface(path, design=design, scale=300)
    assert rec.kind == "trials"
    assert rec.tr is None
    np.testing.assert_array_equal(rec.data, stored[:, 0, 0].T / np.float32(300))
    assert list(rec.trials["stimulus_id"]) == ["11", "12", "11", "13"]
    assert list(rec.trials["repetition"]) == [0, 0, 1, 0]
    with pytest.raises(ValueError, match=r"has 3 rows but the betas have 4 trials"):
        load_surface(path, design=design.iloc[:3])
    with pytest.raises(ValueError, match=r"either events= .* or design="):
        load_surface(path, design=design, events=pd.DataFrame({"onset": [0.0], "stimulus_id": [1]}))


def test_events_and_single_map(tmp_path, rng):
    path = _mgh(tmp_path / "lh.map.mgz", rng.normal(size=(30, 1, 1)))
    events = pd.DataFrame({"onset": [0.0, 4.0], "duration": [1.0, 1.0], "trial_type": ["a", "b"]})
    rec = load_surface(path, events=events, tr=2.0)
    assert rec.data.shape == (1, 30)
    assert rec.tr == 2.0
    assert list(rec.trials["stimulus_id"]) == ["a", "b"]


def test_constant_medial_wall_is_dropped_with_a_warning(tmp_path, rng):
    data = rng.normal(size=(40, 1, 1, 5))
    data[[3, 4, 30]] = 0.0
    data[10, 0, 0, 2] = np.nan
    path = _mgh(tmp_path / "lh.run.mgz", data)
    with pytest.warns(BrainAlignWarning, match=r"Dropped 4 of 40 voxels.*5 TRs"):
        rec = load_surface(path, mesh=(rng.normal(size=(40, 3)), np.array([[0, 1, 2]])))
    keep = np.setdiff1d(np.arange(40), [3, 4, 10, 30])
    np.testing.assert_array_equal(rec.metadata["vertex_indices"], keep)
    np.testing.assert_array_equal(rec.data, data[keep, 0, 0].T.astype(np.float32))
    np.testing.assert_allclose(rec.voxel_coords, rec.mesh[0][keep])


def test_freesurfer_geometry_mesh(tmp_path, rng, fsaverage5):
    coords, faces = nib.load(fsaverage5["white_left"]).agg_data(("pointset", "triangle"))
    surf = tmp_path / "lh.white"
    nib.freesurfer.write_geometry(surf, coords, faces)
    data = _mgh(tmp_path / "lh.thickness.mgz", rng.normal(size=(N_FS5, 1, 1, 2)))
    rec = load_surface(data, mesh=surf)
    np.testing.assert_allclose(rec.mesh[0], coords, atol=1e-4)
    np.testing.assert_array_equal(rec.mesh[1], faces)


def test_in_memory_images_are_not_changed(rng):
    maps = rng.normal(size=(3, 20)).astype(np.float32)
    gii = _gifti(None, maps)
    mgh = nib.MGHImage(maps.T[:, None, None, :].copy(), np.eye(4))
    gii_before = [d.data.copy() for d in gii.darrays]
    mgh_before = np.asarray(mgh.dataobj).copy()
    rec = load_surface([gii, mgh], scale=2.0)
    rec.data[:] = 0
    for arr, before in zip(gii.darrays, gii_before):
        np.testing.assert_array_equal(arr.data, before)
    np.testing.assert_array_equal(np.asarray(mgh.dataobj), mgh_before)


def test_bad_inputs(tmp_path, rng, fsaverage5):
    with pytest.raises(FileNotFoundError, match=r"'data' does not exist.*lh\.bold\.func\.gii"):
        load_surface(tmp_path / "lh.bold.func.gii")
    path = _mgh(tmp_path / "lh.run.mgz", rng.normal(size=(N_FS5, 1, 1, 3)))
    blob = path.read_bytes()
    broken = tmp_path / "lh.broken.mgz"
    broken.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptFileError, match=r"'data' \('.*lh\.broken\.mgz'\).*truncated"):
        load_surface(broken)
    with pytest.raises(ValueError, match=r"is a surface mesh .* pass it as mesh="):
        load_surface(fsaverage5["pial_left"])
    with pytest.raises(
        ValueError, match=r"mesh of hemisphere 'lh' .* 10242 vertices but its data have 30"
    ):
        load_surface(
            _mgh(tmp_path / "lh.small.mgz", np.ones((30, 1, 1, 2))), mesh=fsaverage5["pial_left"]
        )
    volume = _mgh(tmp_path / "vol.mgz", rng.normal(size=(7, 8, 9, 2)))
    with pytest.raises(ValueError, match=r"shape \(7, 8, 9, 2\); a surface overlay is"):
        load_surface(volume)
    with pytest.raises(ValueError, match=r"different numbers of maps"):
        load_surface([path, _mgh(tmp_path / "rh.run.mgz", rng.normal(size=(N_FS5, 1, 1, 4)))])
    with pytest.raises(ValueError, match=r"'mesh' has 1 surfaces but 'data' has 2 hemispheres"):
        load_surface([path, path], hemi=["lh", "rh"], mesh=fsaverage5["pial_left"])
