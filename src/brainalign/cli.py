"""The ``brainalign`` command line: one entry point, one subcommand per job.

This module only parses arguments and prints; every subcommand calls a library function with
plain keyword arguments (no argparse namespace reaches the library).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__

__all__ = ["build_parser", "main"]

_DESCRIPTION = """\
brainalign aligns brain recordings (fMRI, MEG, EEG) with machine representations.

Subcommands:
  demo       run the main job end to end on data that needs no download
  manifests  list the dataset manifests that ship with brainalign
  validate   check a dataset on disk against its manifest (present / missing / corrupt)
  fetch      download what a manifest lists (resumable, checksum-verified, atomic)
  features   extract stimulus features (CLIP, DNN layers, speech) into a cached HDF5 file
  simulate   generate a simulated fMRI or M/EEG dataset with known ground truth
  rsa        compare the layers of a network with the regions of a dataset (RSA, tRSA)
  train      train a brain decoder from a YAML config (contrastive + ridge baseline)
  evaluate   retrieval results of a trained decoding run
  reconstruct  images from a decoding run's embeddings, with MindEye's metrics

Run `brainalign SUBCOMMAND --help` for the options of each.
"""


def _cmd_demo(args: argparse.Namespace) -> int:
    from .pipelines.demo import run_demo

    run_demo(data_root=args.data_root, verbose=not args.quiet)
    return 0


def _cmd_manifests(args: argparse.Namespace) -> int:
    from .pipelines.demo import manifest_table

    print(manifest_table().to_string(index=False))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .io.manifest import find_manifest, load_manifest, validate_dataset

    manifest = load_manifest(find_manifest(args.manifest))
    report = validate_dataset(manifest, root=args.root, checksums=not args.no_checksums)
    print(report)
    return 0 if report.ok else 1


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .io.fetch import fetch_dataset
    from .io.manifest import find_manifest, load_manifest

    manifest = load_manifest(find_manifest(args.manifest))
    report = fetch_dataset(manifest, root=args.root, only=args.only, dry_run=args.dry_run)
    print(report)
    return 0 if report.ok else 1


def _cmd_features(args: argparse.Namespace) -> int:
    from .targets import extract_features

    result = extract_features(
        model=args.model,
        stimuli=args.stimuli,
        layers=args.layer,
        out=args.out,
        pooling=args.pooling,
        grid_size=args.grid_size,
        n_components=args.n_components,
        weights=args.weights,
        batch_size=args.batch_size,
        device=args.device,
        cache_dir=args.cache_dir,
        cache=not args.no_cache,
        dtype=args.dtype,
        sfreq_out=args.sfreq_out,
        verbose=not args.quiet,
    )
    print(result)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    if args.modality == "fmri":
        from .pipelines.simulate_fmri import simulate_fmri_dataset

        dataset = simulate_fmri_dataset(
            args.out,
            seed=args.seed,
            n_subjects=args.n_subjects if args.n_subjects is not None else 4,
            n_stimuli=args.n_stimuli,
            n_test=args.n_test,
            train_overlap=args.train_overlap,
            snr=args.snr if args.snr is not None else 0.3,
            images=args.images,
            resolution_mm=args.resolution_mm,
            image_size=args.image_size,
            device=args.device,
            overwrite=args.overwrite,
            verbose=not args.quiet,
        )
    elif args.paradigm == "images":
        from .pipelines.simulate_meeg import simulate_meeg_images_dataset

        dataset = simulate_meeg_images_dataset(
            args.out,
            seed=args.seed,
            n_subjects=args.n_subjects if args.n_subjects is not None else 2,
            modality=args.modality,
            images=args.images,
            n_images=args.n_stimuli if args.n_stimuli is not None else 200,
            snr=args.snr if args.snr is not None else 0.1,
            sfreq=args.sfreq,
            n_channels=args.n_channels,
            image_size=args.image_size,
            device=args.device,
            overwrite=args.overwrite,
            verbose=not args.quiet,
        )
    else:
        from .pipelines.simulate_meeg import simulate_meeg_dataset

        dataset = simulate_meeg_dataset(
            args.out,
            seed=args.seed,
            n_subjects=args.n_subjects if args.n_subjects is not None else 2,
            modality=args.modality,
            duration=args.duration,
            snr=args.snr if args.snr is not None else 0.1,
            sfreq=args.sfreq,
            n_channels=args.n_channels,
            text=args.text,
            device=args.device,
            overwrite=args.overwrite,
            verbose=not args.quiet,
        )
    print(dataset)
    return 0


def _cmd_rsa(args: argparse.Namespace) -> int:
    from .pipelines.compare_layers import load_rsa_config, run_rsa

    overrides = list(args.set or [])
    if args.out is not None:
        overrides.append(f"out={args.out}")
    config = load_rsa_config(args.config, overrides)
    run_rsa(config, verbose=not args.quiet)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .pipelines.decode import train_from_config

    train_from_config(
        args.config,
        list(args.overrides),
        out_dir=args.out,
        resume=args.resume,
        verbose=not args.quiet,
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .pipelines.decode import evaluate_checkpoint

    results = evaluate_checkpoint(args.checkpoint, ridge=not args.no_ridge, verbose=False)
    print(results)
    return 0


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from .pipelines.reconstruct import reconstruct_run

    recon = reconstruct_run(
        args.run,
        out_dir=args.out,
        epochs=args.epochs,
        decoder_images=args.decoder_images or None,
        low_level=args.low_level,
        strength=args.strength,
        verbose=not args.quiet,
    )
    print(recon)
    print(f"grid and metrics in {recon.out_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``brainalign`` command."""
    parser = argparse.ArgumentParser(
        prog="brainalign",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"brainalign {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, description: str):
        p = sub.add_parser(name, help=help, description=description)
        p.set_defaults(func=func)
        return p

    p = add(
        "demo",
        _cmd_demo,
        "run the main job on data that needs no download",
        "Run brainalign's main job end to end on data that needs no download: validate every "
        "shipped dataset manifest and read the real example recordings of the nibabel/nilearn "
        "wheels; generate the default simulated fMRI dataset (once, cached); RSA of its regions "
        "against EfficientNet-Lite0's layers; train the contrastive decoder beside ridge and "
        "report retrieval against the simulation's ceiling; reconstruct the test images; decode "
        "speech from the default simulated MEG dataset. About 15-20 minutes on 2 CPU cores the "
        "first time.",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder for generated data and runs (default: brainalign's cache folder)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    add(
        "manifests",
        _cmd_manifests,
        "list the dataset manifests that ship with brainalign",
        "List the dataset manifests found in $BRAINALIGN_MANIFESTS and data_manifests/.",
    )

    p = add(
        "validate",
        _cmd_validate,
        "check a dataset on disk against its manifest",
        "Check a dataset on disk against its manifest: print which files are present, missing "
        "or corrupt (wrong size or checksum). Exits with 1 when anything is missing or corrupt.",
    )
    p.add_argument("manifest", help="manifest name (see `brainalign manifests`) or YAML path")
    p.add_argument("--root", type=Path, default=None, help="data root (default: the manifest's)")
    p.add_argument("--no-checksums", action="store_true", help="check sizes only (faster)")

    p = add(
        "fetch",
        _cmd_fetch,
        "download what a manifest lists",
        "Download the files a manifest lists into ROOT: resumable (a killed download continues "
        "where it stopped), verified against the manifest's sha256, written atomically. Files "
        "that need credentials or a data-use agreement are listed with the manifest's access "
        "notes instead.",
    )
    p.add_argument("manifest", help="manifest name (see `brainalign manifests`) or YAML path")
    p.add_argument("--root", type=Path, required=True, help="folder to download into")
    p.add_argument("--only", action="append", default=None, help="glob of files to fetch")
    p.add_argument("--dry-run", action="store_true", help="only print what would be fetched")

    p = add(
        "features",
        _cmd_features,
        "extract stimulus features into a cached array",
        "Extract the features of a folder of stimuli (images or audio) with a network (an "
        "open_clip architecture, a timm model such as the offline default efficientnet_lite0, "
        "or a speech model) at the given layers; results are cached on disk, keyed by model, "
        "weights, layer, preprocessing and stimulus content.",
    )
    p.add_argument("stimuli", type=Path, help="folder of images or audio files")
    p.add_argument("--model", default="efficientnet_lite0", help="model name")
    p.add_argument("--weights", default=None, help="local weights file or pretrained tag")
    p.add_argument("--layer", action="append", default=None, help="layer name (repeatable)")
    p.add_argument("--pooling", default="avg", help="avg, grid, random, pca or none")
    p.add_argument("--grid-size", type=int, default=2, help="cells per side for --pooling grid")
    p.add_argument(
        "--n-components", type=int, default=256, help="output size for --pooling random/pca"
    )
    p.add_argument("--out", type=Path, default=None, help="output .h5 (default: print only)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--dtype", default="float32", help="stored dtype: float32 or float16")
    p.add_argument("--sfreq-out", type=float, default=120.0, help="rate of speech features, Hz")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = add(
        "simulate",
        _cmd_simulate,
        "generate a simulated dataset with known ground truth",
        "Generate a simulated dataset into OUT, in the real formats, with its ground truth and "
        "a manifest. fmri: an NSD-like experiment (natural images, EfficientNet-Lite0 layers "
        "driving MNI regions, NSD-style HDF5 betas and design tables). meg / eeg: a "
        "MEG-MASC-like listening experiment (synthesised speech, sources on mne's fsaverage "
        "head, FIF or BIDS with events.tsv) or, with --paradigm images, a THINGS-EEG-like "
        "rapid serial visual presentation of natural images. The same seed gives the same "
        "bytes.",
    )
    p.add_argument("modality", choices=["fmri", "meg", "eeg"], help="which experiment")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    p.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    p.add_argument("--n-subjects", type=int, default=None, help="default 4 (fmri), 2 (M/EEG)")
    p.add_argument("--snr", type=float, default=None, help="default 0.3 (fmri), 0.1 (M/EEG)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--device", default="auto", help="where networks run: auto, cpu, cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("image options (fmri, and meg / eeg with --paradigm images)")
    g.add_argument(
        "--n-stimuli", type=int, default=None, help="distinct images (default 3000 / 200)"
    )
    g.add_argument("--images", type=Path, default=None, help="folder of your own images")
    g.add_argument("--image-size", type=int, default=128, help="image side, pixels")
    g = p.add_argument_group("fmri options")
    g.add_argument(
        "--n-test",
        type=int,
        default=None,
        help="shared test images (default 300; a tenth of the images when under 3000)",
    )
    g.add_argument(
        "--train-overlap",
        type=float,
        default=None,
        help="fraction of the training images every subject sees, the others split between "
        "subjects (default 1: all)",
    )
    g.add_argument("--resolution-mm", type=int, default=3, help="voxel size, mm (default 3)")
    g = p.add_argument_group("meg / eeg options")
    g.add_argument(
        "--paradigm", choices=["speech", "images"], default="speech", help="what is presented"
    )
    g.add_argument("--duration", type=float, default=300.0, help="recording length, s")
    g.add_argument("--sfreq", type=float, default=200.0, help="sampling rate, Hz")
    g.add_argument("--n-channels", type=int, default=None, help="sensors kept per subject")
    g.add_argument("--text", type=Path, default=None, help="text file to speak")

    p = add(
        "rsa",
        _cmd_rsa,
        "compare network layers with brain regions (RSA, tRSA)",
        "Compare the layers of EfficientNet-Lite0 with the regions of a simulated fMRI dataset "
        "by RSA and topological RSA: permutation p-values (corrected across layers), bootstrap "
        "CIs and noise ceilings. CONFIG is a YAML file with the keys of "
        "brainalign.pipelines.compare_layers.RSAConfig (dataset, layers, method, topological, "
        "n_permutations, n_bootstrap, out, ...); without it, the defaults run on the default "
        "simulated dataset. Writes rsa.csv, best_layers.csv, config.yaml and "
        "layer_profiles.png into the output folder.",
    )
    p.add_argument("config", nargs="?", type=Path, default=None, help="YAML configuration")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a key (repeatable)"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (overrides 'out')")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = add(
        "train",
        _cmd_train,
        "train a brain decoder from a YAML config",
        "Train the contrastive brain decoder (per-subject adapters, MindEye-style encoder) and "
        "the ridge baseline a YAML config describes (see configs/decode_simulated_fmri.yaml and "
        "brainalign.pipelines.decode.DecodeConfig), then report retrieval in both directions "
        "against the simulation's ceiling. Checkpoints are written atomically; --resume "
        "continues an interrupted run and ends with the same weights.",
    )
    p.add_argument("config", type=Path, help="YAML decoding config")
    p.add_argument(
        "overrides", nargs="*", help="KEY=VALUE overrides (train.KEY for training settings)"
    )
    p.add_argument("--out", type=Path, default=None, help="run folder (default: the config's)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = add(
        "evaluate",
        _cmd_evaluate,
        "retrieval results of a trained decoding run",
        "Evaluate a decoding run (its folder, its train/ folder or one checkpoint) on the "
        "shared test set: top-1/top-5 N-way and full-gallery retrieval in both directions, "
        "beside the ridge baseline and the ceiling.",
    )
    p.add_argument("checkpoint", type=Path, help="run folder or checkpoint")
    p.add_argument("--no-ridge", action="store_true", help="skip refitting the ridge baseline")

    p = add(
        "reconstruct",
        _cmd_reconstruct,
        "images from a decoding run's embeddings",
        "Reconstruct the test images of a decoding run from its decoded embeddings and score "
        "them (PixCorr, SSIM, 2-way identification on EfficientNet-Lite0 features, with "
        "bootstrap CIs). Offline, the images are drawn by a small stand-in decoder trained on "
        "the dataset's own training images (labelled as such). Writes reconstructions.png and "
        "reconstruction_metrics.tsv.",
    )
    p.add_argument("run", type=Path, help="decoding run folder or checkpoint")
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default RUN/reconstruction)"
    )
    p.add_argument("--epochs", type=int, default=30, help="epochs of the stand-in image decoder")
    p.add_argument(
        "--decoder-images",
        type=int,
        default=1000,
        help="training images the stand-in image decoder learns from, at most (0: all)",
    )
    p.add_argument(
        "--low-level",
        action="store_true",
        help="start from blurry images regressed from the brain (img2img for diffusers "
        "decoders, a pixel blend for the stand-in)",
    )
    p.add_argument(
        "--strength", type=float, default=0.75, help="how much the decoder replaces the start"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``brainalign`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError, ImportError) as err:
        # user errors: the message says what to fix; no traceback
        print(f"brainalign {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
