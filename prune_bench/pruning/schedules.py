"""Sparsity schedules and when pruning events happen (gradual pruning, docs/methods/fggp2024.md).

Time is counted in completed optimizer steps: after the optimizer step of loop step `step`
(0-based), t = step + 1 steps have completed. This is the authors' `train_iter`.
"""

from __future__ import annotations

import math

from ..errors import ConfigError


def cubic_sparsity(t: float, s_init: float, s_final: float, t_start: float, t_end: float) -> float:
    """Zhu & Gupta (2017) cubic schedule, as FGGP uses it:
    s_t = s_f + (s_i - s_f) * (1 - (t - t_start) / (t_end - t_start))^3 inside [t_start, t_end],
    s_i before t_start and s_f from t_end on."""
    if t >= t_end:
        return float(s_final)
    if t <= t_start:
        return float(s_init)
    remaining = 1.0 - (t - t_start) / (t_end - t_start)
    return float(s_final + (s_init - s_final) * remaining**3)


def cosine_rate(t: float, rate: float, rate_final: float, t_total: float) -> float:
    """Cosine annealing from `rate` at t = 0 to `rate_final` at t_total: the FGGP authors'
    CosineDecay over all iterations, the rate of their annealed magnitude-first baseline
    (the "annealing approach" FGGP's fixed rate is compared with)."""
    progress = min(max(t / t_total, 0.0), 1.0) if t_total > 0 else 1.0
    return float(rate_final + (rate - rate_final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def resolve_time(value, total_steps: int, key: str) -> int:
    """A time given as a fraction of training (a float in [0, 1]) or as a step count (an int).
    Fractions round down, as the authors' int(0.8 * total_iter)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: must be a step count (int >= 0) or a fraction of training (float in [0, 1]), got {value!r}")
    if isinstance(value, float):
        return math.floor(value * total_steps + 1e-9)
    if value > total_steps:
        raise ConfigError(f"{key}: step {value} is beyond the run's {total_steps} steps")
    return value


def event_steps(t_start: int, t_end: int, interval: int | None = None, events: int | None = None) -> list[int]:
    """The completed-step counts t at which a pruning event happens: every `interval` steps
    after t_start (t_start + interval, t_start + 2 interval, ...) and always one at t_end, so the
    schedule reaches s_final even when t_end is not a multiple of the interval or the run is
    shorter than one interval. With `events` = n instead, n events evenly spread over
    (t_start, t_end], the last at t_end. t_end = 0 (nothing to wait for) becomes t = 1."""
    t_end = max(t_end, 1)
    t_start = min(t_start, t_end)
    span = t_end - t_start
    if events is not None:
        steps = {t_start + math.ceil(k * span / events) for k in range(1, events + 1)}
    else:
        steps = set(range(t_start + interval, t_end, interval))
    steps.add(t_end)
    return sorted(s for s in steps if s > t_start or s == t_end)
