"""A file-locked device pool: jobs running side by side on one machine (hydra/launcher=joblib)
each take free devices, never `job.num % n_devices` (which puts two long jobs on one GPU while
another GPU idles).

Every device has `runs_per_gpu` slots, each an OS file lock (flock) in `paths.device_locks`.
A job takes `gpus_per_job` slots on distinct devices, trains on the first one, and gives them
back when it ends. The kernel drops a dead process's locks, so a job that crashes, is killed or
loses its worker frees its devices too. A job that finds too few free slots waits. Slots are
tried slot by slot across the devices, so packed runs spread over the GPUs before they share one.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path

from filelock import FileLock, Timeout

from ..registry import integer

POLL_SECONDS = 0.25


def validate_pool(trainer) -> list[str]:
    """Problems of the pool keys in the `trainer` section (one line each)."""
    problems = []
    for key in ("gpus_per_job", "runs_per_gpu"):
        if key in trainer:
            problems += integer(trainer, key, "trainer")
    pool = trainer.get("device_pool", "off")
    if isinstance(pool, str):
        if pool not in ("auto", "off"):
            problems.append(f"trainer.device_pool: '{pool}' is not allowed; use auto, off or a list of devices")
    elif pool is not None:
        devices = list(pool)
        if not devices or not all(isinstance(d, str) and d for d in devices):
            problems.append(f"trainer.device_pool: must be auto, off or a non-empty list of device names, got {devices!r}")
        elif not integer(trainer, "gpus_per_job", "trainer") and trainer.get("gpus_per_job") > len(devices):
            problems.append(f"trainer.gpus_per_job: {trainer.get('gpus_per_job')} but trainer.device_pool has "
                            f"{len(devices)} devices")
    return problems


def pool_devices(trainer, parallel_launcher: bool, cuda_count: int) -> list[str]:
    """The pool's devices: an explicit list, or with `auto` every CUDA device when a launcher
    runs jobs side by side on this machine and the job did not pick a device itself."""
    pool = trainer.get("device_pool", "off")
    if pool is None or pool == "off":
        return []
    if pool == "auto":
        if not parallel_launcher or str(trainer.device) != "auto" or cuda_count == 0:
            return []
        return [f"cuda:{i}" for i in range(cuda_count)]
    return [str(d) for d in pool]


class DevicePool:
    """Devices named by position: a list may name one device twice (a simulated pool, or two
    entries for one GPU), and each entry is its own device."""

    def __init__(self, devices: list[str], runs_per_device: int, lock_dir: Path):
        self.devices = list(devices)
        self.runs_per_device = runs_per_device
        self.lock_dir = Path(os.path.expanduser(str(lock_dir)))

    def _lock(self, index: int, slot: int) -> FileLock:
        # name by device and its occurrence in the list, so [cpu, cpu] is two devices
        name = self.devices[index]
        occurrence = self.devices[:index].count(name)
        return FileLock(str(self.lock_dir / f"{name}#{occurrence}.slot{slot}.lock"), timeout=0)

    def try_acquire(self, n: int) -> list[tuple[int, FileLock]] | None:
        """n slots on distinct devices now, or None (nothing held)."""
        held: list[tuple[int, FileLock]] = []
        for slot in range(self.runs_per_device):
            for index in range(len(self.devices)):
                if len(held) == n:
                    return held
                if any(i == index for i, _ in held):
                    continue
                lock = self._lock(index, slot)
                try:
                    lock.acquire()
                except Timeout:
                    continue
                held.append((index, lock))
        if len(held) == n:
            return held
        for _, lock in held:
            lock.release()
        return None

    @contextlib.contextmanager
    def acquire(self, n: int, log=print):
        """Hold n devices (waiting for them) for the duration of the block; yields their names."""
        if n > len(self.devices):
            raise ValueError(f"{n} devices wanted from a pool of {len(self.devices)}")
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        held = self.try_acquire(n)
        if held is None:
            log(f"waiting for {n} free device(s) of {', '.join(self.devices)}")
            while held is None:
                time.sleep(POLL_SECONDS * (0.5 + random.random()))
                held = self.try_acquire(n)
        try:
            yield [self.devices[index] for index, _ in held]
        finally:
            for _, lock in held:
                lock.release()
