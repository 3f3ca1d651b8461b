"""Timing helpers every benchmark shares: seconds per call (the median of blocks, after a
warm-up), calls timed in turns (interleaved, the fastest block), and the device synchronised
before a clock is read."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], object], device: torch.device, calls: int, warmup: int = 3,
                     repeats: int = 3) -> float:
    """Median over `repeats` blocks of `calls` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    blocks = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        synchronize(device)
        blocks.append((time.perf_counter() - started) / calls)
    return statistics.median(blocks)


def interleaved_blocks(fns: dict[str, Callable[[], object]], device: torch.device, calls: int, rounds: int,
                       warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each fn in each of `rounds` blocks of `calls` calls, the fns taking turns
    block by block (after `warmup` calls and one timed call of each), so slow drifts in the
    machine's load reach every fn alike."""
    blocks = {name: [] for name in fns}
    for fn in fns.values():
        seconds_per_call(fn, device, calls=1, warmup=warmup, repeats=1)
    for _ in range(rounds):
        for name, fn in fns.items():
            blocks[name].append(seconds_per_call(fn, device, calls, warmup=0, repeats=1))
    return blocks


def interleaved_seconds(fns: dict[str, Callable[[], object]], device: torch.device, calls: int,
                        rounds: int) -> dict[str, float]:
    """Seconds per call of each fn: the fastest of its interleaved blocks. Other work on a shared
    machine only ever adds time, so the fastest block is the best estimate of each fn's own cost."""
    return {name: min(times) for name, times in interleaved_blocks(fns, device, calls, rounds).items()}
