"""The decoded-data cache: one .npz of uint8 arrays per content, in the user's cache folder
(`data.cache_dir`, set by $PRUNE_BENCH_CACHE; default `<data.root>/cache`), never beside the
source the user pointed at.

The key is what the source holds, not where it is: an archive's sha256, and for a folder a
sha256 over its files' relative paths, sizes and bytes. Copies of the same data share one
cache; changed data is decoded again.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from .fileio import atomic_write_bytes

CACHE_VERSION = 2  # bump when the decoded arrays change for the same source
CHUNK = 1 << 20


def file_digests(path: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
    """{algorithm: hex digest} of a file's bytes, read once."""
    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def folder_digest(folder: Path) -> str:
    """sha256 over every file under `folder`: its path relative to the folder, size and bytes,
    in sorted order (so the same tree anywhere has the same digest)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


def cache_path(cache_dir: Path, content: str, dataset: str, kind: str) -> Path:
    return cache_dir / f"{dataset}-{kind}-{content[:32]}.v{CACHE_VERSION}.npz"


def cache_key(content: str, dataset: str, kind: str) -> str:
    """Stored inside the file too, so a renamed or damaged file is never trusted."""
    return f"v{CACHE_VERSION}|{dataset}|{kind}|{content}"


def read(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays saved under `key`, or None (no cache, another key, or damaged: decode again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            return {name: npz[name] for name in npz.files if name != "key"}
    except Exception:  # a damaged cache is rebuilt, never trusted
        return None


def write(path: Path, key: str, arrays: dict[str, np.ndarray]) -> str | None:
    """Save atomically; returns None, or why it could not (the run goes on without a cache)."""
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), **arrays)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:
        return error.strerror or type(error).__name__
    return None
