"""``brainalign rsa CONFIG``: compare the layers of a network with the regions of a dataset.

The job reads a simulated (or NSD-like) fMRI dataset, averages the test-set betas of each subject
over their repetitions, takes each region's voxels as its patterns, computes the features of the
chosen layers of the network for the same stimuli, and runs
:func:`brainalign.rsa.compare_layers_regions` (RSA and, optionally, topological RSA) with
permutation p-values, bootstrap confidence intervals and noise ceilings. It writes the tidy
table (``rsa.csv``), the best layer per region (``best_layers.csv``), the configuration it ran
(``config.yaml``) and the layer profiles (``layer_profiles.png``).

A configuration is a YAML file whose keys are the fields of :class:`RSAConfig`::

    dataset: default          # or the folder of `brainalign simulate fmri --out DIR`
    layers: [blocks.1, blocks.3, blocks.4, global_pool]
    method: spearman
    topological: true
    n_permutations: 1000
    n_bootstrap: 1000
    out: rsa_results
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._utils.atomic import atomic_write
from .._utils.progress import logger
from .._utils.validation import suggest

__all__ = [
    "RSAConfig",
    "layer_test_features",
    "load_rsa_config",
    "region_test_patterns",
    "run_rsa",
]


@dataclass
class RSAConfig:
    """What ``brainalign rsa`` runs.

    Attributes
    ----------
    dataset : str
        ``"default"`` (the default simulated dataset, generated once into the cache folder) or
        the folder of a simulated fMRI dataset.
    layers : list of str | None
        Layers of EfficientNet-Lite0 to compare (see ``brainalign.targets.list_layers``);
        ``None``: the layers that generated the dataset's regions.
    method : str
        RDM comparison (``spearman``, ``corr``, ``tau-a``, ``cosine``, …).
    rdm_metric : str
        RDM dissimilarity (``correlation``, ``euclidean``, …).
    topological : bool
        Also run topological RSA (geo-topological transform with ``lower`` / ``upper``).
    lower, upper : float
        Quantile thresholds of the geo-topological transform.
    n_permutations, n_bootstrap : int
        Permutations of the stimulus labels and bootstrap draws (0 skips them).
    correction : str | None
        Multiple-comparison correction across layers within a region.
    seed : int
        Seed of permutations and bootstraps.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    out : str
        Output folder.
    """

    dataset: str = "default"
    layers: list[str] | None = None
    method: str = "spearman"
    rdm_metric: str = "correlation"
    topological: bool = True
    lower: float = 0.1
    upper: float = 0.9
    n_permutations: int = 1000
    n_bootstrap: int = 1000
    correction: str | None = "holm"
    seed: int = 0
    device: str = "auto"
    out: str = "rsa_results"


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def load_rsa_config(
    path: str | os.PathLike | None = None, overrides: Sequence[str] = ()
) -> RSAConfig:
    """Read an :class:`RSAConfig` from YAML, then apply ``key=value`` overrides.

    Parameters
    ----------
    path : path-like | None
        The YAML file; ``None`` starts from the defaults.
    overrides : sequence of str
        ``"key=value"`` strings (values parsed as YAML: ``n_permutations=200``,
        ``layers=[blocks.1,blocks.6]``).

    Returns
    -------
    config : RSAConfig
    """
    import yaml

    values: dict[str, Any] = {}
    source = "the defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"RSA configuration {str(path)!r} does not exist.")
        source = str(path)
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{source}: an RSA configuration must be a mapping of keys to values.")
        values.update(loaded)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(
                f"Override {item!r} must look like key=value (e.g. n_permutations=200)."
            )
        values[key.strip()] = _parse_value(text)
    names = [f.name for f in dataclasses.fields(RSAConfig)]
    for key in values:
        if key not in names:
            raise ValueError(
                f"{source}: unknown RSA configuration key {key!r}.{suggest(key, names)} "
                f"The keys are: {', '.join(names)}."
            )
    return RSAConfig(**values)


def region_test_patterns(dataset: Any) -> dict[str, list[np.ndarray]]:
    """Each region's test-set patterns per subject, averaged over repetitions.

    Parameters
    ----------
    dataset : SimulatedFMRI
        A dataset read by :func:`~brainalign.pipelines.simulate_fmri.load_simulated_fmri`.

    Returns
    -------
    patterns : dict of str to list of ndarray
        Region → one ``(n_test, n_region_voxels)`` float64 array per subject (voxel counts
        differ), rows in the order of ``dataset.test_ids``.
    """
    from ..data.repetitions import average_repetitions

    test_ids = [str(i) for i in dataset.test_ids]
    regions = list(dataset.rois["name"])
    patterns: dict[str, list[np.ndarray]] = {region: [] for region in regions}
    for subject in dataset.subjects:
        rec = dataset[subject]
        test = rec.trials["stimulus_id"].astype(str).isin(test_ids).to_numpy()
        averaged = average_repetitions(rec.select(test))
        row_of = {sid: i for i, sid in enumerate(averaged.trials["stimulus_id"].astype(str))}
        missing = [sid for sid in test_ids if sid not in row_of]
        if missing:
            raise ValueError(
                f"Subject {subject} has no trials of {len(missing)} test stimuli "
                f"(e.g. {missing[:3]}); every subject must see the shared test set."
            )
        data = np.asarray(averaged.data, dtype=np.float64)[[row_of[sid] for sid in test_ids]]
        labels = np.asarray(averaged.roi_labels)
        for region in regions:
            patterns[region].append(data[:, labels == region])
    return patterns


def _stimulus_image_size(dataset: Any) -> int:
    from PIL import Image

    # the network saw the images at the size they were written (square, ``image_size`` px)
    with Image.open(dataset.stimuli.table["path"].iloc[0]) as first:
        return int(first.size[0])


def layer_test_features(
    dataset: Any, layers: Sequence[str], *, verbose: bool = True
) -> dict[str, np.ndarray]:
    """EfficientNet-Lite0 features of the test stimuli (rows in ``dataset.test_ids`` order)."""
    from .simulate_fmri import compute_layer_features

    features = compute_layer_features(
        dataset.stimuli, list(layers), image_size=_stimulus_image_size(dataset), verbose=verbose
    )
    ids = [str(i) for i in dataset.stimuli.ids]
    rows = [ids.index(str(i)) for i in dataset.test_ids]
    return {name: np.asarray(features[name][rows], dtype=np.float64) for name in layers}


def run_rsa(config: RSAConfig, *, verbose: bool = True) -> pd.DataFrame:
    """Run the layers-vs-regions comparison a configuration describes and write its outputs.

    Parameters
    ----------
    config : RSAConfig
        See :class:`RSAConfig`; ``config.out`` receives ``rsa.csv``, ``best_layers.csv``,
        ``config.yaml`` and ``layer_profiles.png``.
    verbose : bool
        Progress bars and a summary.

    Returns
    -------
    table : DataFrame
        The table of :func:`brainalign.rsa.compare_layers_regions` (RSA and, with
        ``topological``, tRSA rows, told apart by the ``transform`` column).
    """
    import yaml

    from ..rsa import best_layers, compare_layers_regions
    from .simulate_fmri import default_simulated_fmri, load_simulated_fmri

    if config.dataset == "default":
        dataset = default_simulated_fmri(verbose=verbose)
    else:
        folder = Path(config.dataset).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"dataset {config.dataset!r} is neither 'default' nor a folder; generate one with "
                "`brainalign simulate fmri --out DIR`."
            )
        dataset = load_simulated_fmri(folder)
    truth = dataset.ground_truth.region_layers
    layers = list(config.layers or dataset.ground_truth.info["layers"])
    logger.info("RSA of %d layers against %d regions", len(layers), len(truth))
    features = layer_test_features(dataset, layers, verbose=verbose)
    patterns = region_test_patterns(dataset)
    common = {
        "method": config.method,
        "rdm_metric": config.rdm_metric,
        "n_permutations": config.n_permutations,
        "n_bootstrap": config.n_bootstrap,
        "correction": config.correction,
        "seed": config.seed,
        "device": config.device,
    }
    tables = [compare_layers_regions(features, patterns, **common)]
    if config.topological:
        tables.append(
            compare_layers_regions(
                features,
                patterns,
                topological=True,
                lower=config.lower,
                upper=config.upper,
                **common,
            )
        )
    table = pd.concat(tables, ignore_index=True)
    best = best_layers(table)
    best["generating_layer"] = best["region"].map(truth)
    best["recovered"] = best["layer"] == best["generating_layer"]

    out = Path(config.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "rsa.csv", "w") as f:
        table.to_csv(f, index=False)
    with atomic_write(out / "best_layers.csv", "w") as f:
        best.to_csv(f, index=False)
    with atomic_write(out / "config.yaml", "w") as f:
        yaml.safe_dump(dataclasses.asdict(config), f, sort_keys=False)
    _plot(table, truth, out / "layer_profiles.png")
    if verbose:
        print(best.to_string(index=False))
        print(f"results in {out}")
    return table


def _plot(table: pd.DataFrame, truth: dict[str, str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..viz import plot_layer_profiles

    for transform, part in table.groupby("transform", sort=False):
        fig = plot_layer_profiles(part, truth=truth)
        fig.suptitle(f"{part['method'].iloc[0]} RSA ({transform})")
        first = transform == table["transform"].iloc[0]
        target = path if first else path.with_stem(f"{path.stem}_{transform}")
        with atomic_write(target, "wb") as f:
            fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
