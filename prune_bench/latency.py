"""Measured forward latency of a model, and of a dense model against its slimmed version.

A measurement times single forward passes (eval mode, torch.inference_mode) of one fixed batch
after a warm-up, and keeps timing until the median is pinned down: until the distribution-free
95% confidence interval of the median (order statistics) is within `rel_tol` of the median on
either side, or a cap on passes or seconds is reached. A measurement that stops at a cap says so
(`stable: false`, `stop`) and warns (UnstableLatencyWarning); it never claims a precision it did
not reach.

On CPU the passes run at a fixed torch thread count (set for the measurement, restored after) and
are timed with time.perf_counter. On CUDA each pass is timed with a pair of torch.cuda.Events and
waited for before the next starts, so a figure is one request's latency, kernel-launch gaps
included; bf16 autocast and channels_last are options (a model trained so is measured so).

Several models at one batch size are measured in turns (interleaved_latency): each takes a block
of passes lasting about `turn_seconds`, the order alternating round by round, so a change in the
machine's load while they are measured falls on all of them alike. compare_latency measures a
dense model and its slimmed version that way at each batch size and reports the speed-up
dense / slimmed with the range the two confidence intervals allow.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import torch
import torch.nn as nn

CIFAR_IMAGE_SHAPE = (3, 32, 32)  # every dataset this project trains on (CIFAR-10/100, synthetic)
CONFIDENCE = 0.95  # of the median's interval that decides stability

WARMUP_PASSES = 3  # untimed forward passes per model and batch size before the timed ones


class UnstableLatencyWarning(RuntimeWarning):
    """A latency measurement stopped at a cap before its median's interval was within tolerance."""


@dataclass
class Latency:
    """One model's forward latency at one batch size. Times are milliseconds per forward pass
    of the whole batch."""

    median_ms: float
    ci_low_ms: float  # the 95% confidence interval of the median (nan: too few passes for one)
    ci_high_ms: float
    ci_half_width_pct: float  # (ci_high - ci_low) / 2 / median, in percent (inf without an interval)
    min_ms: float
    p10_ms: float
    p90_ms: float
    max_ms: float
    repeats: int  # timed passes
    warmup: int  # untimed passes before them
    batch_size: int
    device: str
    threads: int  # torch's CPU thread count during the measurement
    precision: str  # "fp32" or "bf16-autocast"
    channels_last: bool
    timer: str  # "perf_counter" (CPU) or "cuda-event"
    stable: bool  # ci_half_width_pct <= tolerance_pct
    stop: str  # why timing stopped: "stable", "repeat cap" or "time cap"
    tolerance_pct: float  # rel_tol, in percent
    seconds: float  # wall time spent timing this model (its turns; warm-up excluded)
    samples_ms: list[float] = field(default_factory=list, repr=False)  # every timed pass, in order

    @property
    def images_per_s(self) -> float:
        return 1e3 * self.batch_size / self.median_ms

    def as_dict(self, samples: bool = False) -> dict:
        """The fields as plain values (for JSON), `samples_ms` only when asked for."""
        values = asdict(self)
        if not samples:
            values.pop("samples_ms")
        values["images_per_s"] = self.images_per_s
        return values


@dataclass
class LatencyComparison:
    """A dense model against its slimmed version at one batch size, measured in turns."""

    batch_size: int
    dense: Latency
    slimmed: Latency
    speedup: float  # dense median / slimmed median
    speedup_low: float  # dense ci_low / slimmed ci_high (nan where either has no interval)
    speedup_high: float  # dense ci_high / slimmed ci_low
    stable: bool  # both measurements stable

    def as_dict(self, samples: bool = False) -> dict:
        return {"batch_size": self.batch_size, "dense": self.dense.as_dict(samples),
                "slimmed": self.slimmed.as_dict(samples), "speedup": self.speedup,
                "speedup_low": self.speedup_low, "speedup_high": self.speedup_high, "stable": self.stable}


# ----------------------------------------------------------------------------- statistics


