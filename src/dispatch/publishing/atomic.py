"""Files replaced atomically: a reader sees the old file or the new one, never a mix.

Used for the intranet copy (publish) and the records export (export).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

TEMP_PREFIX = ".publishing-"
PAGE_MODE = 0o644  # mkstemp creates 0600; the web server (another user) must read the page
EXPORT_MODE = 0o600  # an export holds a recipient list with names and addresses: its owner's only

Replace = Callable[[str | os.PathLike[str], str | os.PathLike[str]], None]


def write_atomic(path: Path, data: bytes, *, replace: Replace = os.replace, mode: int = PAGE_MODE) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old or the new file, never
    a mix. The temporary file is in the same directory (a rename across file systems is
    not atomic) and is fsynced before the rename, so a power cut cannot leave an empty
    page behind the new name. ``replace`` is injectable so tests can interrupt here.
    The file gets ``mode`` (PAGE_MODE, or EXPORT_MODE for exports); the rename replaces
    a symbolic link at ``path`` rather than writing through it."""
    descriptor, temp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            # Before the data: the file never holds it with other permissions than ``mode``.
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        replace(temp, path)
    except BaseException:
        # Also on KeyboardInterrupt: the previous file is untouched; drop the half-made one.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems (e.g. some network mounts) refuse fsync on a directory
    finally:
        os.close(descriptor)
