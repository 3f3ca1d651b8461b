"""Pruner registry and the pruning building blocks."""

from __future__ import annotations

from ..errors import ConfigError
from ..registry import Component
from .base import NoPruner, Pruner, TrainContext
from .magnitude import MAGNITUDE, magnitude_masks
from .masks import MaskSet, select_prunable

PRUNERS = {
    "none": Component(lambda cfg: NoPruner()),
    "magnitude": MAGNITUDE,
}


def build_pruner(cfg) -> Pruner:
    if cfg.name not in PRUNERS:
        raise ConfigError(f"pruner.name: unknown pruner '{cfg.name}'; allowed: {', '.join(PRUNERS)}")
    return PRUNERS[cfg.name].build(cfg)


__all__ = ["PRUNERS", "MaskSet", "magnitude_masks", "NoPruner", "Pruner", "TrainContext", "build_pruner", "select_prunable"]
