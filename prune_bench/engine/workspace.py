"""What a run creates under the runs folder, taken back when the run fails early, and write
failures there turned into one line.

A run creates, when missing, the runs folder, `.locks/` with a lock file, its own folder (and,
for one-shot pruners, a shared training folder under `.trained/`). When it fails before one of
its folders holds something worth keeping (a checkpoint to resume from, a trained model, a
record), everything this process created is removed again: a failed command leaves the runs
folder as it found it. Nothing that existed before is removed, a container folder (the runs
folder, `.locks/`, `.trained/`) only when it is empty, so concurrent runs sharing the runs
folder keep theirs.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from ..errors import PruneBenchError
from ..layout import WORTH_KEEPING

# write errors that no path explains better than "this folder cannot be written"
_FULL = (errno.ENOSPC, errno.EDQUOT)
_NO_ROOM = (*_FULL, errno.EROFS)


class Created:
    """Paths this process created, in order, and their removal after a failure."""

    def __init__(self) -> None:
        self.containers: list[Path] = []  # removed only when empty
        self.folders: list[Path] = []  # a run's own folders: removed unless worth keeping
        self.files: list[Path] = []  # lock files

    def _mkdir(self, folder: Path) -> list[Path]:
        missing = [path for path in (folder, *folder.parents) if not path.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        return missing[::-1]  # outermost first

    def container(self, folder: Path) -> Path:
        self.containers += self._mkdir(folder)
        return folder

    def folder(self, folder: Path) -> Path:
        missing = self._mkdir(folder)  # its missing parents, then itself
        self.containers += missing[:-1]
        self.folders += missing[-1:]
        return folder

    def lock(self, path: Path) -> FileLock:
        """The lock file at `path` (layout.lock_path), its folder made when missing."""
        self.container(path.parent)
        if not path.exists():
            self.files.append(path)
        return FileLock(str(path))

    def remove_unfinished(self) -> None:
        """Remove what this process created and nothing worth keeping depends on."""
        for folder in reversed(self.folders):
            if not any(next(folder.rglob(name), None) for name in WORTH_KEEPING):
                shutil.rmtree(folder, ignore_errors=True)
        for path in reversed(self.files):
            try:
                path.unlink(missing_ok=True)
            except OSError:  # a read-only runs folder: the failure it explains is the one to report
                pass
        for folder in reversed(self.containers):
            try:
                folder.rmdir()
            except OSError:  # not empty (another run's, or kept above), already gone, or read-only
                pass


def inside(path, folder: Path) -> bool:
    """Whether `path` (a str, bytes or Path; None: no) is `folder` or lies under it."""
    if path is None:
        return False
    path, folder = os.path.abspath(os.fsdecode(path)), os.path.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def what_to_do(error: OSError, key: str) -> str:
    """What a user does about a folder (set by `key`) that could not be written."""
    if error.errno in _FULL:
        return f"free some space there or set {key} to a folder with room"
    return f"set {key} to a writable folder"


def unwritable(error: OSError, runs_dir: Path) -> PruneBenchError | None:
    """One line for a failed write under the runs folder (read-only, a file in the way, full
    disk), or None for an error that is not about it."""
    if not (inside(error.filename, runs_dir) or (error.filename is None and error.errno in _NO_ROOM)):
        return None
    reason = error.strerror or type(error).__name__
    where = f": {error.filename}" if error.filename is not None else ""
    return PruneBenchError(
        f"paths.runs_dir: cannot write in {runs_dir} ({reason}{where}); {what_to_do(error, 'paths.runs_dir')}"
    )


def ensure_writable(folder: Path, key: str) -> None:
    """Make `folder` and write a page to a file there (then remove it), or raise one line naming
    `key`: permission bits alone do not tell (root ignores them; a read-only mount does not),
    nor does making an empty file (a full disk allows it)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(bytes(4096))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise PruneBenchError(f"{key}: cannot write in {folder} ({error.strerror or type(error).__name__}); "
                              f"{what_to_do(error, key)}") from None
