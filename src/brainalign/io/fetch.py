"""Downloads: resumable, checksum-verified, atomic; and fetching every file a manifest lists.

How :func:`download_file` behaves
---------------------------------
- Bytes go to ``DEST.part`` beside the destination. A later call resumes from the end of that file
  with an HTTP ``Range`` request; when the server ignores the range (answers 200 instead of 206)
  the download restarts from byte 0.
- Within one call, a dropped connection or a timeout is retried ``retries`` times, each time
  resuming from what has arrived.
- When every byte has arrived, the size and SHA-256 are checked against the expected ones; only
  then is ``DEST.part`` renamed onto ``DEST`` (an atomic rename in the same folder). A killed
  download therefore never leaves a file under the final name.
- On a checksum (or size) mismatch, :class:`~brainalign._utils.errors.ChecksumError` names the URL
  and both hashes, and ``DEST.part`` is **removed**: its bytes are known to be wrong, so resuming
  from it could never succeed. An interrupted download keeps its ``.part`` so it can resume.
- A destination that already exists and matches the expected checksum (or size, when no checksum
  is known) is kept without any request. One that does not match is downloaded again, with a
  warning, and replaced only once the new copy is verified.

The standard library's :mod:`urllib` does the transfers (no extra dependency). Two processes
downloading the same file at once would both append to the same ``.part``; the checksum catches
the damage, but run one download per file.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, fields
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from brainalign._utils.errors import BrainAlignWarning, ChecksumError
from brainalign._utils.progress import logger
from brainalign._utils.validation import check_positive, suggest
from brainalign.io.manifest import (
    FileSpec,
    Manifest,
    _human,
    _table,
    load_manifest,
    verify_file,
)

__all__ = ["FETCH_STATUSES", "FetchReport", "FetchResult", "download_file", "fetch_dataset"]

#: Outcomes of one file in a :class:`FetchReport`.
FETCH_STATUSES = ("fetched", "skipped", "would_fetch", "failed", "manual")

#: HTTP status codes worth retrying (timeouts, rate limits, server errors).
_RETRY_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Seconds to wait before retry n (n = 1, 2, ...): ``_BACKOFF_S * 2 ** (n - 1)``, at most 30 s.
_BACKOFF_S = 1.0


class _Interrupted(Exception):
    """The transfer stopped before every byte arrived (retried, then reported)."""


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _user_agent() -> str:
    import brainalign

    return f"brainalign/{brainalign.__version__} (+https://github.com/brainalign/brainalign)"


def _check_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    text = str(sha256).strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(
            f"'sha256' must be 64 hexadecimal characters, got {sha256!r}. Give the hex digest "
            "printed by `sha256sum FILE`, or None to skip the check."
        )
    return text


def _matches_expected(path: Path, sha256: str | None, size: int | None) -> tuple[bool, str]:
    spec = FileSpec(path=path.name, sha256=sha256, size=size)
    status, detail, _ = verify_file(path, spec)
    return status == "present", detail


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    resume: bool = True,
    chunk_size: int = 1 << 20,
    timeout: float = 30.0,
    retries: int = 3,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``: resumable, verified, and written atomically.

    See the module docstring for what happens on interruption, on a server that ignores ranges
    and on a checksum mismatch.

    Parameters
    ----------
    url : str
        An http, https, ftp or file URL.
    dest : path-like
        The final file. Its folder is created. ``DEST.part`` holds the bytes until verified.
    sha256 : str | None
        Expected hex SHA-256 of the content; ``None`` skips the check.
    size : int | None
        Expected size in bytes; ``None`` skips the check.
    resume : bool
        Continue an earlier ``DEST.part``; ``False`` starts from scratch.
    chunk_size : int
        Bytes read per iteration.
    timeout : float
        Seconds to wait for the server on connect and on each read.
    retries : int
        How many times to retry (resuming) after a dropped connection, a timeout or a transient
        HTTP error (408, 425, 429, 5xx), with exponential back-off.
    progress : bool
        Show a tqdm progress bar in bytes.

    Returns
    -------
    dest : Path
        The verified file.

    Raises
    ------
    ChecksumError
        If the downloaded size or SHA-256 differs from the expected one (``DEST.part`` removed).
    ConnectionError
        If the transfer is still incomplete after ``retries`` retries (``DEST.part`` kept, so
        calling again resumes).
    OSError
        For HTTP errors that retrying cannot fix (404, 403, ...), naming the URL and status.
    """
    dest = Path(dest).expanduser()
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "ftp://", "file:")):
        raise ValueError(
            f"'url' must be an http(s), ftp or file URL, got {url!r}. For s3:// buckets use the "
            "provider's https endpoint or the commands in the manifest's access notes."
        )
    sha256 = _check_sha256(sha256)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"'size' must be a number of bytes >= 0 or None, got {size!r}.")
    check_positive("chunk_size", chunk_size)
    check_positive("timeout", timeout)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"'retries' must be an integer >= 0, got {retries!r}.")

    if dest.is_dir():
        raise IsADirectoryError(f"'dest' must be a file path, but {str(dest)!r} is a folder.")
    if dest.exists():
        ok, detail = _matches_expected(dest, sha256, size)
        if ok:
            logger.info("%s is already present (%s); not downloading.", dest, detail)
            return dest
        warnings.warn(
            f"{str(dest)!r} exists but does not match the expected file ({detail}); "
            f"downloading it again from {url}. The old file is replaced once the new one is "
            "verified.",
            BrainAlignWarning,
            stacklevel=2,
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    if not resume:
        part.unlink(missing_ok=True)

    attempt = 0
    while True:
        try:
            _transfer(
                url, part, size=size, chunk_size=chunk_size, timeout=timeout, progress=progress
            )
            break
        except urllib.error.HTTPError as err:
            if err.code not in _RETRY_HTTP or attempt >= retries:
                raise OSError(
                    f"Downloading {url} failed: HTTP {err.code} {err.reason}. Check the URL (and "
                    "any access requirement in the manifest's access notes)."
                ) from err
            error: Exception = err
        except (
            _Interrupted,
            urllib.error.URLError,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
        ) as err:
            if attempt >= retries:
                have = part.stat().st_size if part.exists() else 0
                raise ConnectionError(
                    f"Downloading {url} was interrupted ({err}) after {retries} retries; "
                    f"{have} bytes are kept in {str(part)!r}. Run the download again to resume."
                ) from err
            error = err
        attempt += 1
        wait = min(_BACKOFF_S * 2 ** (attempt - 1), 30.0)
        logger.warning(
            "download of %s interrupted (%s); retry %d of %d in %.1f s",
            url,
            error,
            attempt,
            retries,
            wait,
        )
        time.sleep(wait)

    _verify_part(url, part, sha256=sha256, size=size)
    os.replace(part, dest)
    logger.info("downloaded %s to %s", url, dest)
    return dest


def _verify_part(url: str, part: Path, *, sha256: str | None, size: int | None) -> None:
    from brainalign._utils.atomic import file_sha256

    found_size = part.stat().st_size
    if size is not None and found_size != size:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"Size mismatch for {url}: expected {size} bytes, found {found_size}. The partial "
            f"file {str(part)!r} was removed. If the file on the server changed, update the "
            "manifest's size and sha256."
        )
    if sha256 is not None:
        found = file_sha256(part)
        if found != sha256:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"Checksum mismatch for {url}: expected sha256 {sha256}, found {found}. The "
                f"partial file {str(part)!r} was removed; nothing was written to the destination. "
                "Run again to download from scratch; if the file on the server changed, update "
                "the manifest's sha256."
            )


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """Parse ``bytes START-END/TOTAL`` into (START, TOTAL); ``*`` or junk give ``None``."""
    if not header or not header.startswith("bytes "):
        return None, None
    span, _, total = header[6:].partition("/")
    start_text = span.partition("-")[0]
    start = int(start_text) if start_text.strip().isdigit() else None
    return start, int(total) if total.strip().isdigit() else None


