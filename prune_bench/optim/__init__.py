"""Optimizer registry. Each entry builds a torch.optim.Optimizer from its config section; `custom`
builds any torch.optim.Optimizer subclass named by import path (`optimizer.target`)."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..registry import Component, choice, in_range, positive
from ..targets import CUSTOM, check_arguments, keyword_arguments, resolve_subclass
from .grda import GRDA
from .schedulers import SCHEDULERS, build_scheduler
from .stochgradadam import MASKED_MOMENTS, StochGradAdam


def _sgd(params, cfg):
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )


def _adam(params, cfg):
    kind = torch.optim.AdamW if cfg.decoupled_weight_decay else torch.optim.Adam
    return kind(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose, distinct from the run seed itself (which seeds the initial
    weights through the global generator), so the two random streams do not coincide."""
    return int(hashlib.sha256(f"{purpose}:{seed}".encode()).hexdigest()[:15], 16)


def _sga(params, cfg):
    params = list(params)
    generator = torch.Generator(device=params[0].device)
    generator.manual_seed(derived_seed(cfg.seed, "stochgradadam"))
    return StochGradAdam(
        params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, sampling_rate=cfg.sampling_rate,
        weight_decay=cfg.weight_decay, generator=generator,
        decoupled_weight_decay=cfg.decoupled_weight_decay, masked_moments=cfg.masked_moments,
    )


def _check_sga(cfg) -> list[str]:
    problems = _check_common(cfg) + _check_betas(cfg)
    problems += in_range(cfg, "sampling_rate", "optimizer", 0, 1, closed_high=True, closed_low=False)  # 0: no update
    return problems + choice(cfg, "masked_moments", "optimizer", MASKED_MOMENTS)


def _check_common(cfg) -> list[str]:
    problems = positive(cfg, "lr", "optimizer")
    if "weight_decay" in cfg:
        problems += in_range(cfg, "weight_decay", "optimizer", 0.0, float("inf"))
    return problems


def _check_sgd(cfg) -> list[str]:
    problems = _check_common(cfg) + in_range(cfg, "momentum", "optimizer", 0.0, 1.0)
    if cfg.nesterov and not cfg.momentum > 0:
        problems.append("optimizer.nesterov: needs optimizer.momentum > 0")
    return problems


def _check_betas(cfg) -> list[str]:
    betas = list(cfg.betas)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        return [f"optimizer.betas: need two values in [0, 1), got {betas}"]
    return positive(cfg, "eps", "optimizer")


def _grda(params, cfg):
    return GRDA(params, lr=cfg.lr, c=cfg.c, mu=cfg.mu)


def _check_grda(cfg) -> list[str]:
    problems = positive(cfg, "lr", "optimizer") + positive(cfg, "mu", "optimizer")
    problems += in_range(cfg, "c", "optimizer", 0.0, float("inf"))
    if not problems and not 0.5 < cfg.mu < 1:  # Chao et al. 2020: 0.5 < mu < 1
        print(f"warning: optimizer.mu={cfg.mu} is outside the paper's range 0.5 < mu < 1; continuing",
              file=sys.stderr)
    return problems


def _custom_class(cfg) -> type:
    return resolve_subclass("optimizer.target", cfg.get("target"), torch.optim.Optimizer, "torch.optim.Optimizer")


def _custom_arguments(cfg) -> dict:
    """What a custom optimizer gets beside the parameters and the section's kwargs: lr, and
    weight_decay unless it is null (not every optimizer has one)."""
    arguments = {"lr": cfg.lr}
    if cfg.get("weight_decay") is not None:
        arguments["weight_decay"] = cfg.weight_decay
    return arguments


def _custom(params, cfg):
    return _custom_class(cfg)(params, **_custom_arguments(cfg), **keyword_arguments(cfg))


def _check_custom(cfg) -> list[str]:
    problems = positive(cfg, "lr", "optimizer")
    if cfg.get("weight_decay") is not None:
        problems += in_range(cfg, "weight_decay", "optimizer", 0.0, float("inf"))
    try:
        check_arguments("optimizer", _custom_class(cfg), cfg.target, keyword_arguments(cfg),
                        ("params", *_custom_arguments(cfg)))
    except ConfigError as error:
        problems.append(str(error))
    return problems


# Config sections: keys and types (values in conf/optimizer/<name>.yaml).
@dataclass
class SGDSection:
    name: str
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float


@dataclass
class AdamSection:
    name: str
    lr: float
    betas: list[float]
    eps: float
    weight_decay: float
    decoupled_weight_decay: bool


@dataclass
class SGASection(AdamSection):
    sampling_rate: float
    masked_moments: str
    seed: int


@dataclass
class GRDASection:
    name: str
    lr: float
    c: float
    mu: float


@dataclass
class CustomOptimizerSection:
    name: str
    target: str | None  # module:Name or module.Name of a torch.optim.Optimizer subclass
    lr: float
    weight_decay: float | None  # null: not passed
    kwargs: dict  # passed to the optimizer beside params, lr and weight_decay


OPTIMIZERS = {
    "sgd": Component(_sgd, _check_sgd, schema=SGDSection),
    "adam": Component(_adam, lambda cfg: _check_common(cfg) + _check_betas(cfg), schema=AdamSection),
    "sga": Component(_sga, _check_sga, schema=SGASection),
    "grda": Component(_grda, _check_grda, schema=GRDASection),
    CUSTOM: Component(_custom, _check_custom, schema=CustomOptimizerSection),
}


def build_optimizer(cfg, params) -> torch.optim.Optimizer:
    if cfg.name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name: unknown optimizer '{cfg.name}'; allowed: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[cfg.name].build(params, cfg)


__all__ = ["GRDA", "OPTIMIZERS", "SCHEDULERS", "StochGradAdam", "build_optimizer", "build_scheduler"]
