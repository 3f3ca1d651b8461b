"""Pruner registry and the pruning building blocks."""

from __future__ import annotations

from ..errors import ConfigError
from ..registry import Component
from .base import NoPruner, Pruner, TrainContext
from .masks import MaskSet, select_prunable

PRUNERS = {
    "none": Component(lambda cfg: NoPruner()),
}


def build_pruner(cfg) -> Pruner:
    if cfg.name not in PRUNERS:
        raise ConfigError(f"pruner.name: unknown pruner '{cfg.name}'; allowed: {', '.join(PRUNERS)}")
    return PRUNERS[cfg.name].build(cfg)


__all__ = ["PRUNERS", "MaskSet", "NoPruner", "Pruner", "TrainContext", "build_pruner", "select_prunable"]
