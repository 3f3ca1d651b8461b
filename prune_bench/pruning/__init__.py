"""Pruner registry and the pruning building blocks."""

from __future__ import annotations

from ..errors import ConfigError
from ..registry import Component
from .base import NoPruner, Pruner, TrainContext
from .dpm import DPM, DPMPruner, check_dpm_model
from .erk import erk_densities, erk_masks
from .gradual import FGGPPruner, GradualPruner, check_fggp, check_gradual, fggp_masks, gmp_masks
from .magnitude import MAGNITUDE, magnitude_masks
from .masks import MaskSet, select_prunable
from .schedules import cubic_sparsity
from .shapes import load_pruned_model

PRUNERS = {
    "none": Component(lambda cfg: NoPruner()),
    "magnitude": MAGNITUDE,
    "gmp": Component(GradualPruner, check_gradual),
    "fggp": Component(FGGPPruner, check_fggp),
    "dpm": DPM,
}

# Checks of a pruner section that need the rest of the config (e.g. the model).
CROSS_CHECKS = {"dpm": check_dpm_model}


def cross_check(cfg) -> list[str]:
    check = CROSS_CHECKS.get(cfg.pruner.name)
    return check(cfg) if check else []


def build_pruner(cfg) -> Pruner:
    if cfg.name not in PRUNERS:
        raise ConfigError(f"pruner.name: unknown pruner '{cfg.name}'; allowed: {', '.join(PRUNERS)}")
    return PRUNERS[cfg.name].build(cfg)


__all__ = [
    "PRUNERS", "DPMPruner", "FGGPPruner", "GradualPruner", "MaskSet", "NoPruner", "Pruner", "TrainContext",
    "build_pruner", "cross_check", "cubic_sparsity", "erk_densities", "erk_masks", "fggp_masks", "gmp_masks",
    "load_pruned_model", "magnitude_masks", "select_prunable",
]
