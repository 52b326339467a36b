"""Errors in what the user gave (a config, a path, a service address), as opposed to errors in the program.

The command line prints a :class:`UserError` as its one-line message with exit status 2 and no traceback
(``rlpost --debug ...`` shows it); every other exception keeps its traceback. So raise a subclass where the
program finds the user's mistake, before any heavy start, and let the message name the culprit and the fix.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A run that cannot start because of its input; the message names the field or path and the fix."""


class MissingPathError(UserError, FileNotFoundError):
    """A file or folder the user named is missing or is not what the field needs."""


class UnreachableServiceError(UserError, ConnectionError):
    """A service the config points at (Redis, a Ray cluster) does not answer."""


def require_checkpoint(path: str | Path, field: str) -> Path:
    """``path`` as a Path if it is a checkpoint folder (``config.json`` inside, as ``save_pretrained`` writes);
    otherwise a :class:`MissingPathError` naming ``field``, raised before ``from_pretrained`` mistakes the path for
    a Hugging Face hub repo id."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        why = "does not exist" if not folder.exists() else "has no config.json"
        raise MissingPathError(f"{field}: {str(path)!r} {why}; give a checkpoint folder written by `rlpost sft` "
                               "or `rlpost train`, such as runs/sft/final")
    return folder