def median_confidence_interval(samples: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The distribution-free confidence interval of the median: the order statistics x_(j) and
    x_(n+1-j) (1-based, sorted), j the largest rank with P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2.
    None when there are too few samples for any (fewer than 6 at 95%)."""
    n = len(samples)
    tail_limit = Fraction(1 - confidence).limit_denominator(10**6) / 2 * 2**n  # in units of 2^-n
    rank, below = 0, 0  # below: the number of outcomes (out of 2^n) with fewer than `rank` successes
    while rank < n and below + math.comb(n, rank) <= tail_limit:
        below += math.comb(n, rank)
        rank += 1
    if rank == 0:
        return None
    ordered = sorted(samples)
    return ordered[rank - 1], ordered[n - rank]


def summarize(samples_ms: list[float], rel_tol: float, confidence: float = CONFIDENCE) -> dict:
    """Median, its interval and half-width, spread and stability of a list of pass times."""
    median = statistics.median(samples_ms)
    interval = median_confidence_interval(samples_ms, confidence)
    if interval is None:
        low = high = math.nan
        half_width_pct = math.inf
    else:
        low, high = interval
        half_width_pct = 100.0 * (high - low) / 2 / median if median > 0 else math.inf
    deciles = statistics.quantiles(samples_ms, n=10, method="inclusive") if len(samples_ms) > 1 else samples_ms * 9
    return {"median_ms": median, "ci_low_ms": low, "ci_high_ms": high, "ci_half_width_pct": half_width_pct,
            "min_ms": min(samples_ms), "p10_ms": deciles[0], "p90_ms": deciles[-1], "max_ms": max(samples_ms),
            "stable": half_width_pct <= 100.0 * rel_tol}


# ----------------------------------------------------------------------------- timing


def _memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last when the model's 4-D weights are stored so, else the default format."""
    for p in model.parameters():
        if p.dim() == 4 and min(p.shape) > 1:
            channels_last = p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
            return torch.channels_last if channels_last else torch.contiguous_format
    return torch.contiguous_format


def _model_device(model: nn.Module) -> torch.device | None:
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return None


@contextlib.contextmanager
def measurement_settings(models: list[nn.Module], device: torch.device, threads: int | None, channels_last: bool):
    """Eval mode, `threads` CPU threads and (when asked) channels_last weights for the duration;
    each model's train/eval mode, its memory format and the thread count restored after."""
    threads_before = torch.get_num_threads()
    modes = [model.training for model in models]
    formats = [_memory_format(model) for model in models]
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for model in models:
            model.eval()
            if channels_last:
                model.to(memory_format=torch.channels_last)
        yield
    finally:
        for model, training, memory_format in zip(models, modes, formats):
            model.train(training)
            if channels_last and memory_format != torch.channels_last:
                model.to(memory_format=memory_format)
        torch.set_num_threads(threads_before)


class PassTimer:
    """Times forward passes of one model on one fixed batch (settings already in force)."""

    def __init__(self, model: nn.Module, batch: torch.Tensor, device: torch.device, bf16: bool):
        self.model, self.batch, self.device, self.bf16 = model, batch, device, bf16
        self.samples_ms: list[float] = []
        self.seconds = 0.0

    def _forward(self) -> None:
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            self.model(self.batch)

    def warm_up(self, passes: int) -> float:
        """Run `passes` untimed passes; returns the seconds of the last (an estimate of one pass)."""
        last = 0.0
        for _ in range(passes):
            started = time.perf_counter()
            self._forward()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            last = time.perf_counter() - started
        return last

    def time_passes(self, passes: int) -> None:
        started = time.perf_counter()
        for _ in range(passes):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                self._forward()
                end.record()
                end.synchronize()
                self.samples_ms.append(start.elapsed_time(end))
            else:
                pass_started = time.perf_counter()
                self._forward()
                self.samples_ms.append(1e3 * (time.perf_counter() - pass_started))
        self.seconds += time.perf_counter() - started


def _check_options(warmup: int, min_repeats: int, max_repeats: int, max_seconds: float, rel_tol: float,
                   threads: int | None, batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if warmup < 1 or min_repeats < 2 or max_repeats < min_repeats:
        raise ValueError(f"need warmup >= 1 and 2 <= min_repeats <= max_repeats, got warmup={warmup}, "
                         f"min_repeats={min_repeats}, max_repeats={max_repeats}")
    if not max_seconds > 0 or not rel_tol > 0:
        raise ValueError(f"max_seconds and rel_tol must be > 0, got {max_seconds} and {rel_tol}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")


def interleaved_latency(models: dict[str, nn.Module], image_shape: tuple[int, ...], batch_size: int,
                        device: torch.device | str, threads: int | None = None, bf16: bool = False,
                        channels_last: bool = False, warmup: int = WARMUP_PASSES, min_repeats: int = 10,
                        max_repeats: int = 1000, max_seconds: float = 20.0, rel_tol: float = 0.02,
                        turn_seconds: float = 0.05, seed: int = 0) -> dict[str, Latency]:
    """The forward latency of each model at `batch_size`, the models timed in turns.

    Each model runs `warmup` untimed passes (the last one sizes its turns), then the models take
    turns of about `turn_seconds` (at least one pass), the first model alternating each round,
    until each model is done: it has at least `min_repeats` passes and its median is stable (the
    95% interval within `rel_tol` of it either side) or it reached `max_repeats` passes or
    `max_seconds` of timed turns. A model that is done keeps taking its turns (below
    `max_repeats`) while others are not, so load changes still fall on all. `threads`: the CPU
    thread count to measure at (None: the current one). The models must be on `device`; the
    input is a seeded standard-normal batch. An unstable result warns (UnstableLatencyWarning)."""
    device = torch.device(device)
    _check_options(warmup, min_repeats, max_repeats, max_seconds, rel_tol, threads, batch_size)
    for name, model in models.items():
        where = _model_device(model)
        if where is not None and (where.type != device.type or (device.index is not None and where != device)):
            raise ValueError(f"model '{name}' is on {where}, not {device}; move it there first")
    generator = torch.Generator().manual_seed(seed)
    batch = torch.randn((batch_size, *image_shape), generator=generator).to(device)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    with measurement_settings(list(models.values()), device, threads, channels_last):
        threads_used = torch.get_num_threads()
        timers = {name: PassTimer(model, batch, device, bf16) for name, model in models.items()}
        passes_per_turn = {name: max(1, round(turn_seconds / max(timer.warm_up(warmup), 1e-9)))
                           for name, timer in timers.items()}
        order = list(timers)

        def stop_reason(timer: PassTimer) -> str | None:
            repeats = len(timer.samples_ms)
            if repeats < min_repeats:
                return None
            if summarize(timer.samples_ms, rel_tol)["stable"]:
                return "stable"
            if repeats >= max_repeats:
                return "repeat cap"
            return "time cap" if timer.seconds >= max_seconds else None

        while True:
            for name in order:
                timer = timers[name]
                timer.time_passes(min(passes_per_turn[name], max_repeats - len(timer.samples_ms)))
            order.reverse()
            stops = {name: stop_reason(timer) for name, timer in timers.items()}
            if all(stops.values()):
                break
    results = {}
    for name, timer in timers.items():
        summary = summarize(timer.samples_ms, rel_tol)
        results[name] = Latency(
            **summary, repeats=len(timer.samples_ms), warmup=warmup, batch_size=batch_size,
            device=str(device), threads=threads_used, precision="bf16-autocast" if bf16 else "fp32",
            channels_last=channels_last, timer="cuda-event" if device.type == "cuda" else "perf_counter",
            stop=stops[name], tolerance_pct=100.0 * rel_tol, seconds=timer.seconds,
            samples_ms=list(timer.samples_ms))
        if not summary["stable"]:
            warnings.warn(f"latency of '{name}' at batch {batch_size}: not stable ({stops[name]} after "
                          f"{len(timer.samples_ms)} passes, {timer.seconds:.1f} s): the median's 95% interval is "
                          f"+-{summary['ci_half_width_pct']:.1f}%, above the {100 * rel_tol:g}% asked for",
                          UnstableLatencyWarning, stacklevel=2)
    return results


def forward_latency(model: nn.Module, image_shape: tuple[int, ...], batch_size: int, device: torch.device | str,
                    threads: int | None = None, bf16: bool = False, channels_last: bool = False,
                    **options) -> Latency:
    """The forward latency of one model at `batch_size` (options: those of interleaved_latency)."""
    return interleaved_latency({"model": model}, image_shape, batch_size, device, threads, bf16, channels_last,
                               **options)["model"]


def compare_latency(dense: nn.Module, slimmed: nn.Module, image_shape: tuple[int, ...], device: torch.device | str,
                    batch_sizes: tuple[int, ...] = (1, 256), **options) -> dict[int, LatencyComparison]:
    """Dense against slimmed at each batch size, the two timed in turns (options: those of
    interleaved_latency: threads, bf16, channels_last, caps, tolerance)."""
    comparisons = {}
    for batch_size in batch_sizes:
        measured = interleaved_latency({"dense": dense, "slimmed": slimmed}, image_shape, batch_size, device,
                                       **options)
        first, second = measured["dense"], measured["slimmed"]
        comparisons[batch_size] = LatencyComparison(
            batch_size, first, second, speedup=first.median_ms / second.median_ms,
            speedup_low=first.ci_low_ms / second.ci_high_ms, speedup_high=first.ci_high_ms / second.ci_low_ms,
            stable=first.stable and second.stable)
    return comparisons