def _transfer(
    url: str, part: Path, *, size: int | None, chunk_size: int, timeout: float, progress: bool
) -> None:
    """Bring ``part`` to the full content of ``url``, resuming from its current size."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        logger.info("%s is longer than the expected %d bytes; starting again", part, size)
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        part.touch()  # complete from an earlier call (or empty): verification decides
        return
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # Range not satisfiable: the .part already holds the whole file (or more);
            # verification decides, and a wrong .part is removed there.
            err.close()
            return
        raise
    with response:
        status = getattr(response, "status", None) or 200
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if offset and status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()  # cannot tell which bytes we hold: start again on the next try
                raise _Interrupted(
                    f"the server answered the range request from byte {start}, not {offset}"
                )
            mode = "ab"
        else:
            if offset:
                logger.info("%s ignored the Range request; downloading from the start", url)
            offset = 0
            mode = "wb"
            total = length
        if size is not None and total is not None and total != size:
            raise ChecksumError(
                f"Size mismatch for {url}: the server reports {total} bytes but the expected "
                f"size is {size}. Nothing was downloaded; if the file on the server changed, "
                "update the manifest."
            )
        n_received = 0
        with open(part, mode) as fh, _bar(total, offset, part.name[:-5], progress) as bar:
            while chunk := response.read(chunk_size):
                fh.write(chunk)
                n_received += len(chunk)
                bar.update(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
    if length is not None and n_received < length:
        raise _Interrupted(f"connection closed after {n_received} of {length} bytes")


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _bar(total: int | None, initial: int, desc: str, show: bool) -> Any:
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        leave=False,
    )


# --------------------------------------------------------------------------------------------
# fetching a whole manifest
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchResult:
    """What happened to one manifest entry.

    Attributes
    ----------
    path : str
        The entry's path (relative to the data root).
    status : str
        ``"fetched"``, ``"skipped"`` (already present and verified), ``"would_fetch"`` (dry run),
        ``"failed"`` or ``"manual"`` (no URL: see the access notes).
    url : str | None
        Where it comes from.
    location : Path
        Where it goes.
    n_bytes : int
        Bytes now on disk for fetched files (0 otherwise).
    detail : str
        Why, in words (the error for failures).
    """

    path: str
    status: str
    url: str | None
    location: Path
    n_bytes: int = 0
    detail: str = ""


@dataclass(frozen=True)
class FetchReport:
    """What :func:`fetch_dataset` did; ``str(report)`` is a table plus how to get manual files."""

    name: str
    root: Path
    results: tuple[FetchResult, ...]
    access_text: str = ""
    dry_run: bool = False

    def _with(self, status: str) -> list[FetchResult]:
        return [r for r in self.results if r.status == status]

    @property
    def fetched(self) -> list[FetchResult]:
        """Entries downloaded now."""
        return self._with("fetched")

    @property
    def skipped(self) -> list[FetchResult]:
        """Entries already present and verified."""
        return self._with("skipped")

    @property
    def failed(self) -> list[FetchResult]:
        """Entries whose download failed."""
        return self._with("failed")

    @property
    def manual(self) -> list[FetchResult]:
        """Entries without a URL: the user obtains them as the access notes say."""
        return self._with("manual")

    @property
    def ok(self) -> bool:
        """True when nothing failed and nothing is left to obtain by hand."""
        return not self.failed and not self.manual

    def to_frame(self) -> Any:
        """Return a :class:`pandas.DataFrame` with one row per entry."""
        import pandas as pd

        cols = [f.name for f in fields(FetchResult)]
        frame = pd.DataFrame([{c: getattr(r, c) for c in cols} for r in self.results], columns=cols)
        frame["location"] = frame["location"].astype(str)
        return frame

    def summary(self) -> str:
        """One line: counts per status."""
        counts = [f"{len(self._with(s))} {s.replace('_', ' ')}" for s in FETCH_STATUSES]
        n_bytes = sum(r.n_bytes for r in self.fetched)
        tail = f"; {_human(n_bytes)} downloaded" if n_bytes else ""
        return ", ".join(c for c in counts if not c.startswith("0 ")) + tail

    def __str__(self) -> str:
        head = f"{'Dry run for' if self.dry_run else 'Fetched'} {self.name!r} into {self.root}"
        rows = [(r.status, r.path, r.detail) for r in self.results]
        text = [head, _table(("status", "path", "detail"), rows), self.summary()]
        if self.manual and self.access_text:
            text += ["", f"{len(self.manual)} entries have no download URL.", self.access_text]
        return "\n".join(text)


def _select(m: Manifest, only: str | Iterable[str] | None) -> list[FileSpec]:
    if only is None:
        return list(m.files)
    patterns = [only] if isinstance(only, str) else list(only)
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError(f"'only' must be a string or a list of strings, got {p!r}.")
    chosen = [f for f in m.files if any(f.path == p or fnmatchcase(f.path, p) for p in patterns)]
    unmatched = [
        p for p in patterns if not any(f.path == p or fnmatchcase(f.path, p) for f in m.files)
    ]
    if unmatched:
        paths = [f.path for f in m.files]
        hint = suggest(unmatched[0], paths)
        raise ValueError(
            f"Invalid value for the 'only' parameter: {unmatched!r} matches no file of "
            f"{m.context}.{hint} Its files are: {', '.join(paths)}."
        )
    return chosen


def fetch_dataset(
    manifest: Manifest | str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    only: str | Iterable[str] | None = None,
    dry_run: bool = False,
    checksums: bool = True,
    resume: bool = True,
    timeout: float = 30.0,
    retries: int = 3,
    progress: bool = True,
) -> FetchReport:
    """Download the files a manifest lists with URLs; report what was fetched, skipped or failed.

    Files already present and verified are skipped without a request. A failure does not stop
    the other files; it is reported. Entries without a URL (data behind an agreement, S3 buckets,
    glob patterns) are reported as ``"manual"``, and ``str(report)`` then includes the manifest's
    access notes and commands.

    Parameters
    ----------
    manifest : Manifest | str | path-like
        A manifest, its path or its name.
    root : path-like | None
        The data root; by default the manifest's (see :mod:`brainalign.io.manifest`).
    only : str | list of str | None
        Fetch only the entries whose path equals, or matches the glob of, one of these.
    dry_run : bool
        Report what would be downloaded without downloading.
    checksums : bool
        Verify SHA-256 checksums (of existing files and of downloads); sizes are always checked.
    resume, timeout, retries, progress
        Passed to :func:`download_file`.

    Returns
    -------
    report : FetchReport
        ``report.ok`` is True when nothing failed and nothing needs a manual download.
    """
    m = load_manifest(manifest)
    specs = _select(m, only)
    data_root = m.data_root(root)
    results = []
    for spec in specs:
        url = m.file_url(spec)
        location = m.file_root(spec, root) / spec.path
        if url is None:
            why = "a glob pattern" if spec.is_pattern else "no download URL"
            results.append(
                FetchResult(spec.path, "manual", None, location, detail=f"{why}; see access notes")
            )
            continue
        sha256 = spec.sha256 if checksums else None
        if location.is_file():
            good, detail = _matches_expected(location, sha256, spec.size)
            if good:
                results.append(FetchResult(spec.path, "skipped", url, location, detail=detail))
                continue
        if dry_run:
            what = _human(spec.size) if spec.size is not None else "size unknown"
            results.append(FetchResult(spec.path, "would_fetch", url, location, detail=what))
            continue
        try:
            download_file(
                url,
                location,
                sha256=sha256,
                size=spec.size,
                resume=resume,
                timeout=timeout,
                retries=retries,
                progress=progress,
            )
        except (OSError, ValueError) as err:  # ChecksumError is a ValueError
            logger.warning("could not fetch %s: %s", spec.path, err)
            results.append(FetchResult(spec.path, "failed", url, location, detail=str(err)))
            continue
        n_bytes = location.stat().st_size
        verified = "sha256 verified" if sha256 else "not verified (no checksum)"
        results.append(
            FetchResult(
                spec.path, "fetched", url, location, n_bytes, f"{_human(n_bytes)}, {verified}"
            )
        )
    report = FetchReport(
        name=m.name,
        root=data_root,
        results=tuple(results),
        access_text=m.access_text(root),
        dry_run=dry_run,
    )
    logger.info("fetch %s: %s", m.name, report.summary())
    return report
