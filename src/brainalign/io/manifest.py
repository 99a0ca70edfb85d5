"""Dataset manifests: one YAML file per dataset, its schema, and checks of a dataset on disk.

A manifest says what a dataset is (name, modality, license, citation), how to obtain it (access
notes, source URLs, per-file download URLs), which files make it up (paths or glob patterns relative
to the data root, with sizes and SHA-256 checksums where known), where its stimuli and events are,
which brainalign reader loads it and with which options, the preprocessing and the default
train/test split. The schema is a set of frozen dataclasses below; :func:`load_manifest` validates a
YAML file against it and raises :class:`~brainalign._utils.errors.ManifestError` naming the file and
the key for unknown keys (with a suggestion), wrong types and unsafe paths.

The data root
-------------
File paths in a manifest are relative to a *data root*, never absolute and never containing ``..``.
The root of a file is, in this order:

1. the file's own ``root`` (used for files that ship inside an installed package);
2. the ``root`` argument given to :func:`validate_dataset` / :func:`~brainalign.io.fetch_dataset`;
3. the manifest's ``root``: a path (``~`` and ``$VARS`` expanded) or
   ``{package: nibabel, subdir: tests/data}``, resolved to the folder of the installed package;
4. ``$BRAINALIGN_DATA/<name>`` when that variable is set, else ``~/brainalign_data/<name>``.

Checksums of package files
--------------------------
Files that ship inside installed wheels (the ``examples`` manifest) record the SHA-256 of the
package version named in ``root.version``. Validation is strict: a different checksum is reported as
``corrupt``; when the installed version differs from the recorded one, the report says so, so that
version drift is told apart from damage.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Union

from brainalign._utils.errors import ManifestError
from brainalign._utils.progress import logger
from brainalign._utils.progress import progress as _progress_bar
from brainalign._utils.validation import suggest

__all__ = [
    "FILE_ROLES",
    "MODALITIES",
    "SPLIT_METHODS",
    "STATUSES",
    "STIMULUS_KINDS",
    "Access",
    "Citation",
    "DataRoot",
    "EventsSpec",
    "FileSpec",
    "FileStatus",
    "Manifest",
    "PreprocessingSpec",
    "ReaderSpec",
    "SplitSpec",
    "StimuliSpec",
    "ValidationReport",
    "find_manifest",
    "known_readers",
    "list_manifests",
    "load_manifest",
    "manifest_dirs",
    "manifest_from_dict",
    "validate_dataset",
    "verify_file",
]

#: Recording modalities a manifest can declare.
MODALITIES = ("fmri", "meg", "eeg")
#: Kinds of stimuli.
STIMULUS_KINDS = ("image", "audio", "text", "video")
#: What a listed file is for.
FILE_ROLES = ("data", "mask", "anatomy", "stimuli", "events", "metadata", "derivative")
#: Default split methods and the options each accepts (name -> (type, description)).
SPLIT_METHODS: dict[str, dict[str, tuple[Any, str]]] = {
    # a fixed set of stimuli is the test set (NSD: the 1,000 images every subject saw)
    "shared_stimuli": {
        "source": (str, "a path (relative to the data root) of the file listing them"),
        "key": (str, "the variable or column holding the list in that file"),
        "index_base": (int, "0 or 1: the first index in that list"),
        "n_test": (int, "the number of test stimuli"),
    },
    # a column of the trial table marks the test trials (THINGS-MEG: trial_type == 'test')
    "column": {
        "column": (str, "a column name"),
        "test_values": (list, "a list of values"),
        "exclude_values": (list, "a list of values"),
    },
    # separate files hold the training and test data (THINGS-EEG2)
    "files": {
        "train": (list, "a list of paths or glob patterns"),
        "test": (list, "a list of paths or glob patterns"),
    },
    # whole groups (sentences, stories, runs) go to one split, drawn at random with a seed
    "grouped_fraction": {
        "group": (str, "a column name"),
        "test_size": (float, "a fraction in (0, 1)"),
        "val_size": (float, "a fraction in [0, 1)"),
        "seed": (int, "an integer"),
    },
}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_URL_SCHEMES = ("http://", "https://", "ftp://", "file://")
_GLOB_CHARS = frozenset("*?[")
_MANIFEST_SUFFIXES = (".yaml", ".yml")


def known_readers() -> tuple[str, ...]:
    """Return the names of the brainalign readers a manifest may name in ``reader.name``.

    These are the ``load_*`` functions of :mod:`brainalign.io` that read recordings (fMRI and
    M/EEG), taken from the package's lazy export table, so a reader added there is accepted here
    without importing anything heavy.
    """
    from brainalign import io as _io

    lazy = getattr(_io, "_LAZY", {})
    return tuple(
        sorted(
            n
            for n, mod in lazy.items()
            if n.startswith("load_") and mod in ("fmri", "nsd", "surface", "meeg")
        )
    )


# --------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataRoot:
    """Where a dataset's files live.

    Exactly one of ``path`` and ``package`` is given. In YAML a plain string is a ``path``.

    Attributes
    ----------
    path : str | None
        A folder; ``~`` and environment variables (``$HOME/data``) are expanded.
    package : str | None
        An installed Python package whose folder is the root (e.g. ``nibabel``).
    subdir : str
        A folder inside the package (relative, no ``..``).
    version : str | None
        The package version the recorded sizes and checksums come from (reported on mismatch).
    """

    path: str | None = None
    package: str | None = None
    subdir: str = ""
    version: str | None = None

    def resolve(self, *, context: str = "manifest") -> Path:
        """Return the root folder as an absolute :class:`~pathlib.Path`.

        Raises
        ------
        FileNotFoundError
            If ``package`` is not installed.
        """
        if self.path is not None:
            return Path(os.path.expandvars(self.path)).expanduser()
        spec = importlib.util.find_spec(str(self.package))
        if spec is None:
            raise FileNotFoundError(
                f"{context}: the data root is the installed package {self.package!r}, which is "
                f"not installed. Install it with `pip install {self.package}`."
            )
        if spec.submodule_search_locations:
            base = Path(next(iter(spec.submodule_search_locations)))
        else:
            base = Path(str(spec.origin)).parent
        return base / self.subdir if self.subdir else base

    def installed_version(self) -> str | None:
        """Version of ``package`` installed here (``None`` for a plain path or when unknown)."""
        if self.package is None:
            return None
        from importlib import metadata

        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return None


@dataclass(frozen=True)
class FileSpec:
    """One file (or glob pattern of files) of a dataset.

    In YAML a plain string is a ``path``.

    Attributes
    ----------
    path : str
        Path relative to the data root, ``/``-separated; may be a glob pattern (``*``, ``?``,
        ``[...]``, ``**``) matching files or folders (e.g. CTF ``.ds`` folders).
    url : str | None
        Where to download it (http, https, ftp or file URL). Not allowed for patterns.
    size : int | None
        Size in bytes. Not allowed for patterns.
    sha256 : str | None
        Hex SHA-256 of the content, 64 lowercase characters. Not allowed for patterns.
    count : int | None
        For a pattern: the number of matches a complete dataset has (fewer → ``incomplete``).
    required : bool
        ``False`` for files that a reader does not need (reported, never an error).
    role : str
        One of :data:`FILE_ROLES`.
    description : str
        Free text.
    root : DataRoot | None
        A root for this file only (files inside installed packages); overrides every other root.
    """

    path: str
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    count: int | None = None
    required: bool = True
    role: str = "data"
    description: str = ""
    root: DataRoot | None = None

    @property
    def is_pattern(self) -> bool:
        """Whether ``path`` is a glob pattern rather than one file."""
        return any(c in _GLOB_CHARS for c in self.path)


@dataclass(frozen=True)
class Citation:
    """How to cite the dataset: the reference text, the paper's DOI and the data's DOI."""

    text: str
    doi: str | None = None
    dataset_doi: str | None = None


@dataclass(frozen=True)
class Access:
    """How to obtain the data.

    Attributes
    ----------
    notes : str
        What a user must do (sign a data-use agreement, create an account, install the AWS CLI).
    requires_agreement : bool
        Whether a data-use agreement or registration is needed before downloading.
    agreement_url : str | None
        Where to sign it.
    commands : tuple of str
        Shell commands that download the data; ``{root}`` is replaced with the data root.
    base_url : str | None
        Prefix for files listed without a ``url``: their URL is ``base_url + path``.
    """

    notes: str = ""
    requires_agreement: bool = False
    agreement_url: str | None = None
    commands: tuple[str, ...] = ()
    base_url: str | None = None


@dataclass(frozen=True)
class StimuliSpec:
    """Where the stimuli are: their kind, a path or pattern under the root, and their number."""

    kind: str
    path: str | None = None
    n_stimuli: int | None = None
    description: str = ""


@dataclass(frozen=True)
class EventsSpec:
    """Where the events (trial onsets and stimulus identities) are."""

    path: str | None = None
    description: str = ""


@dataclass(frozen=True)
class ReaderSpec:
    """The brainalign reader that loads the data and its keyword options.

    ``name`` is one of :func:`known_readers` (e.g. ``load_nsd_betas``, ``load_bids``); ``options``
    are passed to it as keyword arguments.
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


