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
  features   extract stimulus features (CLIP, DNN layers, speech) into a cached array

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
        weights=args.weights,
        batch_size=args.batch_size,
        device=args.device,
        cache_dir=args.cache_dir,
        verbose=not args.quiet,
    )
    print(result)
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
        "Run brainalign's main job end to end on data that needs no download: today it validates "
        "every shipped dataset manifest and loads the real example recordings that ship inside "
        "the installed nibabel/nilearn wheels through brainalign's readers.",
    )
    p.add_argument("--data-root", type=Path, default=None, help="folder for generated data")
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
    p.add_argument("--pooling", default="avg", help="avg, grid, random-projection, pca, none")
    p.add_argument("--out", type=Path, default=None, help="output .npz (default: print only)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", type=Path, default=None)
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
    except (ValueError, FileNotFoundError, TypeError, ImportError) as err:
        # user errors: the message says what to fix; no traceback
        print(f"brainalign {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
