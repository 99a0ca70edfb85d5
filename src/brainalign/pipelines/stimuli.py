"""A set of natural image stimuli built offline from images that installable packages ship.

Sources (nothing is downloaded):

* scikit-image's ``lfw_subset``: 100 faces and 100 non-faces (25 × 25 grey crops of the
  Labeled Faces in the Wild images), categories ``"face"`` and ``"non-face"``;
* crops of the larger photographs of ``skimage.data`` (astronaut, camera, chelsea, coffee,
  coins, Hubble deep field, immunohistochemistry, retina, rocket, motorcycle, brick, grass,
  gravel, moon, clock, cell) and of scikit-learn's sample images (china, flower), category =
  the source image's name.

Crops are square, of a side drawn uniformly between 30 % and 85 % of the image's shorter side,
at a uniformly drawn position, mirrored with probability 1/2, resized to ``image_size`` pixels
(Lanczos); crops that are nearly uniform (pixel SD below 8 on the 0-255 scale, e.g. the black
corners of the retina image) are drawn again. Everything comes from the seed, and the PNG files
are byte-identical for the same seed.

Any folder (or table) of images can be used instead: :func:`copy_image_stimuli` centre-crops
and resizes them into the same layout.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign._utils.atomic import atomic_write
from brainalign._utils.progress import progress
from brainalign._utils.validation import check_positive
from brainalign.data.simulate._common import child_rng
from brainalign.io.stimuli import StimulusSet, load_images

__all__ = [
    "PHOTO_SOURCES",
    "STIMULUS_TABLE",
    "build_natural_images",
    "build_stimulus_set",
    "copy_image_stimuli",
]

#: Name of the stimulus table written beside the PNG files.
STIMULUS_TABLE = "stimuli.tsv"

#: The photographs cropped to make stimuli: name → the package function that returns it.
PHOTO_SOURCES: dict[str, str] = {
    "astronaut": "skimage.data.astronaut",
    "camera": "skimage.data.camera",
    "chelsea": "skimage.data.chelsea",
    "coffee": "skimage.data.coffee",
    "coins": "skimage.data.coins",
    "hubble": "skimage.data.hubble_deep_field",
    "immunohistochemistry": "skimage.data.immunohistochemistry",
    "retina": "skimage.data.retina",
    "rocket": "skimage.data.rocket",
    "motorcycle": "skimage.data.stereo_motorcycle",
    "brick": "skimage.data.brick",
    "grass": "skimage.data.grass",
    "gravel": "skimage.data.gravel",
    "moon": "skimage.data.moon",
    "clock": "skimage.data.clock",
    "cell": "skimage.data.cell",
    "china": "sklearn.datasets.load_sample_images:china.jpg",
    "flower": "sklearn.datasets.load_sample_images:flower.jpg",
}

_MIN_CROP_STD = 8.0
_CROP_RANGE = (0.30, 0.85)
_N_LFW = 100  # faces, and non-faces, in lfw_subset


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype.kind == "f":
        img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    else:
        img = img.astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def _load_photo(name: str) -> np.ndarray:
    source = PHOTO_SOURCES[name]
    if source.startswith("sklearn"):
        from sklearn.datasets import load_sample_images

        bunch = load_sample_images()
        files = [Path(f).name for f in bunch.filenames]
        return _as_rgb_uint8(bunch.images[files.index(source.split(":")[1])])
    import skimage.data

    loader: Callable[[], Any] = getattr(skimage.data, source.rsplit(".", 1)[1])
    image = loader()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    return _as_rgb_uint8(image)


def _save_png(pixels: np.ndarray, path: Path) -> None:
    """Write an RGB uint8 image as PNG (PIL writes no timestamp: same pixels → same bytes).

    Written directly (no fsync): the whole dataset folder is generated under a temporary
    name and renamed when complete.
    """
    from PIL import Image

    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)


def _resize(pixels: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(pixels)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(img)


def _crop(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    h, w = photo.shape[:2]
    short = min(h, w)
    for _ in range(100):
        side = round(short * rng.uniform(*_CROP_RANGE))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        flip = bool(rng.random() < 0.5)
        crop = photo[top : top + side, left : left + side]
        if crop[::4, ::4].std() >= _MIN_CROP_STD:
            break
    if flip:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop), {
        "crop_top": top,
        "crop_left": left,
        "crop_size": side,
        "flipped": flip,
    }


def _check_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer):
        raise TypeError(f"'image_size' must be an integer (pixels), got {image_size!r}.")
    if image_size < 16:
        raise ValueError(f"'image_size' must be at least 16 pixels, got {image_size}.")
    return int(image_size)


def _finish(folder: Path, rows: list[dict[str, Any]]) -> StimulusSet:
    table = pd.DataFrame(rows)
    first = ["stimulus_id", "path", "category", "source"]
    table = table[first + [c for c in table.columns if c not in first]]
    with atomic_write(folder / STIMULUS_TABLE, "w") as fh:
        table.to_csv(fh, sep="\t", index=False, lineterminator="\n")
    return load_images(folder / STIMULUS_TABLE)


def _id_width(n: int) -> int:
    return max(4, len(str(n - 1)))


def build_natural_images(
    folder: str | os.PathLike,
    *,
    n_stimuli: int = 1000,
    image_size: int = 128,
    face_fraction: float = 0.2,
    seed: int = 0,
    verbose: bool = False,
) -> StimulusSet:
    """Write natural image stimuli as PNG files with a stimulus table, and index them.

    Parameters
    ----------
    folder : path-like
        Where the PNG files and ``stimuli.tsv`` go (created if needed).
    n_stimuli : int
        Number of distinct images.
    image_size : int
        Side of the square images, pixels.
    face_fraction : float
        Fraction of the stimuli taken from ``lfw_subset``, half faces and half non-faces (at
        most 100 of each); the rest are crops of the photographs.
    seed : int
        Seed of the crops.
    verbose : bool
        Show a progress bar.

    Returns
    -------
    stimuli : StimulusSet
        ``kind="image"``; ids ``img0000``, ``img0001`` …; table columns ``stimulus_id``,
        ``path``, ``category`` (``face``, ``non-face`` or the photograph's name), ``source``
        (the package function it came from), ``crop_top``, ``crop_left``, ``crop_size``
        (pixels of the source) and ``flipped``.
    """
    if isinstance(n_stimuli, bool) or not isinstance(n_stimuli, int | np.integer) or n_stimuli < 2:
        raise ValueError(f"'n_stimuli' must be an integer >= 2, got {n_stimuli!r}.")
    size = _check_size(image_size)
    if not 0 <= face_fraction <= 1:
        raise ValueError(f"'face_fraction' must be in [0, 1], got {face_fraction!r}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_each = min(_N_LFW, round(face_fraction * n_stimuli / 2))
    n_crops = n_stimuli - 2 * n_each
    width = _id_width(n_stimuli)
    rows: list[dict[str, Any]] = []

    def add(pixels: np.ndarray, category: str, source: str, **extra: Any) -> None:
        sid = f"img{len(rows):0{width}d}"
        _save_png(_resize(pixels, size), folder / f"{sid}.png")
        rows.append(
            {
                "stimulus_id": sid,
                "path": f"{sid}.png",
                "category": category,
                "source": source,
                **extra,
            }
        )

    if n_each:
        import skimage.data

        lfw = skimage.data.lfw_subset()
        rng = child_rng(seed, "lfw")
        for category, start in (("face", 0), ("non-face", _N_LFW)):
            picks = np.sort(rng.choice(_N_LFW, n_each, replace=False)) + start
            for i in picks:
                add(
                    _as_rgb_uint8(lfw[i]),
                    category,
                    f"skimage.data.lfw_subset[{i}]",
                    crop_top=0,
                    crop_left=0,
                    crop_size=lfw.shape[1],
                    flipped=False,
                )
    names = list(PHOTO_SOURCES)
    order = child_rng(seed, "photo-order").permutation(len(names))
    photos: dict[str, np.ndarray] = {}
    for j in progress(range(n_crops), desc="stimuli", verbose=verbose):
        name = names[order[j % len(names)]]
        if name not in photos:
            photos[name] = _load_photo(name)
        crop, where = _crop(photos[name], child_rng(seed, "crop", j))
        add(crop, name, PHOTO_SOURCES[name], **where)
    return _finish(folder, rows)


def copy_image_stimuli(
    images: str | os.PathLike | StimulusSet | pd.DataFrame,
    folder: str | os.PathLike,
    *,
    n_stimuli: int | None = None,
    image_size: int = 128,
    seed: int = 0,
    verbose: bool = False,
) -> StimulusSet:
    """Copy a user's images into a stimulus folder: centre-cropped, resized, PNG, renamed.

    Parameters
    ----------
    images : path-like | StimulusSet | DataFrame
        A folder of images or a table (see :func:`brainalign.io.load_images`), or a stimulus
        set of images.
    folder : path-like
        Where the PNG files and ``stimuli.tsv`` go.
    n_stimuli : int | None
        Keep this many images, drawn at random with ``seed`` (kept in their original order);
        ``None``: all.
    image_size : int
        Side of the square images, pixels.
    seed : int
        Seed of the draw.
    verbose : bool
        Show a progress bar.

    Returns
    -------
    stimuli : StimulusSet
        Ids ``img0000`` … (so that they read back unchanged from design tables); the original
        ids are in the column ``original_id``, categories and the source path are kept.
    """
    size = _check_size(image_size)
    source = images if isinstance(images, StimulusSet) else load_images(images)
    if source.kind != "image":
        raise ValueError(f"'images' must be image stimuli, got a {source.kind} stimulus set.")
    table = source.table
    n_total = len(table)
    if n_stimuli is not None:
        if n_stimuli > n_total or n_stimuli < 2:
            raise ValueError(
                f"n_stimuli={n_stimuli} but 'images' holds {n_total} images; ask for 2 to "
                f"{n_total}, or None for all of them."
            )
        keep = np.sort(child_rng(seed, "images").choice(n_total, n_stimuli, replace=False))
        table = table.iloc[keep].reset_index(drop=True)
    if len(table) < 2:
        raise ValueError(f"'images' holds {len(table)} image; at least 2 are needed.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    width = _id_width(len(table))
    rows = []
    for i in progress(range(len(table)), desc="stimuli", verbose=verbose):
        row = table.iloc[i]
        pixels = _as_rgb_uint8(np.asarray(source.load(str(row["stimulus_id"]))))
        h, w = pixels.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        sid = f"img{i:0{width}d}"
        square = pixels[top : top + side, left : left + side]
        _save_png(_resize(square, size), folder / f"{sid}.png")
        rows.append(
            {
                "stimulus_id": sid,
                "path": f"{sid}.png",
                "category": str(row["category"]),
                "source": str(row["path"]),
                "original_id": str(row["stimulus_id"]),
                "crop_top": top,
                "crop_left": left,
                "crop_size": side,
                "flipped": False,
            }
        )
    return _finish(folder, rows)


def build_stimulus_set(
    folder: str | os.PathLike,
    *,
    images: str | os.PathLike | StimulusSet | pd.DataFrame | None = None,
    n_stimuli: int | None = None,
    image_size: int = 128,
    seed: int = 0,
    verbose: bool = False,
) -> StimulusSet:
    """The natural images of :func:`build_natural_images` (``images=None``, 1,000 by default),
    or the user's ``images`` through :func:`copy_image_stimuli`."""
    check_positive("image_size", image_size)
    if images is None:
        return build_natural_images(
            folder,
            n_stimuli=1000 if n_stimuli is None else n_stimuli,
            image_size=image_size,
            seed=seed,
            verbose=verbose,
        )
    return copy_image_stimuli(
        images, folder, n_stimuli=n_stimuli, image_size=image_size, seed=seed, verbose=verbose
    )
