"""Exception and warning types raised by brainalign.

Every user-facing error is a subclass of the builtin type a Python user expects (``ValueError``,
``FileNotFoundError`` …) so that ``except ValueError`` keeps working, and carries a message that
names the parameter or file, the value that was found and the fix.
"""

from __future__ import annotations

__all__ = [
    "BrainAlignDeprecationWarning",
    "BrainAlignWarning",
    "ChecksumError",
    "CorruptFileError",
    "ManifestError",
]


class BrainAlignWarning(UserWarning):
    """A warning about data that was changed or dropped on the user's behalf."""


class BrainAlignDeprecationWarning(DeprecationWarning):
    """A deprecated brainalign behaviour (turned into an error in the test suite)."""


class CorruptFileError(ValueError):
    """A file exists but cannot be read as the format it claims to be (truncated, damaged)."""


class ChecksumError(ValueError):
    """A file's content does not match the checksum its manifest records."""


class ManifestError(ValueError):
    """A dataset manifest is malformed: unknown keys, wrong types, unsafe paths."""