@dataclass(frozen=True)
class PreprocessingSpec:
    """Preprocessing applied before training (times in seconds, frequencies in Hz).

    Attributes
    ----------
    bandpass : tuple (low, high) | None
        Band-pass edges in Hz; either may be ``None`` (high-pass or low-pass only).
    notch : tuple of float
        Line-noise frequencies to remove, Hz.
    sfreq : float | None
        Resample to this rate, Hz (e.g. 120 for MEG).
    tmin, tmax : float | None
        Window around each event, seconds.
    baseline : tuple (start, stop) | None
        Baseline interval in seconds; ``None`` ends mean the window's edge.
    scale : str | None
        ``"robust"`` (median and interquartile range per channel) or ``"standard"``.
    clip : float | None
        Clamp scaled values to ``[-clip, clip]``.
    high_pass : float | None
        fMRI high-pass cut-off, Hz.
    detrend, standardize : bool | None
        fMRI signal cleaning.
    notes : str
        Anything the fields do not say (what the published data already had done to them).
    """

    bandpass: tuple[float | None, float | None] | None = None
    notch: tuple[float, ...] = ()
    sfreq: float | None = None
    tmin: float | None = None
    tmax: float | None = None
    baseline: tuple[float | None, float | None] | None = None
    scale: str | None = None
    clip: float | None = None
    high_pass: float | None = None
    detrend: bool | None = None
    standardize: bool | None = None
    notes: str = ""


