"""Named components (optimizers, schedulers, pruners, loggers): a builder, a config check and a
schema each; and the one style every config check is written in: a function of (section,
key, section name, ...) that returns the problems it found, one line each, naming the full key
and what is allowed."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


def _no_problems(cfg) -> list[str]:
    return []


@dataclass(frozen=True)
class Component:
    build: Callable
    validate: Callable = _no_problems  # cfg section -> list of one-line problems
    # a dataclass naming the section's keys and their types; for `custom`, whose target declares
    # its keys, a function of the section's values that returns it
    schema: type | Callable | None = None


def _name(section: str, key: str) -> str:
    """The full key: section.key, or the key alone at the top level (section "")."""
    return f"{section}.{key}" if section else key


def positive(cfg, key: str, section: str) -> list[str]:
    value = cfg.get(key)
    if not _number_value(value) or not value > 0:
        return [f"{_name(section, key)}: must be a number > 0, got {value!r}"]
    return []


def in_range(cfg, key: str, section: str, low: float, high: float, closed_high: bool = False,
             closed_low: bool = True) -> list[str]:
    """[] if cfg[key] lies in the interval, else one line naming it: [low, high) by default."""
    value = cfg.get(key)
    ok = _number_value(value) and (low <= value if closed_low else low < value) and (value <= high if closed_high else value < high)
    if not ok:
        interval = f"{'[' if closed_low else '('}{low}, {high}{']' if closed_high else ')'}"
        return [f"{_name(section, key)}: must be in {interval}, got {value!r}"]
    return []


def _number_value(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(cfg, key: str, section: str) -> list[str]:
    value = cfg.get(key)
    if not _number_value(value) or not math.isfinite(value):
        return [f"{_name(section, key)}: must be a number, got {value!r}"]
    return []


def integer(cfg, key: str, section: str, low: int = 1, allow_none: bool = False) -> list[str]:
    """An integer >= low (low 1: "a positive integer"); with `allow_none`, null too."""
    value = cfg.get(key)
    if value is None and allow_none:
        return []
    if isinstance(value, int) and not isinstance(value, bool) and value >= low:
        return []
    wanted = "a positive integer" if low == 1 else f"an integer >= {low}"
    return [f"{_name(section, key)}: must be {wanted}{' or null' if allow_none else ''}, got {value!r}"]


def boolean(cfg, key: str, section: str) -> list[str]:
    value = cfg.get(key)
    return [] if isinstance(value, bool) else [f"{_name(section, key)}: must be true or false, got {value!r}"]


def choice(cfg, key: str, section: str, allowed) -> list[str]:
    value = cfg.get(key)
    if any(type(value) is type(option) and value == option for option in allowed):
        return []
    names = [str(option).lower() if isinstance(option, bool) else str(option) for option in allowed]
    options = " or ".join(names) if len(names) == 2 else f"one of {', '.join(names)}"
    return [f"{_name(section, key)}: '{value}' is not allowed; use {options}"]
