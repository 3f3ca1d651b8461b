"""Config validation (fail fast, one line per problem) and run identity."""

from __future__ import annotations

import hashlib
import json
import re

import torch
from omegaconf import DictConfig, OmegaConf

from . import schema
from .data import OFFICIAL, SOURCES
from .devices import validate_pool
from .errors import ConfigError
from .loggers import validate_loggers
from .models import build_model
from .optim import OPTIMIZERS, SCHEDULERS
from .pruning import PRUNERS, pruner_model_check, select_prunable
from .registry import in_range

# Keys that change where or how a run executes, not what it computes: left out of its identity.
# trainer.precision is not one of them (bf16 and fp32 compute different numbers): the identity
# holds what it resolves to on the device (semantic_config), so `auto` on a GPU shares a run
# with `bf16`, and `auto` on CPU one with `fp32`.
NON_SEMANTIC_KEYS = (
    "name",
    "paths",
    "trainer.device",
    "trainer.channels_last",
    "trainer.compile",
    "trainer.cudnn_benchmark",
    "trainer.deterministic",
    "trainer.progress",
    "trainer.eval_batch_size",
    "trainer.checkpoint",
    "trainer.save_model",
    "trainer.gpus_per_job",
    "trainer.runs_per_gpu",
    "trainer.device_pool",
    "logger",
    "data.root",
    "data.cache_dir",
    "data.path",
    "data.download",
    "data.sha256",
)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_choice(problems: list[str], key: str, value, allowed) -> bool:
    if value not in allowed:
        problems.append(f"{key}: '{value}' is not allowed; use one of {', '.join(map(str, allowed))}")
        return False
    return True


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError listing every problem found, one line each: first the schema (keys and
    types, prune_bench/schema.py), then, once every value has its type, the values."""
    problems = schema.check(cfg)
    if problems:
        raise ConfigError("\n".join(problems))
    if _check_choice(problems, "data.name", cfg.data.name, list(OFFICIAL)):
        _check_choice(problems, "data.source", cfg.data.source, SOURCES)
    for key in ("train_per_class", "test_per_class"):
        value = cfg.data.get(key)
        if value is not None and not _positive_int(value):
            problems.append(f"data.{key}: must be a positive integer or null, got {value!r}")
    for group, registry in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS), ("pruner", PRUNERS)):
        problems += registry[cfg[group].name].validate(cfg[group])
    problems += _check_sparsities(cfg.pruner)
    trainer = cfg.trainer
    for key in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
        if key == "eval_batch_size" and trainer[key] == "auto":
            continue
        if not _positive_int(trainer[key]):
            problems.append(f"trainer.{key}: must be a positive integer, got {trainer[key]!r}")
    problems += in_range(trainer, "label_smoothing", "trainer", 0.0, 1.0)
    _check_choice(problems, "trainer.precision", trainer.precision, ("auto", "bf16", "fp32"))
    _check_choice(problems, "trainer.progress", trainer.progress, ("auto", "bar", "lines", "none"))
    _check_choice(problems, "trainer.channels_last", trainer.channels_last, ("auto", True, False))
    problems += _check_device(str(trainer.device))
    problems += validate_loggers(cfg.get("logger") or {}) + validate_pool(trainer)
    if cfg.seed < 0:
        problems.append(f"seed: must be an integer >= 0, got {cfg.seed!r}")
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
    problems = pruner_model_check(cfg, model)  # a pruner's checks that need the model (dpm: shortcuts, BN)
    pruner = cfg.pruner
    if "layers" not in pruner:
        return problems
    selection = {key: pruner.get(key, False) for key in ("layers", "skip_first_conv", "skip_last_linear")}
    if not select_prunable(model, tuple(selection.pop("layers")), **selection):
        chosen = ", ".join(f"{key} {_as_typed(pruner.get(key))}" for key in ("layers", *selection))
        return problems + [f"pruner.layers: {cfg.model.name} has no prunable weights with these options ({chosen})"]
    return problems


def _as_typed(value) -> str:
    """A config value as a user types it: true, [conv, linear]."""
    if isinstance(value, bool):
        return str(value).lower()
    if OmegaConf.is_list(value) or isinstance(value, list):
        return f"[{', '.join(_as_typed(item) for item in value)}]"
    return str(value)


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """What `trainer.precision` computes in on `device`: auto is bf16 autocast on CUDA, fp32 elsewhere."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return str(precision)


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.get(key, {})
    if isinstance(tree, dict):
        tree.pop(leaf, None)


def semantic_config(cfg: DictConfig, drop: tuple[str, ...] = (), device: torch.device | None = None) -> dict:
    """The resolved config without execution details (and without the `drop` keys), with the
    precision it computes in on `device` (default: the device trainer.device resolves to)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    tree.pop("hydra", None)
    device = resolve_device(str(cfg.trainer.device)) if device is None else device
    tree["trainer"]["precision"] = resolve_precision(cfg.trainer.precision, device)
    for key in NON_SEMANTIC_KEYS + tuple(drop):
        _drop(tree, key)
    return tree


def config_hash(tree: dict, length: int = 12) -> str:
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def data_fingerprint(info: dict) -> dict:
    """What identifies the data a run saw, whatever path it was read from."""
    return {key: info.get(key) for key in ("dataset", "format", "n_train", "n_test")}


def run_identity(cfg: DictConfig, data_info: dict, drop: tuple[str, ...] = (),
                 device: torch.device | None = None) -> str:
    return config_hash({"config": semantic_config(cfg, drop, device), "data": data_fingerprint(data_info)})