@dataclass(frozen=True)
class SplitSpec:
    """The default train/test split: a method of :data:`SPLIT_METHODS` and its options."""

    method: str
    options: dict[str, Any] = field(default_factory=dict)
    average_test_repetitions: bool = False
    description: str = ""


@dataclass(frozen=True)
class Manifest:
    """A dataset manifest (see the module docstring). Build it with :func:`load_manifest`.

    Attributes
    ----------
    name : str
        Lowercase identifier, also the file's stem (``nsd``, ``things_eeg2``).
    modality : str
        One of :data:`MODALITIES`.
    description : str
        What the dataset is.
    license : str | None
        License or terms of use.
    citation : Citation | None
        Reference and DOIs.
    homepage : str | None
        The dataset's web page.
    access : Access
        How to obtain the data.
    sources : tuple of str
        Source URLs (repositories, buckets).
    files : tuple of FileSpec
        The files that make up the dataset.
    subjects, sessions : tuple of str
        Subject and session labels as they appear in file names.
    n_sessions : dict of str to int
        Sessions per subject where they differ.
    stimuli : StimuliSpec | None
        Where the stimuli are.
    events : EventsSpec | None
        Where the events are.
    reader : ReaderSpec | None
        The reader and its options (``None`` where no brainalign reader handles the format yet).
    preprocessing : PreprocessingSpec | None
        Preprocessing before training.
    split : SplitSpec | None
        The default train/test split.
    root : DataRoot | None
        The default data root.
    schema : int
        Schema version (1).
    source_path : Path | None
        The YAML file this manifest was read from (not a YAML key).
    """

    name: str
    modality: str
    description: str = ""
    license: str | None = None
    citation: Citation | None = None
    homepage: str | None = None
    access: Access = field(default_factory=Access)
    sources: tuple[str, ...] = ()
    files: tuple[FileSpec, ...] = ()
    subjects: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    n_sessions: dict[str, int] = field(default_factory=dict)
    stimuli: StimuliSpec | None = None
    events: EventsSpec | None = None
    reader: ReaderSpec | None = None
    preprocessing: PreprocessingSpec | None = None
    split: SplitSpec | None = None
    root: DataRoot | None = None
    schema: int = 1
    source_path: Path | None = field(default=None, compare=False)

    @property
    def context(self) -> str:
        """How errors refer to this manifest: its file, or its name."""
        return (
            f"manifest {str(self.source_path)!r}" if self.source_path else f"manifest {self.name!r}"
        )

    def file_root(self, spec: FileSpec, root: str | os.PathLike | None = None) -> Path:
        """Return the data root of one file (see the module docstring for the order)."""
        if spec.root is not None:
            return spec.root.resolve(context=self.context)
        return self.data_root(root)

    def data_root(self, root: str | os.PathLike | None = None) -> Path:
        """Return the data root: ``root`` if given, else the manifest's, else the default."""
        if root is not None:
            return Path(root).expanduser()
        if self.root is not None:
            return self.root.resolve(context=self.context)
        env = os.environ.get("BRAINALIGN_DATA")
        base = Path(env).expanduser() if env else Path.home() / "brainalign_data"
        return base / self.name

    def file_url(self, spec: FileSpec) -> str | None:
        """The download URL of a file: its own ``url``, else ``access.base_url + path``."""
        if spec.url:
            return spec.url
        if self.access.base_url and not spec.is_pattern:
            return self.access.base_url.rstrip("/") + "/" + spec.path
        return None

    def access_text(self, root: str | os.PathLike | None = None) -> str:
        """How to obtain the data, as text (notes, agreement, commands with the root filled in)."""
        lines = [f"How to obtain {self.name!r}:"]
        if self.access.notes:
            notes = " ".join(self.access.notes.split())
            lines.append(textwrap.fill(notes, 96, initial_indent="  ", subsequent_indent="  "))
        if self.access.requires_agreement:
            where = f" at {self.access.agreement_url}" if self.access.agreement_url else ""
            lines.append(f"  A data-use agreement is required{where}.")
        if self.homepage:
            lines.append(f"  Homepage: {self.homepage}")
        for url in self.sources:
            lines.append(f"  Source: {url}")
        if self.access.commands:
            try:
                target = str(self.data_root(root))
            except FileNotFoundError:
                target = "ROOT"
            lines.append("  Commands:")
            lines.extend("    " + cmd.replace("{root}", target) for cmd in self.access.commands)
        return "\n".join(lines)

    def __str__(self) -> str:
        lines = [f"{self.name} ({self.modality}): {' '.join(self.description.split())}"]
        if self.license:
            lines.append(f"  license: {self.license}")
        if self.citation:
            doi = f" doi:{self.citation.doi}" if self.citation.doi else ""
            lines.append(f"  cite: {self.citation.text}{doi}")
        if self.subjects:
            lines.append(f"  subjects: {len(self.subjects)} ({', '.join(self.subjects[:4])}…)")
        lines.append(f"  files: {len(self.files)} entries")
        if self.reader:
            lines.append(f"  reader: {self.reader.name}({_kwargs_text(self.reader.options)})")
        return "\n".join(lines)


