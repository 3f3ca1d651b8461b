"""Pruner registry and the pruning building blocks."""

from __future__ import annotations

from ..errors import ConfigError
from ..registry import Component
from .base import NoPruner, NoPrunerSection, Pruner, StageSpec, TrainContext
from .dpm import DPM, DPMPruner, check_dpm_model
from .erk import erk_densities, erk_masks
from .gradual import (
    FGGPPruner,
    FGGPSection,
    GMPSection,
    GradualPruner,
    MagFirstSection,
    MagnitudeFirstPruner,
    check_fggp,
    check_gradual,
    check_magfirst,
    fggp_masks,
    gmp_layer_masks,
    gmp_masks,
    magfirst_masks,
)
from .magnitude import MAGNITUDE, magnitude_masks
from .masks import MaskSet, select_prunable
from .schedules import cubic_sparsity

PRUNERS = {
    "none": Component(lambda cfg: NoPruner(), schema=NoPrunerSection),
    "magnitude": MAGNITUDE,
    "gmp": Component(GradualPruner, check_gradual, schema=GMPSection),
    "fggp": Component(FGGPPruner, check_fggp, schema=FGGPSection),
    "magfirst": Component(MagnitudeFirstPruner, check_magfirst, schema=MagFirstSection),
    "dpm": DPM,
}

# Pruner checks that need the model (built on the meta device by config.validate).
MODEL_CHECKS = {"dpm": check_dpm_model}


def pruner_model_check(cfg, model) -> list[str]:
    check = MODEL_CHECKS.get(cfg.pruner.name)
    return check(cfg, model) if check else []


def build_pruner(cfg) -> Pruner:
    if cfg.name not in PRUNERS:
        raise ConfigError(f"pruner.name: unknown pruner '{cfg.name}'; allowed: {', '.join(PRUNERS)}")
    return PRUNERS[cfg.name].build(cfg)


__all__ = [
    "PRUNERS", "DPMPruner", "FGGPPruner", "GradualPruner", "MagnitudeFirstPruner", "MaskSet", "NoPruner", "Pruner",
    "StageSpec", "TrainContext", "build_pruner", "cubic_sparsity", "erk_densities", "erk_masks", "fggp_masks",
    "gmp_layer_masks", "gmp_masks", "magfirst_masks", "magnitude_masks", "pruner_model_check", "select_prunable",
]
