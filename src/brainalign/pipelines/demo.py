"""``brainalign demo``: the main job, end to end, on data that needs no download.

The demo (1) loads and validates every dataset manifest that ships with brainalign, (2) checks
the real example files that ship inside the nibabel and nilearn wheels against the ``examples``
manifest and reads those real recordings through brainalign's readers, (3) generates the default
simulated NSD-like fMRI dataset once into the cache folder (about 1.5 minutes on 2 CPU cores;
later runs load it), validates it against the shipped ``simulated_fmri`` manifest and prints its
ground truth, (4) runs RSA on the measured test-set responses: for every region, the RDM of each
EfficientNet-Lite0 layer is compared with the region's RDM, and the best layer is checked against
the layer that generated the region, (5) trains the contrastive decoder (per-subject adapters,
MindEye-style encoder) and the ridge baseline and reports retrieval in both directions against the
simulation's ceiling (a finished run is evaluated again, an interrupted one resumed), (6)
reconstructs the test images from the decoded embeddings with the offline stand-in decoder and
scores them, and (7) decodes speech from the default simulated MEG dataset (generated once):
segment-level top-1/top-10 among all test segments, the brainmagick-style encoder against ridge
and the whitened-noise oracle.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io.manifest import list_manifests, load_manifest, validate_dataset
from ..io.recording import Recording

__all__ = ["layer_region_rsa", "load_example_recordings", "manifest_table", "run_demo"]


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


def layer_region_rsa(dataset: Any, *, method: str = "spearman", verbose: bool = True) -> Any:
    """RSA of every region of a simulated fMRI dataset against every generating-network layer.

    Uses what an experimenter has, not the ground truth: the measured betas of the shared test
    stimuli, averaged over their repetitions, and the features of the real network computed
    from the stimulus images (read from the feature cache when the dataset was generated here).

    Parameters
    ----------
    dataset : SimulatedFMRI
        From :func:`~brainalign.pipelines.simulate_fmri.load_simulated_fmri` or the generators.
    method : str
        RDM comparison (see :func:`brainalign.rsa.compare_rdms`).
    verbose : bool
        Progress bar of the feature extraction (when not cached).

    Returns
    -------
    table : DataFrame
        One row per (subject, region, layer): ``subject``, ``region``, ``layer``,
        ``generating_layer``, ``similarity`` (correlation-distance RDMs over the test stimuli,
        compared with ``method``).
    """
    from .. import rsa
    from .compare_layers import layer_test_features, region_test_patterns

    truth = dataset.ground_truth.region_layers
    layers = list(dataset.ground_truth.info["layers"])  # in the network's order
    features = layer_test_features(dataset, layers, verbose=verbose)
    layer_rdms = rsa.compute_rdms([features[name] for name in layers], "correlation")
    patterns = region_test_patterns(dataset)
    out = []
    for s_index, subject in enumerate(dataset.subjects):
        regions = list(patterns)
        region_rdms = rsa.compute_rdms([patterns[r][s_index] for r in regions], "correlation")
        sims = np.asarray(rsa.compare_rdms(region_rdms, layer_rdms, method=method))
        for i, region in enumerate(regions):
            for j, layer in enumerate(layers):
                out.append(
                    {
                        "subject": subject,
                        "region": region,
                        "layer": layer,
                        "generating_layer": truth[region],
                        "similarity": float(sims[i, j]),
                    }
                )
    return pd.DataFrame(out)


def run_demo(
    data_root: str | Path | None = None,
    *,
    verbose: bool = True,
    decode_overrides: Sequence[str] = (),
    reconstruction_epochs: int = 30,
    meeg_overrides: Sequence[str] = (),
    meeg_duration: float = 300.0,
) -> dict:
    """Run the demo and print what it finds; return the results for programmatic use.

    Parameters
    ----------
    data_root : path-like | None
        Folder for the data the demo generates; default brainalign's cache folder
        (``$BRAINALIGN_CACHE/simulated`` or ``~/.cache/brainalign/simulated``). The default
        simulated dataset is generated there once and loaded by later runs.
    verbose : bool
        Show progress bars.
    decode_overrides : sequence of str
        ``key=value`` overrides of the shipped decoding config
        (``configs/decode_simulated_fmri.yaml``), e.g. ``["train.epochs=10"]`` for a quick run.
    reconstruction_epochs : int
        Training epochs of the stand-in image decoder.
    meeg_overrides : sequence of str
        ``key=value`` overrides of the shipped M/EEG decoding config
        (``configs/decode_simulated_meg.yaml``).
    meeg_duration : float
        Seconds of speech of the simulated MEG dataset (300 s: 592 words).

    Returns
    -------
    results : dict
        ``"manifests"`` (DataFrame), ``"examples"`` (ValidationReport), ``"recordings"``,
        ``"simulated"`` (SimulatedFMRI), ``"simulated_validation"`` (ValidationReport),
        ``"rsa"`` (DataFrame of :func:`layer_region_rsa`), ``"best_layers"`` (DataFrame: region,
        generating layer, best layer by the mean over subjects), ``"decoding"``
        (DecodeResults), ``"reconstruction"`` (ReconstructionResults), ``"meeg_decoding"``
        (DecodeResults of the speech decoding).
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

    results: dict[str, Any] = {"manifests": table, "examples": report, "recordings": recordings}
    results.update(_simulated_section(data_root, verbose=verbose))
    results.update(
        _decoding_section(
            results["simulated"],
            overrides=decode_overrides,
            reconstruction_epochs=reconstruction_epochs,
            verbose=verbose,
        )
    )
    results["meeg_decoding"] = _meeg_section(
        data_root, overrides=meeg_overrides, duration=meeg_duration, verbose=verbose
    )
    return results


