"""Pruner registry and the pruning building blocks. `custom` builds any Pruner subclass named
by import path (`pruner.target`), with the keys and checks the class declares."""

from __future__ import annotations

import dataclasses
import typing

from ..errors import ConfigError
from ..registry import Component
from ..targets import CUSTOM, resolve_subclass
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


def custom_pruner_class(target) -> type[Pruner]:
    return resolve_subclass("pruner.target", target, Pruner, "prune_bench.pruning.Pruner")


def custom_pruner_schema(section: dict) -> type:
    """The keys of a custom pruner's section: name, target and those of the dataclass its class
    declares as `schema` (none if it declares none)."""
    pruner = custom_pruner_class(section.get("target"))
    schema = getattr(pruner, "schema", None)
    if schema is not None and not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        raise ConfigError(f"pruner.target: {pruner.__name__}.schema must be a dataclass of its keys and their types")
    own = typing.get_type_hints(schema) if schema is not None else {}
    fields = {"name": str, "target": str | None}
    fields.update({key: kind for key, kind in own.items() if key not in fields})
    return dataclasses.make_dataclass(f"{pruner.__name__}Section", list(fields.items()))


def _check_custom(cfg) -> list[str]:
    """The class's own `check(section)` (one-line problems), if it declares one."""
    check = getattr(custom_pruner_class(cfg.target), "check", None)
    return list(check(cfg)) if check is not None else []


PRUNERS = {
    "none": Component(lambda cfg: NoPruner(), schema=NoPrunerSection),
    "magnitude": MAGNITUDE,
    "gmp": Component(GradualPruner, check_gradual, schema=GMPSection),
    "fggp": Component(FGGPPruner, check_fggp, schema=FGGPSection),
    "magfirst": Component(MagnitudeFirstPruner, check_magfirst, schema=MagFirstSection),
    "dpm": DPM,
    CUSTOM: Component(lambda cfg: custom_pruner_class(cfg.target)(cfg), _check_custom, schema=custom_pruner_schema),
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
    "StageSpec", "TrainContext", "build_pruner", "cubic_sparsity", "custom_pruner_schema", "erk_densities", "erk_masks",
    "fggp_masks", "gmp_layer_masks", "gmp_masks", "magfirst_masks", "magnitude_masks", "pruner_model_check", "select_prunable",
]
