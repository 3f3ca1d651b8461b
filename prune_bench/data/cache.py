"""The decoded-data cache: one .npz of uint8 arrays per content, in the user's cache folder
(`data.cache_dir`, set by $PRUNE_BENCH_CACHE; default `<data.root>/cache`), never beside the
source the user pointed at. `fetch` returns the arrays stored for a content, building (decoding)
and storing them the first time.

The key is what the source holds, not where it is (its content digest, sources.py): copies of
the same data share one cache; changed data is decoded again.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_bytes

CACHE_VERSION = 2  # bump when the decoded arrays change for the same source


def cache_path(cache_dir: Path, content: str, dataset: str, kind: str) -> Path:
    return cache_dir / f"{dataset}-{kind}-{content[:32]}.v{CACHE_VERSION}.npz"


def cache_key(content: str, dataset: str, kind: str) -> str:
    """Stored inside the file too, so a renamed or damaged file is never trusted."""
    return f"v{CACHE_VERSION}|{dataset}|{kind}|{content}"


def read_cached(path: Path, key: str) -> dict[str, np.ndarray] | None:
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


def write_cached(path: Path, key: str, arrays: dict[str, np.ndarray]) -> str | None:
    """Save atomically; returns None, or why it could not (the run goes on without a cache)."""
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), **arrays)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:
        return error.strerror or type(error).__name__
    return None


def fetch(cache_dir: Path, content: str, dataset: str, kind: str,
          build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays cached for `content`, or `build()`'s, then stored (a folder that cannot be
    written is a warning: the run goes on without a cache)."""
    path, key = cache_path(cache_dir, content, dataset, kind), cache_key(content, dataset, kind)
    saved = read_cached(path, key)
    if saved is not None:
        return saved
    started = time.perf_counter()
    arrays = build()
    seconds = time.perf_counter() - started
    failed = write_cached(path, key, arrays)
    if failed:
        print(f"decoded in {seconds:.1f} s; warning: could not write the data cache {path} ({failed}); "
              "continuing without it (set data.cache_dir or $PRUNE_BENCH_CACHE to a writable folder)")
    else:
        print(f"decoded in {seconds:.1f} s; cached at {path}", flush=True)
    return arrays