def _meeg_section(
    data_root: str | Path | None, *, overrides: Sequence[str], duration: float, verbose: bool
) -> Any:
    from importlib.resources import files

    from .decode_meeg import MEEGDecodeConfig, decode_simulated_meeg
    from .simulate_meeg import default_simulated_meeg

    print("\n== Decoding speech from simulated MEG: segment retrieval, contrastive vs ridge ==")
    dataset = default_simulated_meeg(data_root, duration=duration, verbose=verbose)
    print(dataset)
    path = files("brainalign") / "configs" / "decode_simulated_meg.yaml"
    config = MEEGDecodeConfig.from_yaml(str(path), [f"duration={duration}", *overrides])
    # resume: a finished run is evaluated again without training, an interrupted one continues
    results = decode_simulated_meeg(
        dataset,
        config=config,
        out_dir=Path(dataset.root).parent / "demo-decode-meg",
        resume=True,
        verbose=False,
    )
    print(results)
    summary = results.summary("segments")
    k = f"top{config.top_k}"
    top1, topk = summary[("brain_to_stimulus", "top1")], summary[("brain_to_stimulus", k)]
    print(
        f"brain -> segment top-1 / {k}: contrastive {top1['contrastive']:.1%} / "
        f"{topk['contrastive']:.1%}, ridge {top1['ridge']:.1%} / {topk['ridge']:.1%}, ceiling "
        f"{top1['ceiling']:.1%} / {topk['ceiling']:.1%}"
    )
    return results


def _decoding_section(
    dataset: Any,
    *,
    overrides: Sequence[str],
    reconstruction_epochs: int,
    verbose: bool,
) -> dict:
    from importlib.resources import files

    from .decode import DecodeConfig, decode_simulated_fmri, evaluate_checkpoint
    from .reconstruct import reconstruct_from_decoding

    print("\n== Decoding: brain -> image embedding, contrastive vs ridge vs ceiling ==")
    # beside the dataset, in the demo's data root, named after it: a run on an earlier version
    # of the default dataset is not evaluated on this one
    run_dir = dataset.folder.parent / f"demo-decode-{dataset.folder.name}"
    if (run_dir / "summary.json").is_file():  # a finished run: evaluate it again
        decoding = evaluate_checkpoint(run_dir, dataset, verbose=False)
    else:  # resume continues a run that was interrupted
        path = files("brainalign") / "configs" / "decode_simulated_fmri.yaml"
        config = DecodeConfig.from_yaml(str(path), overrides)
        decoding = decode_simulated_fmri(
            dataset, config=config, out_dir=run_dir, resume=True, verbose=verbose
        )
        print(f"trained in {decoding.train_seconds:.0f} s")
    if not verbose or decoding.train_seconds == 0:  # decode_simulated_fmri printed it
        print(decoding)
    summary = decoding.summary()
    top1 = summary[("brain_to_stimulus", "top1")]
    beats = bool(top1["contrastive"] > top1["ridge"])
    print(
        f"contrastive {'beats' if beats else 'does NOT beat'} ridge brain -> image top-1: "
        f"{top1['contrastive']:.1%} vs {top1['ridge']:.1%} (ceiling {top1['ceiling']:.0%})"
    )

    print("\n== Reconstruction of the test images from the decoded embeddings ==")
    reconstruction = reconstruct_from_decoding(
        decoding,
        dataset,
        epochs=reconstruction_epochs,
        out_dir=run_dir / "reconstruction",
        verbose=verbose,
    )
    print(reconstruction)
    grid = run_dir / "reconstruction" / "reconstructions.png"
    print(f"grid of seen vs reconstructed images: {grid}")
    return {"decoding": decoding, "reconstruction": reconstruction}


def _simulated_section(data_root: str | Path | None, *, verbose: bool) -> dict[str, Any]:
    from .simulate_fmri import default_simulated_fmri

    print("\n== The default simulated NSD-like fMRI dataset (generated once, then cached) ==")
    dataset = default_simulated_fmri(data_root, verbose=verbose)
    print(dataset)
    validation = validate_dataset("simulated_fmri", root=dataset.folder, checksums=False)
    print(validation)
    truth = dataset.ground_truth
    for region, layer in truth.region_layers.items():
        print(f"  region {region:<4} is driven by EfficientNet-Lite0 layer {layer}")
    oracle = truth.info.get("oracle_mean", {})
    if "top1_correlation" in oracle:
        n_way = len(dataset.test_ids)
        print(
            f"  best achievable test identification (noise-free decoder, {n_way}-way top-1, "
            f"mean over subjects): {oracle['top1_correlation']:.1%}"
        )

    print("\n== RSA: which layer explains each region? (measured test betas, Spearman) ==")
    rsa_table = layer_region_rsa(dataset, verbose=verbose)
    mean = rsa_table.groupby(["region", "layer"], sort=False)["similarity"].mean().unstack()
    print(mean.round(3).to_string())
    best = pd.DataFrame(
        {
            "region": list(truth.region_layers),
            "generating_layer": list(truth.region_layers.values()),
            "best_layer": [mean.loc[r].idxmax() for r in truth.region_layers],
        }
    )
    best["recovered"] = best["best_layer"] == best["generating_layer"]
    print(best.to_string(index=False))
    print(f"generating layer recovered in {int(best['recovered'].sum())} of {len(best)} regions")
    return {
        "simulated": dataset,
        "simulated_validation": validation,
        "rsa": rsa_table,
        "best_layers": best,
    }
