"""The package as a whole: cheap import, lazy API, command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

import brainalign
from brainalign import cli

HEAVY = ("torch", "mne", "nilearn", "matplotlib", "open_clip", "diffusers", "h5py", "nibabel")


def test_import_is_cheap():
    """``import brainalign`` (and ``brainalign.io``) must not load heavy dependencies."""
    code = (
        "import sys, brainalign, brainalign.io, brainalign.cli\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"importing brainalign loaded heavy modules: {out}"


def test_version_and_lazy_subpackages():
    assert brainalign.__version__.count(".") >= 2
    assert brainalign.io.__name__ == "brainalign.io"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        brainalign.nope  # noqa: B018


def test_cli_help_lists_every_subcommand(capsys):
    assert cli.main([]) == 0
    text = capsys.readouterr().out
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name in subparsers.choices:
        assert name in text
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        assert capsys.readouterr().out.startswith("usage: brainalign " + name)


def test_cli_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "brainalign.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == f"brainalign {brainalign.__version__}"


@pytest.mark.parametrize(
    "subpackage",
    ["io", "data", "targets", "models", "losses", "evaluate", "train", "rsa", "viz", "reconstruct"],
)
def test_every_public_name_resolves(subpackage):
    """Each name in a lazy ``__all__`` must import from the module the lazy map points to."""
    module = getattr(brainalign, subpackage)
    for name in module.__all__:
        assert getattr(module, name) is not None, name


def test_readme_examples_run():
    """The README's examples are doctests: their printed output must stay true."""
    import doctest
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1] / "README.md"
    result = doctest.testfile(str(readme), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
