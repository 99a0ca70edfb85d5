"""Dataset manifests: the schema, its error messages, finding manifests, validating datasets."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

import brainalign
from brainalign._utils.errors import ManifestError
from brainalign.io.manifest import (
    FILE_ROLES,
    MODALITIES,
    DataRoot,
    FileSpec,
    Manifest,
    ValidationReport,
    find_manifest,
    known_readers,
    list_manifests,
    load_manifest,
    manifest_dirs,
    manifest_from_dict,
    validate_dataset,
)

REPO_MANIFESTS = Path(brainalign.__file__).resolve().parents[2] / "data_manifests"
SHIPPED = sorted(p.stem for p in REPO_MANIFESTS.glob("*.yaml"))
# public datasets (not the wheel examples nor the simulations brainalign generates itself)
PUBLIC = [n for n in SHIPPED if n != "examples" and not n.startswith("simulated")]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(tmp_path: Path, data: dict, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _minimal(**extra) -> dict:
    return {"name": "toy", "modality": "fmri", "files": [{"path": "a.nii.gz"}], **extra}


# --------------------------------------------------------------------------------------------
# the shipped manifests
# --------------------------------------------------------------------------------------------


def test_repository_ships_the_public_manifests():
    assert set(SHIPPED) >= {
        "examples",
        "nsd",
        "things_eeg2",
        "things_meg",
        "meg_masc",
        "mous",
        "broderick2018",
        "brennan2019",
    }
    assert set(SHIPPED) <= set(list_manifests())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_manifest_loads_and_follows_the_schema(name):
    path = find_manifest(name)
    assert path == REPO_MANIFESTS / f"{name}.yaml"
    m = load_manifest(name)
    assert isinstance(m, Manifest)
    assert m.name == name == path.stem
    assert m.modality in MODALITIES
    assert m.source_path == path
    assert m.description
    assert m.license
    assert m.access.notes
    assert m.files
    for f in m.files:
        assert f.role in FILE_ROLES
        assert not Path(f.path).is_absolute()
        assert ".." not in Path(f.path).parts
        if f.sha256 is not None:  # only real checksums: 64 lowercase hex digits
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256)
    if m.reader is not None:
        assert m.reader.name in known_readers()
    # the same content loads from a path, and loading is deterministic
    assert load_manifest(path) == m
    assert name in str(m)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_manifests_say_how_to_get_and_cite_the_data(name):
    m = load_manifest(name)
    assert m.citation is not None
    assert m.citation.doi
    assert m.citation.doi.startswith("10.")
    assert m.homepage
    assert m.homepage.startswith("https://")
    assert m.split is not None
    assert m.preprocessing is not None
    text = m.access_text("/data/x")
    assert text.startswith(f"How to obtain {name!r}")
    assert "{root}" not in text
    # no checksum is invented for files that were never hashed by us
    assert all(f.sha256 is None for f in m.files)


def test_nsd_manifest_facts():
    m = load_manifest("nsd")
    assert m.access.requires_agreement
    assert len(m.subjects) == 8
    assert sum(m.n_sessions.values()) == 284
    betas = next(f for f in m.files if "betas_session" in f.path)
    assert betas.count == 284
    assert m.split.method == "shared_stimuli"
    assert m.split.options["n_test"] == 1000
    assert m.reader.name == "load_nsd_betas"


def test_examples_manifest_validates_against_the_installed_wheels():
    recorded = {"nibabel": "5.4.2", "nilearn": "0.14.1"}
    drift = {k: metadata.version(k) for k, v in recorded.items() if metadata.version(k) != v}
    if drift:
        # checksums are recorded for one release of each wheel; a new release may change the files
        pytest.skip(f"installed {drift} differ from the versions the checksums were taken from")
    report = validate_dataset("examples", progress=False)
    assert report.ok, str(report)
    assert all(e.status == "present" and e.verified for e in report.entries)
    # the reference: hashlib over the very files the installed packages hold
    m = load_manifest("examples")
    nib_dir = Path(nib.__file__).parent
    functional = next(f for f in m.files if f.path.endswith("functional.nii"))
    assert functional.sha256 == _sha(nib_dir / "tests" / "data" / "functional.nii")
    img = nib.load(nib_dir / functional.path)
    assert img.shape == (17, 21, 3, 20)
    assert m.root.version == metadata.version("nibabel")
    gii = next(f for f in m.files if f.path.endswith(".gii"))
    assert nib.load(m.file_root(gii) / gii.path).darrays


# --------------------------------------------------------------------------------------------
# errors for bad manifests
# --------------------------------------------------------------------------------------------


def test_unknown_key_names_file_and_suggests(tmp_path):
    path = _write(tmp_path, _minimal(licence="CC0"))
    with pytest.raises(ManifestError) as exc:
        load_manifest(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert "unknown key 'licence' at the top level" in msg
    assert "Did you mean 'license'?" in msg


def test_unknown_nested_key_suggests(tmp_path):
    path = _write(tmp_path, _minimal(files=[{"path": "a.nii", "sha": "0" * 64}]))
    with pytest.raises(ManifestError, match=r"unknown key 'sha' in 'files\[0\]'.*'sha256'"):
        load_manifest(path)


def test_wrong_type_names_key_expected_and_found(tmp_path):
    path = _write(tmp_path, _minimal(files=[{"path": "a.nii", "size": "12kb"}]))
    with pytest.raises(ManifestError) as exc:
        load_manifest(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert "key 'files[0].size' must be an integer" in msg
    assert "found string ('12kb')" in msg


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"subjects": "sub-01"}, r"'subjects' must be a list of strings, found string"),
        ({"subjects": [1, 2]}, r"'subjects\[0\]' must be a string, found integer"),
        ({"files": [{"path": "a", "required": "yes"}]}, r"'files\[0\].required' must be a bool"),
        ({"preprocessing": {"bandpass": [1.0]}}, r"'preprocessing.bandpass' must be a list of 2"),
        ({"reader": {"name": "load_bids", "options": [1]}}, r"'reader.options' must be a mapping"),
        ({"split": {"method": "column", "options": {"column": 3}}}, r"must be a column name"),
    ],
)
def test_wrong_types(tmp_path, value, match):
    with pytest.raises(ManifestError, match=match):
        load_manifest(_write(tmp_path, _minimal(**value)))


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("../secrets/a.nii", r"'files\[0\].path' contains '\.\.'.*escape the data root"),
        ("sub-01/../../a.nii", r"contains '\.\.'"),
        ("/etc/passwd", r"'files\[0\].path' is an absolute path.*relative to the data root"),
        ("C:/data/a.nii", r"is an absolute path"),
        ("~/a.nii", r"is an absolute path"),
        ("sub-01\\a.nii", r"uses backslashes"),
        ("", r"is an empty path"),
    ],
)
def test_paths_that_escape_the_root_are_rejected(tmp_path, path, match):
    bad = _write(tmp_path, _minimal(files=[{"path": path}]))
    with pytest.raises(ManifestError, match=match) as exc:
        load_manifest(bad)
    assert str(bad) in str(exc.value)


def test_unsafe_paths_elsewhere_are_rejected():
    with pytest.raises(ManifestError, match=r"'root.subdir' contains '\.\.'"):
        manifest_from_dict(_minimal(root={"package": "nibabel", "subdir": "../x"}))
    with pytest.raises(ManifestError, match=r"'stimuli.path' is an absolute path"):
        manifest_from_dict(_minimal(stimuli={"kind": "image", "path": "/img"}))
    with pytest.raises(ManifestError, match=r"'split.options.source' contains '\.\.'"):
        manifest_from_dict(
            _minimal(split={"method": "shared_stimuli", "options": {"source": "../a.mat"}})
        )


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"name": "toy"}, r"required key 'modality' is missing"),
        (_minimal(modality="MEG"), r"'modality' must be one of 'fmri', 'meg', 'eeg'.*'meg'"),
        (_minimal(name="My Data"), r"'name' must be lowercase"),
        (_minimal(schema=2), r"'schema' must be 1"),
        (_minimal(files=[{"path": "*.nii", "sha256": "a" * 64}]), r"not allowed for the glob"),
        (_minimal(files=[{"path": "a.nii", "count": 3}]), r"only allowed for glob patterns"),
        (_minimal(files=[{"path": "a.nii", "sha256": "XYZ"}]), r"64 lowercase hexadecimal"),
        (_minimal(files=[{"path": "a", "url": "s3://b/a"}]), r"must be an http\(s\), ftp"),
        (_minimal(files=["a.nii", "a.nii"]), r"'files\[1\].path' repeats 'a.nii'"),
        (_minimal(files=[{"path": "a", "role": "dta"}]), r"role' must be one of.*'data'"),
        (_minimal(reader={"name": "load_nsd"}), r"'reader.name' must be one of.*'load_nsd_betas'"),
        (_minimal(split={"method": "random"}), r"'split.method' must be one of"),
        (
            _minimal(split={"method": "column", "options": {"colum": "x"}}),
            r"unknown key 'colum' in 'split.options'.*Did you mean 'column'",
        ),
        (_minimal(root={"path": "/d", "package": "nibabel"}), r"exactly one of 'path'"),
        (_minimal(preprocessing={"tmin": 1.0, "tmax": 0.5}), r"smaller than tmax"),
        (_minimal(preprocessing={"scale": "minmax"}), r"'preprocessing.scale' must be one of"),
    ],
)
def test_invalid_values(data, match):
    with pytest.raises(ManifestError, match=match):
        manifest_from_dict(data, source="inline.yaml")


def test_not_yaml_or_not_a_mapping(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"broken\.yaml.*not valid YAML"):
        load_manifest(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"list\.yaml.*must be a mapping.*found list"):
        load_manifest(listing)


def test_shorthands_and_immutability(tmp_path):
    m = manifest_from_dict(_minimal(files=["a.nii", "b/*.tsv"], root=str(tmp_path)))
    assert m.files == (FileSpec(path="a.nii"), FileSpec(path="b/*.tsv"))
    assert m.files[1].is_pattern
    assert not m.files[0].is_pattern
    assert m.root == DataRoot(path=str(tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.name = "other"  # type: ignore[misc]
    # the caller's mapping is not changed
    data = _minimal(reader={"name": "load_bids", "options": {"task": "main"}})
    before = yaml.safe_dump(data)
    manifest_from_dict(data)
    assert yaml.safe_dump(data) == before


# --------------------------------------------------------------------------------------------
# finding manifests
# --------------------------------------------------------------------------------------------


def test_find_manifest_unknown_name_lists_names_and_suggests():
    with pytest.raises(FileNotFoundError) as exc:
        find_manifest("nds")
    msg = str(exc.value)
    assert "No manifest named 'nds'. Did you mean 'nsd'?" in msg
    assert "things_meg" in msg
    assert "BRAINALIGN_MANIFESTS" in msg


def test_find_manifest_missing_path():
    with pytest.raises(FileNotFoundError, match=r"manifest file .*nope\.yaml' does not exist"):
        find_manifest("/tmp/nope.yaml")


def test_environment_folders_come_first(tmp_path, monkeypatch):
    extra = tmp_path / "mine"
    extra.mkdir()
    _write(extra, _minimal(name="custom"), "custom.yaml")
    _write(extra, _minimal(name="nsd", description="my own NSD copy"), "nsd.yaml")
    monkeypatch.setenv("BRAINALIGN_MANIFESTS", str(extra))
    assert manifest_dirs()[0] == extra
    assert "custom" in list_manifests()
    assert find_manifest("custom") == extra / "custom.yaml"
    assert load_manifest("nsd").description == "my own NSD copy"  # earlier folders win
    monkeypatch.delenv("BRAINALIGN_MANIFESTS")
    assert "custom" not in list_manifests()
    assert find_manifest("nsd") == REPO_MANIFESTS / "nsd.yaml"


# --------------------------------------------------------------------------------------------
# data roots
# --------------------------------------------------------------------------------------------


def test_data_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_DATA", str(tmp_path / "env"))
    m = manifest_from_dict(_minimal(root="$MY_DATA/toy"))
    assert m.data_root() == tmp_path / "env" / "toy"
    assert m.data_root(tmp_path / "given") == tmp_path / "given"
    bare = manifest_from_dict(_minimal())
    monkeypatch.setenv("BRAINALIGN_DATA", str(tmp_path / "store"))
    assert bare.data_root() == tmp_path / "store" / "toy"
    monkeypatch.delenv("BRAINALIGN_DATA")
    assert bare.data_root() == Path.home() / "brainalign_data" / "toy"
    pkg = manifest_from_dict(_minimal(root={"package": "nibabel", "subdir": "tests/data"}))
    assert pkg.data_root() == Path(nib.__file__).parent / "tests" / "data"


def test_missing_package_root_says_what_to_install():
    m = manifest_from_dict(_minimal(root={"package": "no_such_pkg_xyz"}), source="p.yaml")
    with pytest.raises(FileNotFoundError, match=r"'no_such_pkg_xyz'.*pip install no_such_pkg_xyz"):
        validate_dataset(m, progress=False)


# --------------------------------------------------------------------------------------------
# validate_dataset
# --------------------------------------------------------------------------------------------


@pytest.fixture
def dataset(tmp_path, rng):
    """A small dataset written by the real libraries: NIfTI runs and an events table."""
    root = tmp_path / "ds"
    for sub in ("01", "02"):
        (root / f"sub-{sub}").mkdir(parents=True)
        data = rng.standard_normal((7, 8, 9, 5)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.eye(4)), root / f"sub-{sub}" / "bold.nii.gz")
    pd.DataFrame({"onset": [0.5, 2.0], "stimulus_id": ["a", "b"]}).to_csv(
        root / "events.tsv", sep="\t", index=False
    )
    (root / "mask.nii.gz").write_bytes((root / "sub-01" / "bold.nii.gz").read_bytes())
    return root


def _dataset_manifest(root: Path) -> Manifest:
    bold = root / "sub-01" / "bold.nii.gz"
    events = root / "events.tsv"
    return manifest_from_dict(
        {
            "name": "toy",
            "modality": "fmri",
            "files": [
                {"path": "sub-01/bold.nii.gz", "size": bold.stat().st_size, "sha256": _sha(bold)},
                {"path": "events.tsv", "sha256": _sha(events), "role": "events"},
                # same size, different bytes: only the checksum can tell
                {"path": "sub-02/bold.nii.gz", "sha256": _sha(bold)},
                {"path": "mask.nii.gz", "size": 12},
                {"path": "missing.nii.gz"},
                {"path": "sub-*/bold.nii.gz", "count": 2},
                {"path": "sub-*/anat.nii.gz"},
                {"path": "sub-0[1-3]/bold.nii.gz", "count": 3},
                {"path": "extra.txt", "required": False},
            ],
        }
    )


def test_validate_reports_present_missing_corrupt(dataset):
    report = validate_dataset(_dataset_manifest(dataset), dataset, progress=False)
    assert isinstance(report, ValidationReport)
    status = {e.path: e.status for e in report.entries}
    assert status == {
        "sub-01/bold.nii.gz": "present",
        "events.tsv": "present",
        "sub-02/bold.nii.gz": "corrupt",
        "mask.nii.gz": "corrupt",
        "missing.nii.gz": "missing",
        "sub-*/bold.nii.gz": "present",
        "sub-*/anat.nii.gz": "missing",
        "sub-0[1-3]/bold.nii.gz": "incomplete",
        "extra.txt": "missing",
    }
    assert not report.ok
    assert [e.path for e in report.missing] == ["missing.nii.gz", "sub-*/anat.nii.gz", "extra.txt"]
    assert {e.path for e in report.corrupt} == {"sub-02/bold.nii.gz", "mask.nii.gz"}
    by_path = {e.path: e for e in report.entries}
    assert "checksum mismatch" in by_path["sub-02/bold.nii.gz"].detail
    assert "expected 12" in by_path["mask.nii.gz"].detail
    assert by_path["sub-0[1-3]/bold.nii.gz"].detail == "2 of 3 files"
    assert by_path["sub-01/bold.nii.gz"].verified
    assert by_path["sub-*/anat.nii.gz"].detail == "pattern matches nothing"

    text = str(report)
    assert text.startswith(f"Dataset 'toy' at {dataset}")
    assert "CORRUPT" in text
    assert "MISSING" in text
    assert "INCOMPLETE" in text
    assert "extra.txt (optional)" in text
    assert text.splitlines()[-1] == (
        "NOT OK: 3 present, 3 missing, 2 corrupt, 1 incomplete (of 9 entries)"
    )
    frame = report.to_frame()
    assert list(frame["path"]) == list(status)
    assert list(frame["status"]) == list(status.values())


def test_validate_without_checksums_and_optional_files(dataset):
    m = _dataset_manifest(dataset)
    report = validate_dataset(m, dataset, checksums=False, progress=False)
    by_path = {e.path: e for e in report.entries}
    assert by_path["sub-02/bold.nii.gz"].status == "present"  # checksum not compared
    assert not by_path["sub-02/bold.nii.gz"].verified
    assert by_path["mask.nii.gz"].status == "corrupt"  # sizes are always compared
    assert "checksums not verified" in str(report)

    ok_files = [f for f in m.files if f.path in ("sub-01/bold.nii.gz", "extra.txt")]
    fine = dataclasses.replace(m, files=tuple(ok_files))
    fine_report = validate_dataset(fine, dataset, progress=True)
    assert fine_report.ok  # the missing file is optional
    assert [e.status for e in fine_report.entries] == ["present", "missing"]


def test_validate_changes_nothing(dataset):
    before = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    validate_dataset(_dataset_manifest(dataset), dataset, progress=False)
    after = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    assert before == after


def test_validate_reports_package_version_drift():
    installed = metadata.version("nibabel")
    m = manifest_from_dict(
        {
            "name": "drift",
            "modality": "fmri",
            "root": {"package": "nibabel", "version": "0.0.1"},
            "files": [{"path": "tests/data/functional.nii", "sha256": "0" * 64}],
        }
    )
    entry = validate_dataset(m, progress=False).entries[0]
    assert entry.status == "corrupt"
    assert f"recorded for nibabel 0.0.1, installed {installed}" in entry.detail
