"""Config validation: fail fast, every problem one line naming the key and what is allowed.
First the schema (keys and types, schema.py), then the values (each component's registered
check), then the model built on the meta device (its options, and the pruner's checks that need it)."""

from __future__ import annotations

import re

import torch
from omegaconf import DictConfig, OmegaConf

from ..data import OFFICIAL, SOURCES
from ..engine.loggers import validate_loggers
from ..errors import ConfigError, first_line
from ..models import build_model
from ..optim import OPTIMIZERS, SCHEDULERS
from ..pruning import PRUNERS, pruner_model_check, select_prunable
from ..registry import choice, in_range, integer, positive
from ..scale.devices import validate_pool
from ..targets import CUSTOM, label
from . import schema

CIFAR_BATCH = (2, 3, 32, 32)  # what a custom model's forward pass is tried on


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError listing every problem found, one line each: first the schema (keys and
    types, prune_bench/schema.py), then, once every value has its type, the values."""
    problems = schema.check(cfg)
    if problems:
        raise ConfigError("\n".join(problems))
    problems += choice(cfg.data, "name", "data", list(OFFICIAL)) or choice(cfg.data, "source", "data", SOURCES)
    for key in ("train_per_class", "test_per_class"):
        problems += integer(cfg.data, key, "data", allow_none=True)
    problems += in_range(cfg.data, "mixup_alpha", "data", 0.0, float("inf"))
    for group, registry in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS), ("pruner", PRUNERS)):
        problems += registry[cfg[group].name].validate(cfg[group])
    problems += _check_sparsities(cfg.pruner)
    trainer = cfg.trainer
    for key in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
        if not (key == "eval_batch_size" and trainer[key] == "auto"):
            problems += integer(trainer, key, "trainer")
    problems += in_range(trainer, "label_smoothing", "trainer", 0.0, 1.0)
    problems += choice(trainer, "precision", "trainer", ("auto", "bf16", "fp32"))
    problems += choice(trainer, "progress", "trainer", ("auto", "bar", "lines", "none"))
    problems += choice(trainer, "channels_last", "trainer", ("auto", True, False))
    problems += _check_device(str(trainer.device))
    problems += validate_loggers(cfg.get("logger") or {}) + validate_pool(trainer)
    problems += integer(cfg, "seed", "", low=0)
    problems += check_latency(cfg.latency)
    if not problems and cfg.data.name in OFFICIAL:
        problems += _check_model(cfg, OFFICIAL[cfg.data.name]["num_classes"])
    if problems:
        raise ConfigError("\n".join(problems))


def _check_model(cfg: DictConfig, num_classes: int) -> list[str]:
    """Build the model on the meta device (no memory, no arithmetic), so that a bad option
    (model.shortcut=C), or pruner options that leave it nothing to prune, fail here, before
    any run folder exists (and, for one-shot pruners, before the training they follow)."""
    options = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "name"}
    try:
        with torch.device("meta"):
            model = build_model(cfg.model.name, num_classes, **options)
    except ConfigError as error:
        return [str(error)]
    except (TypeError, ValueError) as error:
        return [f"model: {' '.join(str(error).split())}"]
    if cfg.model.name == CUSTOM:
        forward = forward_problem(model, lambda: build_model(cfg.model.name, num_classes, **options), num_classes,
                                  cfg.model.target)
        if forward:
            return [forward]
    problems = pruner_model_check(cfg, model)  # a pruner's checks that need the model (dpm: shortcuts, BN)
    pruner = cfg.pruner
    if "layers" not in pruner:
        return problems
    selection = {key: pruner.get(key, False) for key in ("layers", "skip_first_conv", "skip_last_linear")}
    if not select_prunable(model, tuple(selection.pop("layers")), **selection):
        chosen = ", ".join(f"{key} {_as_typed(pruner.get(key))}" for key in ("layers", *selection))
        return problems + [f"pruner.layers: {label(cfg.model)} has no prunable weights with these options ({chosen})"]
    return problems


def forward_problem(model, build_on_cpu, num_classes: int, target: str) -> str | None:
    """A custom model must map a CIFAR batch to a logit per class. Tried on the meta device (shapes
    only); a failure there is tried again on the CPU, so what is reported is the model's own error
    (and an operation the meta device lacks is no error)."""
    images = torch.zeros(CIFAR_BATCH, device="meta")
    try:
        with torch.no_grad():
            logits = model.eval()(images)
    except Exception:
        try:
            with torch.no_grad():
                logits = build_on_cpu().eval()(torch.zeros(CIFAR_BATCH))
        except Exception as error:
            return (f"model.target: the forward pass of {target} fails on a CIFAR batch of shape "
                    f"{list(CIFAR_BATCH)} ({first_line(error)})")
    shape = list(logits.shape) if isinstance(logits, torch.Tensor) else f"a {type(logits).__name__}"
    if shape != [CIFAR_BATCH[0], num_classes]:
        return (f"model.target: {target} gives {shape} for a CIFAR batch of shape {list(CIFAR_BATCH)}; "
                f"expected [{CIFAR_BATCH[0]}, {num_classes}] (a logit per class)")
    return None


def _as_typed(value) -> str:
    """A config value as a user types it: true, [conv, linear]."""
    if isinstance(value, bool):
        return str(value).lower()
    if OmegaConf.is_list(value) or isinstance(value, list):
        return f"[{', '.join(_as_typed(item) for item in value)}]"
    return str(value)


def check_latency(section) -> list[str]:
    problems = integer(section, "min_repeats", "latency") + positive(section, "max_seconds", "latency")
    problems += in_range(section, "rel_tol", "latency", 0, 1, closed_low=False)
    sizes = list(section.batch_sizes)
    if not sizes or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes):
        problems.append(f"latency.batch_sizes: must be a non-empty list of positive integers, got {sizes}")
    return problems


def _check_sparsities(pruner) -> list[str]:
    """Every pruner key whose name says sparsity (a number or a list) must lie in [0, 1)."""
    problems = []
    for key, value in pruner.items():
        if "sparsity" not in str(key):
            continue
        values = list(value) if OmegaConf.is_list(value) else [value]
        for item in values:
            if item is None:
                continue
            if not isinstance(item, (int, float)) or isinstance(item, bool) or not 0 <= item < 1:
                problems.append(f"pruner.{key}: sparsity must be in [0, 1), got {item!r}")
    return problems


def _check_device(device: str) -> list[str]:
    if device in ("auto", "cpu"):
        return []
    if re.fullmatch(r"cuda(:\d+)?", device):
        if not torch.cuda.is_available():
            return [f"trainer.device: '{device}' requested but no CUDA device is available; use auto or cpu"]
        return []
    return [f"trainer.device: '{device}' is not allowed; use auto, cpu, cuda or cuda:N"]
