"""Learning-rate schedules, stepped once per iteration (a LambdaLR over the step count). Each
entry builds the lr factor of a step count; `custom` calls a function named by import path
(`scheduler.target`) that builds it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError, first_line
from ..registry import Component, choice, in_range
from ..targets import CUSTOM, check_arguments, keyword_arguments, resolve_callable


def _milestone_steps(cfg, steps_per_epoch: int, epochs: int) -> list[int]:
    if cfg.get("milestones_unit", "fraction") == "fraction":  # the nearest epoch, halves up (0.5 x 5 -> 3)
        return [math.floor(m * epochs + 0.5) * steps_per_epoch for m in cfg.milestones]
    return [int(m) * steps_per_epoch for m in cfg.milestones]


def constant(cfg, steps_per_epoch: int, epochs: int):
    return lambda step: 1.0


def multistep(cfg, steps_per_epoch: int, epochs: int):
    """lr x gamma at each milestone (an epoch boundary; milestones as fractions of training or epochs)."""
    boundaries = _milestone_steps(cfg, steps_per_epoch, epochs)
    return lambda step: cfg.gamma ** sum(step >= b for b in boundaries)


def cosine(cfg, steps_per_epoch: int, epochs: int):
    total = steps_per_epoch * epochs
    floor = cfg.get("final_factor", 0.0)
    return lambda step: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def grda_piecewise(cfg, steps_per_epoch: int, epochs: int):
    """gRDA's CIFAR schedule (Chao et al. 2020, authors' code; docs/methods/grda2020.md): with r = e/E
    for epoch e of E, factor 1 while r <= hold, then linear down to `final_factor` at r = end,
    then `final_factor`. The authors number epochs from 1 (e = 1..E, so the last epoch has r = 1);
    `first_epoch: 0` numbers them from 0 instead. `per_epoch` (default, as the authors) holds the
    factor within an epoch; otherwise e grows by 1/steps_per_epoch every step."""
    first_epoch = cfg.get("first_epoch", 1)

    def factor(step: int) -> float:
        epoch = (step // steps_per_epoch if cfg.per_epoch else step / steps_per_epoch) + first_epoch
        progress = epoch / epochs
        if progress <= cfg.hold:
            return 1.0
        if progress <= cfg.end:
            return 1.0 - (1.0 - cfg.final_factor) * (progress - cfg.hold) / (cfg.end - cfg.hold)
        return cfg.final_factor

    return factor


def custom(cfg, steps_per_epoch: int, epochs: int):
    """`scheduler=custom`: target(steps_per_epoch=..., epochs=..., **kwargs) returns the lr factor
    of a step count, as the schedules above do."""
    make = resolve_callable("scheduler.target", cfg.get("target"))
    return make(steps_per_epoch=steps_per_epoch, epochs=epochs, **keyword_arguments(cfg))


def _check_custom(cfg) -> list[str]:
    """The target takes steps_per_epoch, epochs and the kwargs, and what it returns gives a
    number for step 0 (tried on a run of 2 epochs of 10 steps)."""
    try:
        make = resolve_callable("scheduler.target", cfg.get("target"))
        check_arguments("scheduler", make, cfg.target, keyword_arguments(cfg), ("steps_per_epoch", "epochs"))
    except ConfigError as error:
        return [str(error)]
    try:
        factor = float(custom(cfg, 10, 2)(0))
    except Exception as error:
        return [f"scheduler.target: {cfg.target} must return a function of the step count giving the lr factor; "
                f"for step 0 of a run of 2 epochs of 10 steps it failed ({first_line(error)})"]
    if not math.isfinite(factor):
        return [f"scheduler.target: {cfg.target} gives the lr factor {factor} at step 0; it must be a finite number"]
    return []


def _check_multistep(cfg) -> list[str]:
    problems = in_range(cfg, "gamma", "scheduler", 0.0, 1.0, closed_high=True)
    unit_problems = choice(cfg, "milestones_unit", "scheduler", ("fraction", "epoch"))
    problems += unit_problems
    if not unit_problems and cfg.milestones_unit == "fraction" and any(not 0 < m < 1 for m in cfg.milestones):
        problems.append(f"scheduler.milestones: fractions must be in (0, 1), got {list(cfg.milestones)}")
    return problems


def _check_grda(cfg) -> list[str]:
    if not 0 <= cfg.hold < cfg.end <= 1:
        return [f"scheduler: need 0 <= hold < end <= 1, got hold={cfg.hold}, end={cfg.end}"]
    problems = in_range(cfg, "final_factor", "scheduler", 0.0, 1.0, closed_high=True)
    first_epoch = cfg.get("first_epoch", 1)
    if isinstance(first_epoch, bool) or first_epoch not in (0, 1):
        problems.append(f"scheduler.first_epoch: must be 0 or 1, got {first_epoch!r}")
    return problems


# Config sections: keys and types (values in conf/scheduler/*.yaml).
@dataclass
class ConstantSection:
    name: str


@dataclass
class MultistepSection:
    name: str
    milestones: list[float]
    milestones_unit: str
    gamma: float


@dataclass
class CosineSection:
    name: str
    final_factor: float


@dataclass
class GRDAPiecewiseSection:
    name: str
    hold: float
    end: float
    final_factor: float
    first_epoch: int
    per_epoch: bool


@dataclass
class CustomSchedulerSection:
    name: str
    target: str | None  # module:Name or module.Name of a function (steps_per_epoch, epochs, **kwargs) -> factor(step)
    kwargs: dict


SCHEDULERS = {
    "constant": Component(constant, schema=ConstantSection),
    "multistep": Component(multistep, _check_multistep, schema=MultistepSection),
    "cosine": Component(cosine, schema=CosineSection),
    "grda_piecewise": Component(grda_piecewise, _check_grda, schema=GRDAPiecewiseSection),
    CUSTOM: Component(custom, _check_custom, schema=CustomSchedulerSection),
}


def build_scheduler(cfg, optimizer, steps_per_epoch: int, epochs: int):
    factor = SCHEDULERS[cfg.name].build(cfg, steps_per_epoch, epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
