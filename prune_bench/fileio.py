"""Atomic writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


class _RecordingWriter:
    """A file handle that remembers the first write that failed: torch.save reports a failed
    write (a full disk) as a RuntimeError about zip offsets, which says nothing to a user."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def _noted(self, call, *args):
        try:
            return call(*args)
        except OSError as error:
            self.error = self.error or error
            raise

    def write(self, data) -> int:
        return self._noted(self.handle.write, data)

    def flush(self) -> None:
        self._noted(self.handle.flush)

    def finish(self) -> None:
        """Everything written on the disk, then closed."""
        self.flush()
        self._noted(os.fsync, self.handle.fileno())
        self._noted(self.handle.close)


def atomic_write(path: Path, write) -> None:
    """Write through `write(handle)` into a temporary file beside `path`, then rename it over
    `path`. A write that failed (a full disk, a quota) raises its OSError naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    writer = _RecordingWriter(os.fdopen(fd, "wb"))
    try:
        try:
            write(writer)
            writer.finish()
        finally:
            if not writer.handle.closed:
                try:
                    writer.handle.close()
                except OSError:  # its buffer could not be written either: the first failure says why
                    pass
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual file mode
        os.replace(tmp_name, path)
    except BaseException as error:
        Path(tmp_name).unlink(missing_ok=True)
        failed = writer.error
        if failed is not None and isinstance(error, Exception):
            raise OSError(failed.errno, failed.strerror, str(path)) from None
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # tensors, numpy arrays and numpy scalars
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
