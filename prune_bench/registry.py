"""Named components (optimizers, schedulers, pruners): a builder and a config check each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _no_problems(cfg) -> list[str]:
    return []


@dataclass(frozen=True)
class Component:
    build: Callable
    validate: Callable = _no_problems  # cfg section -> list of one-line problems
    schema: type | None = None  # a dataclass naming the section's keys and their types


def positive(cfg, key: str, section: str) -> list[str]:
    value = cfg.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        return [f"{section}.{key}: must be a number > 0, got {value!r}"]
    return []


def in_range(cfg, key: str, section: str, low: float, high: float, closed_high: bool = False,
             closed_low: bool = True) -> list[str]:
    """[] if cfg[key] lies in the interval, else one line naming it: [low, high) by default."""
    value = cfg.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (low <= value if closed_low else low < value) and (value <= high if closed_high else value < high)
    if not ok:
        interval = f"{'[' if closed_low else '('}{low}, {high}{']' if closed_high else ')'}"
        return [f"{section}.{key}: must be in {interval}, got {value!r}"]
    return []
