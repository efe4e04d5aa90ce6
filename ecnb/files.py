"""Writing a file so that a crash leaves it complete or absent, and the error for one that is unreadable: what
every writer of a run directory shares (`ecnb.artifacts`, `ecnb.results`), below both."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


class ArtifactError(RuntimeError):
    """A file in the run directory is unreadable; the message names it and how to recompute it."""


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place.

    The rename is atomic on POSIX, so readers (and a later resumed run) see the old file or the new
    one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; artifacts are ordinary files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def remove_temporaries(root: str | Path) -> None:
    """Delete the temporary files that `atomic_write`s killed mid-write left under `root`.

    Nothing reads them (readers open final names only); this keeps a run directory from filling up
    after crashes. Call it only while no writer is running (the study holds its lock).
    """
    for path in Path(root).rglob(".*.tmp"):
        path.unlink()