def _kwargs_text(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())


# --------------------------------------------------------------------------------------------
# parsing YAML into the schema
# --------------------------------------------------------------------------------------------


def _yaml_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is str:
        return "a string"
    if tp is bool:
        return "a boolean (true/false)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is Any:
        return "any value"
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin in (dict, Mapping) or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _plural(tp: Any) -> str:
    return {str: "strings", int: "integers", float: "numbers", bool: "booleans"}.get(
        tp, "values of " + _describe(tp)
    )


def _fail(ctx: str, key: str, message: str) -> ManifestError:
    where = f"key {key!r}" if key else "the top level"
    return ManifestError(f"Invalid {ctx}: {where} {message}")


def _matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` has the YAML shape of ``tp`` (used to pick a member of a union)."""
    origin = typing.get_origin(tp)
    if tp is type(None):
        return value is None
    if tp is Any:
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, list | tuple)
    if origin in (dict, Mapping) or dataclasses.is_dataclass(tp):
        return isinstance(value, dict) or (
            dataclasses.is_dataclass(tp) and tp in _SHORTHAND and isinstance(value, str)
        )
    return False


# dataclasses that accept a bare string in YAML: the string fills this field
_SHORTHAND: dict[type, str] = {}


def _convert(value: Any, tp: Any, key: str, ctx: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            if _matches(value, arg):
                return _convert(value, arg, key, ctx)
        raise _fail(
            ctx, key, f"must be {_describe(tp)}, found {_yaml_type(value)} ({value!r:.60})."
        )
    if not _matches(value, tp):
        raise _fail(
            ctx, key, f"must be {_describe(tp)}, found {_yaml_type(value)} ({value!r:.60})."
        )
    if tp is float:
        return float(value)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]", ctx) for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(
                ctx, key, f"must be {_describe(tp)}, found a list of {len(value)} ({value!r:.60})."
            )
        return tuple(
            _convert(v, a, f"{key}[{i}]", ctx) for i, (v, a) in enumerate(zip(value, args))
        )
    if origin in (dict, Mapping):
        v_tp = (typing.get_args(tp) or (str, Any))[1]
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _fail(ctx, f"{key}.{k}", f"must have a string name, found {_yaml_type(k)}.")
            out[k] = _convert(v, v_tp, f"{key}.{k}", ctx)
        return out
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, str):
            value = {_SHORTHAND[tp]: value}
        return _build(tp, value, key, ctx)
    if tp is Any:
        return _plain_copy(value)
    return value


def _plain_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_copy(v) for v in value]
    return value


def _build(cls: type, data: Mapping[str, Any], key: str, ctx: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source_path"}
    prefix = f"{key}." if key else ""
    for k in data:
        if k not in fields:
            hint = suggest(str(k), fields)
            allowed = ", ".join(repr(f) for f in fields)
            where = f"in {key!r}" if key else "at the top level"
            raise ManifestError(
                f"Invalid {ctx}: unknown key {k!r} {where}.{hint} Allowed keys: {allowed}."
            )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], prefix + name, ctx)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            where = f"in {key!r}" if key else "at the top level"
            raise ManifestError(
                f"Invalid {ctx}: the required key {name!r} is missing {where} "
                f"(it must be {_describe(hints[name])})."
            )
    return cls(**kwargs)


_SHORTHAND.update({DataRoot: "path", FileSpec: "path"})


def _check_relative(path: str, key: str, ctx: str) -> None:
    """Reject paths that could escape the data root."""
    if not path.strip():
        raise _fail(ctx, key, "is an empty path.")
    if "\\" in path:
        raise _fail(ctx, key, f"uses backslashes ({path!r}); separate folders with '/'.")
    if (
        PurePosixPath(path).is_absolute()
        or PureWindowsPath(path).is_absolute()
        or PureWindowsPath(path).drive
        or path.startswith("~")
    ):
        raise _fail(
            ctx,
            key,
            f"is an absolute path ({path!r}); paths must be relative to the data root. "
            "Set the root with `root:` in the manifest or the `root` argument instead.",
        )
    if ".." in PurePosixPath(path).parts:
        raise _fail(
            ctx, key, f"contains '..' ({path!r}), which would escape the data root; remove it."
        )


def _check_root(root: DataRoot, key: str, ctx: str) -> None:
    if (root.path is None) == (root.package is None):
        raise _fail(ctx, key, "must give exactly one of 'path' and 'package'.")
    if root.subdir:
        if root.package is None:
            raise _fail(ctx, f"{key}.subdir", "is only allowed with 'package'.")
        _check_relative(root.subdir, f"{key}.subdir", ctx)
    if root.path is not None and not root.path.strip():
        raise _fail(ctx, f"{key}.path", "is an empty path.")


def _check_url(url: str, key: str, ctx: str) -> None:
    if not url.startswith(_URL_SCHEMES):
        raise _fail(
            ctx,
            key,
            f"must be an http(s), ftp or file URL, found {url!r}. Files behind other protocols "
            "(s3://, DataLad) have no 'url'; describe how to get them in 'access'.",
        )


def _check_choice(value: Any, allowed: Iterable[str], key: str, ctx: str) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        lowered = str(value).lower()
        hint = f" Did you mean {lowered!r}?" if lowered in allowed else suggest(str(value), allowed)
        choices = ", ".join(repr(a) for a in allowed)
        raise _fail(ctx, key, f"must be one of {choices}, found {value!r}.{hint}")


def _check_semantics(m: Manifest, ctx: str) -> None:
    if not _NAME_RE.match(m.name):
        raise _fail(
            ctx, "name", f"must be lowercase letters, digits, '_' or '-', found {m.name!r}."
        )
    if m.schema != 1:
        raise _fail(ctx, "schema", f"must be 1 (the only schema version), found {m.schema}.")
    _check_choice(m.modality, MODALITIES, "modality", ctx)
    if m.root is not None:
        _check_root(m.root, "root", ctx)
    for i, url in enumerate(m.sources):
        _check_url(url, f"sources[{i}]", ctx)
    if m.access.base_url is not None:
        _check_url(m.access.base_url, "access.base_url", ctx)
    if m.access.agreement_url is not None:
        _check_url(m.access.agreement_url, "access.agreement_url", ctx)
    seen: dict[str, int] = {}
    for i, f in enumerate(m.files):
        key = f"files[{i}]"
        _check_relative(f.path, f"{key}.path", ctx)
        if f.path in seen:
            raise _fail(ctx, f"{key}.path", f"repeats {f.path!r} (already files[{seen[f.path]}]).")
        seen[f.path] = i
        _check_choice(f.role, FILE_ROLES, f"{key}.role", ctx)
        if f.root is not None:
            _check_root(f.root, f"{key}.root", ctx)
        if f.url is not None:
            _check_url(f.url, f"{key}.url", ctx)
        if f.size is not None and f.size < 0:
            raise _fail(ctx, f"{key}.size", f"must be a size in bytes >= 0, found {f.size}.")
        if f.sha256 is not None and not _SHA256_RE.match(f.sha256):
            raise _fail(
                ctx,
                f"{key}.sha256",
                f"must be 64 lowercase hexadecimal characters, found {f.sha256!r}.",
            )
        if f.is_pattern:
            for attr in ("url", "size", "sha256"):
                if getattr(f, attr) is not None:
                    raise _fail(
                        ctx,
                        f"{key}.{attr}",
                        f"is not allowed for the glob pattern {f.path!r}; list files one by one "
                        "to give each its own.",
                    )
        elif f.count is not None:
            raise _fail(ctx, f"{key}.count", f"is only allowed for glob patterns, not {f.path!r}.")
        if f.count is not None and f.count < 1:
            raise _fail(ctx, f"{key}.count", f"must be at least 1, found {f.count}.")
    for name, n in m.n_sessions.items():
        if n < 1:
            raise _fail(ctx, f"n_sessions.{name}", f"must be at least 1, found {n}.")
    if m.stimuli is not None:
        _check_choice(m.stimuli.kind, STIMULUS_KINDS, "stimuli.kind", ctx)
        if m.stimuli.path is not None:
            _check_relative(m.stimuli.path, "stimuli.path", ctx)
    if m.events is not None and m.events.path is not None:
        _check_relative(m.events.path, "events.path", ctx)
    if m.reader is not None:
        _check_choice(m.reader.name, known_readers(), "reader.name", ctx)
    if m.preprocessing is not None:
        p = m.preprocessing
        if p.scale is not None:
            _check_choice(p.scale, ("robust", "standard"), "preprocessing.scale", ctx)
        for attr in ("sfreq", "clip", "high_pass"):
            value = getattr(p, attr)
            if value is not None and value <= 0:
                raise _fail(ctx, f"preprocessing.{attr}", f"must be positive, found {value}.")
        if p.tmin is not None and p.tmax is not None and p.tmin >= p.tmax:
            raise _fail(
                ctx, "preprocessing.tmin", f"must be smaller than tmax, found {p.tmin} >= {p.tmax}."
            )
        if p.bandpass is not None:
            low, high = p.bandpass
            if low is not None and high is not None and low >= high:
                raise _fail(
                    ctx,
                    "preprocessing.bandpass",
                    f"must be [low, high] with low < high: {low, high}.",
                )
    if m.split is not None:
        _check_split(m.split, ctx)


def _check_split(split: SplitSpec, ctx: str) -> None:
    _check_choice(split.method, SPLIT_METHODS, "split.method", ctx)
    allowed = SPLIT_METHODS[split.method]
    for k, v in split.options.items():
        key = f"split.options.{k}"
        if k not in allowed:
            hint = suggest(k, allowed)
            raise ManifestError(
                f"Invalid {ctx}: unknown key {k!r} in 'split.options' for method "
                f"{split.method!r}.{hint} Allowed keys: {', '.join(repr(a) for a in allowed)}."
            )
        tp, what = allowed[k]
        ok = _matches(v, tp) if tp is not list else isinstance(v, list)
        if not ok:
            raise _fail(ctx, key, f"must be {what}, found {_yaml_type(v)} ({v!r:.60}).")
        if k in ("test_size", "val_size") and not 0 <= v < 1:
            raise _fail(ctx, key, f"must be {what}, found {v}.")
        if k == "index_base" and v not in (0, 1):
            raise _fail(ctx, key, f"must be 0 or 1, found {v}.")
        if k in ("source",):
            _check_relative(v, key, ctx)


def manifest_from_dict(
    data: Mapping[str, Any], *, source: str | os.PathLike | None = None
) -> Manifest:
    """Validate a mapping (a parsed YAML document) and return a :class:`Manifest`.

    Parameters
    ----------
    data : mapping
        The manifest's content.
    source : path-like | None
        The file it came from, named in error messages.

    Raises
    ------
    ManifestError
        For unknown keys (with the closest allowed key), wrong types (key, expected and found
        type), unsafe paths (absolute, ``..``), missing required keys and invalid values.
    """
    ctx = f"manifest {str(source)!r}" if source is not None else "manifest"
    if not isinstance(data, dict):
        raise ManifestError(
            f"Invalid {ctx}: the document must be a mapping of keys (name, modality, files, …), "
            f"found {_yaml_type(data)}."
        )
    manifest = _build(Manifest, data, "", ctx)
    _check_semantics(manifest, ctx)
    if source is not None:
        manifest = dataclasses.replace(manifest, source_path=Path(source))
    return manifest


def load_manifest(manifest: Manifest | str | os.PathLike) -> Manifest:
    """Read and validate a dataset manifest.

    Parameters
    ----------
    manifest : Manifest | str | path-like
        A :class:`Manifest` (returned unchanged), a path to a YAML file, or the bare name of a
        manifest found by :func:`find_manifest` (e.g. ``"nsd"``).

    Returns
    -------
    manifest : Manifest

    Raises
    ------
    ManifestError
        If the file is not valid YAML or does not follow the schema; the message names the file
        and the key.
    FileNotFoundError
        If no manifest of that name or path exists.
    """
    if isinstance(manifest, Manifest):
        return manifest
    import yaml

    path = find_manifest(manifest)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        raise ManifestError(
            f"Invalid manifest {str(path)!r}: it is not valid YAML ({err})."
        ) from err
    return manifest_from_dict(data, source=path)


# --------------------------------------------------------------------------------------------
# finding manifests
# --------------------------------------------------------------------------------------------


def manifest_dirs() -> list[Path]:
    """Folders searched for manifests by name, in order.

    1. every folder in ``$BRAINALIGN_MANIFESTS`` (separated by ``os.pathsep``);
    2. the repository's ``data_manifests/`` (``Path(brainalign.__file__).parents[2]``, an editable
       install);
    3. ``brainalign/data_manifests/`` inside an installed package, when present.
    """
    import brainalign

    dirs = [
        Path(p).expanduser()
        for p in os.environ.get("BRAINALIGN_MANIFESTS", "").split(os.pathsep)
        if p
    ]
    pkg = Path(brainalign.__file__).resolve()
    dirs += [pkg.parents[2] / "data_manifests", pkg.parent / "data_manifests"]
    out: list[Path] = []
    for d in dirs:
        # resolve, so that the packaged symlink to the repository's folder is listed once
        if d.is_dir() and d.resolve() not in out:
            out.append(d.resolve())
    return out


def _manifest_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in manifest_dirs():
        for p in sorted(d.iterdir()):
            if p.suffix in _MANIFEST_SUFFIXES and p.is_file():
                found.setdefault(p.stem, p)  # earlier folders win
    return found


def list_manifests() -> list[str]:
    """Return the names of the manifests found in :func:`manifest_dirs`, sorted."""
    return sorted(_manifest_files())


def find_manifest(name_or_path: str | os.PathLike) -> Path:
    """Return the path of a manifest given its path or its bare name.

    Parameters
    ----------
    name_or_path : str | path-like
        A path to a ``.yaml``/``.yml`` file, or a name (``"nsd"``) looked up in
        ``$BRAINALIGN_MANIFESTS`` and then in the repository's ``data_manifests/``.

    Raises
    ------
    FileNotFoundError
        If the path does not exist or no manifest has that name; the message lists the available
        names and the closest one.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = path.suffix in _MANIFEST_SUFFIXES or os.sep in text or "/" in text
    if path.is_file():
        return path
    if looks_like_path:
        raise FileNotFoundError(
            f"The manifest file {str(path.resolve())!r} does not exist. Give a path to a YAML "
            f"manifest or one of the names: {', '.join(list_manifests()) or '(none found)'}."
        )
    files = _manifest_files()
    if text in files:
        return files[text]
    names = sorted(files)
    hint = suggest(text, names)
    searched = ", ".join(str(d) for d in manifest_dirs()) or "(no manifest folder found)"
    raise FileNotFoundError(
        f"No manifest named {text!r}.{hint} Available: {', '.join(names) or '(none)'}. "
        f"Searched: {searched}. Add folders with the BRAINALIGN_MANIFESTS environment variable "
        "or give a path to a YAML file."
    )


# --------------------------------------------------------------------------------------------
# checking a dataset on disk
# --------------------------------------------------------------------------------------------

#: Statuses of a file in a :class:`ValidationReport`.
STATUSES = ("present", "missing", "corrupt", "incomplete")


@dataclass(frozen=True)
class FileStatus:
    """The state of one manifest entry on disk.

    Attributes
    ----------
    path : str
        The entry's path or pattern (relative to its root).
    status : str
        ``"present"``, ``"missing"``, ``"corrupt"`` (wrong size or checksum) or ``"incomplete"``
        (a pattern matched fewer files than ``count``).
    required : bool
        Whether a missing or damaged file makes the dataset unusable.
    location : Path
        The absolute path (or pattern) looked at.
    n_found : int
        Files found (1 or 0 for a single file).
    expected : int | None
        Files expected (``count`` for a pattern).
    size : int | None
        Size found in bytes (single files).
    verified : bool
        Whether a recorded checksum was compared (and matched, for ``"present"``).
    detail : str
        Why, in words.
    """

    path: str
    status: str
    required: bool
    location: Path
    n_found: int = 0
    expected: int | None = None
    size: int | None = None
    verified: bool = False
    detail: str = ""


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`validate_dataset` found: one :class:`FileStatus` per manifest entry.

    ``str(report)`` is a table for the command line; :meth:`to_frame` a pandas table.
    """

    name: str
    root: Path
    entries: tuple[FileStatus, ...]
    checksums: bool = True

    def _with(self, status: str) -> list[FileStatus]:
        return [e for e in self.entries if e.status == status]

    @property
    def present(self) -> list[FileStatus]:
        """Entries found intact."""
        return self._with("present")

    @property
    def missing(self) -> list[FileStatus]:
        """Entries not found (including patterns that match nothing)."""
        return self._with("missing")

    @property
    def corrupt(self) -> list[FileStatus]:
        """Entries whose size or checksum differs from the manifest."""
        return self._with("corrupt")

    @property
    def incomplete(self) -> list[FileStatus]:
        """Patterns that match fewer files than expected."""
        return self._with("incomplete")

    @property
    def ok(self) -> bool:
        """True when every required entry is present and intact."""
        return all(e.status == "present" for e in self.entries if e.required)

    def to_frame(self) -> Any:
        """Return a :class:`pandas.DataFrame` with one row per entry."""
        import pandas as pd

        cols = [f.name for f in dataclasses.fields(FileStatus)]
        rows = [{c: getattr(e, c) for c in cols} for e in self.entries]
        frame = pd.DataFrame(rows, columns=cols)
        frame["location"] = frame["location"].astype(str)
        return frame

    def summary(self) -> str:
        """One line: counts per status and the verdict."""
        counts = {s: len(self._with(s)) for s in STATUSES}
        parts = [f"{n} {s}" for s, n in counts.items() if n or s in ("present", "missing")]
        verdict = "OK" if self.ok else "NOT OK"
        return f"{verdict}: " + ", ".join(parts) + f" (of {len(self.entries)} entries)"

    def __str__(self) -> str:
        head = f"Dataset {self.name!r} at {self.root}"
        if not self.checksums:
            head += " (checksums not verified)"
        rows = [
            (
                e.status.upper() if e.status != "present" else "ok",
                e.path + ("" if e.required else " (optional)"),
                e.detail,
            )
            for e in self.entries
        ]
        return "\n".join([head, _table(("status", "path", "detail"), rows), self.summary()])


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], *, max_width: int = 70) -> str:
    """Format rows as a fixed-width text table (cells longer than ``max_width`` are cut)."""
    cut = [tuple(c if len(c) <= max_width else c[: max_width - 1] + "…" for c in r) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cut]) for i, h in enumerate(header)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  " + "  ".join("-" * w for w in widths))
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cut]
    return "\n".join(lines)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def verify_file(
    path: Path, spec: FileSpec, *, checksums: bool = True, root: DataRoot | None = None
) -> tuple[str, str, bool]:
    """Compare one existing file with its manifest entry.

    Returns
    -------
    status : str
        ``"present"`` or ``"corrupt"``.
    detail : str
        Why, in words.
    verified : bool
        Whether a checksum was compared.
    """
    from brainalign._utils.atomic import file_sha256

    if path.is_dir():
        if spec.size is not None or spec.sha256 is not None:
            return "corrupt", "is a folder, but the manifest records a file size or checksum", False
        return "present", "folder", False
    found = path.stat().st_size
    drift = ""
    if root is not None and root.version is not None:
        installed = root.installed_version()
        if installed is not None and installed != root.version:
            drift = (
                f"; recorded for {root.package} {root.version}, installed {installed}: the "
                "package's file probably changed between versions"
            )
    if spec.size is not None and found != spec.size:
        return "corrupt", f"size {found} bytes, expected {spec.size}{drift}", False
    if spec.sha256 is not None and checksums:
        digest = file_sha256(path)
        if digest != spec.sha256:
            return (
                "corrupt",
                f"sha256 {digest[:12]}…, expected {spec.sha256[:12]}… (checksum mismatch){drift}",
                True,
            )
        return "present", f"{_human(found)}, sha256 verified", True
    return "present", _human(found), False


def validate_dataset(
    manifest: Manifest | str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    checksums: bool = True,
    progress: bool = True,
) -> ValidationReport:
    """Check a dataset on disk against its manifest.

    Every entry is reported as present, missing, corrupt (wrong size, or a SHA-256 that differs
    from the manifest's) or incomplete (a glob pattern matching fewer files than its ``count``; a
    pattern matching nothing is missing). Nothing is written or changed.

    Parameters
    ----------
    manifest : Manifest | str | path-like
        A manifest, its path, or its name.
    root : path-like | None
        The data root; by default the manifest's (see the module docstring).
    checksums : bool
        Compare SHA-256 checksums where the manifest records them (reads every such file).
    progress : bool
        Show a progress bar over the files while hashing.

    Returns
    -------
    report : ValidationReport
        ``report.ok`` is True when every required entry is present and intact;
        ``print(report)`` shows the table.
    """
    m = load_manifest(manifest)
    data_root = m.data_root(root)
    n_hashed = sum(1 for f in m.files if f.sha256 is not None) if checksums else 0
    specs: Iterable[FileSpec] = m.files
    if n_hashed and progress:
        specs = _progress_bar(m.files, desc=f"validate {m.name}", total=len(m.files))
    entries = []
    for spec in specs:
        base = m.file_root(spec, root)
        file_root = spec.root if spec.root is not None else (m.root if root is None else None)
        entries.append(_check_entry(spec, base, checksums=checksums, root=file_root))
    report = ValidationReport(
        name=m.name, root=data_root, entries=tuple(entries), checksums=checksums
    )
    logger.info("validated %s: %s", m.name, report.summary())
    return report


def _check_entry(
    spec: FileSpec, base: Path, *, checksums: bool, root: DataRoot | None
) -> FileStatus:
    location = base / spec.path
    if spec.is_pattern:
        matches = sorted(base.glob(spec.path)) if base.is_dir() else []
        n = len(matches)
        expected = spec.count
        if n == 0:
            status, detail = "missing", "pattern matches nothing"
        elif expected is not None and n < expected:
            status, detail = "incomplete", f"{n} of {expected} files"
        else:
            status = "present"
            detail = f"{n} files" if expected is None else f"{n} of {expected} files"
        return FileStatus(
            spec.path, status, spec.required, location, n_found=n, expected=expected, detail=detail
        )
    if not location.exists():
        return FileStatus(
            spec.path, "missing", spec.required, location, expected=1, detail="not found"
        )
    status, detail, verified = verify_file(location, spec, checksums=checksums, root=root)
    size = location.stat().st_size if location.is_file() else None
    return FileStatus(
        spec.path,
        status,
        spec.required,
        location,
        n_found=1,
        expected=1,
        size=size,
        verified=verified,
        detail=detail,
    )
