"""``brainalign demo``: the main job, end to end, on data that needs no download.

Today the demo (1) loads and validates every dataset manifest that ships with brainalign, (2)
checks the real example files that ship inside the nibabel and nilearn wheels against the
``examples`` manifest, and (3) reads those real recordings through brainalign's readers. Each
later stage of the toolkit (simulation, decoding, RSA, reconstruction) adds a section.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from ..io.manifest import list_manifests, load_manifest, validate_dataset
from ..io.recording import Recording

__all__ = ["load_example_recordings", "manifest_table", "run_demo"]


def manifest_table() -> pd.DataFrame:
    """One row per shipped dataset manifest: name, modality, subjects, reader, how to get it.

    Loading each manifest validates its schema, so a broken manifest raises here.
    """
    rows = []
    for name in list_manifests():
        m = load_manifest(name)
        rows.append(
            {
                "name": name,
                "modality": m.modality,
                "subjects": len(m.subjects) or "",
                "files": len(m.files),
                "reader": m.reader.name if m.reader else "",
                "doi": m.citation.doi if m.citation and m.citation.doi else "",
            }
        )
    return pd.DataFrame(rows)


def load_example_recordings() -> dict[str, Recording]:
    """Read the real example recordings of the ``examples`` manifest through our readers.

    Returns
    -------
    recordings : dict of str to Recording
        ``"functional.nii"`` (a 4D EPI run, voxels with signal), ``"example4d.nii.gz"`` and
        ``"task.func.gii"`` (a surface time series).
    """
    from ..io.fmri import load_nifti_runs
    from ..io.surface import load_surface

    manifest = load_manifest("examples")
    paths = {Path(f.path).name: manifest.file_root(f) / f.path for f in manifest.files}
    with warnings.catch_warnings():
        # the readers warn about dropped constant voxels and millisecond TRs; the demo reports
        # the resulting shapes instead
        warnings.simplefilter("ignore")
        return {
            "functional.nii": load_nifti_runs(paths["functional.nii"]),
            "example4d.nii.gz": load_nifti_runs(paths["example4d.nii.gz"]),
            "task.func.gii": load_surface(paths["task.func.gii"], tr=1.0),
        }


def run_demo(data_root: str | Path | None = None, *, verbose: bool = True) -> dict:
    """Run the demo and print what it finds; return the results for programmatic use.

    Parameters
    ----------
    data_root : path-like | None
        Folder for data the demo generates (later stages); unused by today's stages.
    verbose : bool
        Show progress bars.

    Returns
    -------
    results : dict
        ``"manifests"`` (DataFrame), ``"examples"`` (ValidationReport), ``"recordings"``.
    """
    print("== Dataset manifests shipped with brainalign ==")
    table = manifest_table()
    print(table.to_string(index=False))

    print("\n== Real example files inside the installed wheels (manifest 'examples') ==")
    report = validate_dataset("examples", checksums=True, progress=verbose)
    print(report)

    print("\n== Real recordings read through brainalign's readers ==")
    recordings = load_example_recordings()
    for name, rec in recordings.items():
        extra = f", TR {rec.tr:g} s" if rec.tr else ""
        print(f"{name:<18} {rec!r}{extra}")
    return {"manifests": table, "examples": report, "recordings": recordings}
