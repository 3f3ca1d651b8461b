"""The config's schema: which keys every section has and what type each value must be.

A schema is a dataclass that holds types only (the yaml files under conf/ hold the values, one
source of truth). `check(cfg)` compares the composed config with it, strictly: `true`/`false`
only for a bool (OmegaConf's own conversion would read the string 'no' as False), an integer
for an int, an int or a float for a float. Each problem is one line naming the key; an unknown
key names the closest valid key.

Sections whose keys depend on the component chosen (`model`, `optimizer`, `scheduler`,
`pruner`) are typed `Named`: their schema is the one registered for `<section>.name`
(`Component(build, validate, schema=...)` in the section's registry; models: MODEL_SCHEMAS).
A schema registered as a function (a custom pruner's: its class declares its keys) is called
with the section's values to give the dataclass.
A new section with fixed keys gets a dataclass here and a field in ConfigSection; a new section
of named components gets an entry in NAMED_SECTIONS (docs/design.md, "Extending").
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..engine.loggers import LOGGERS
from ..errors import ConfigError, close_matches, in_words
from ..models import MODEL_SCHEMAS
from ..optim import OPTIMIZERS, SCHEDULERS
from ..pruning import PRUNERS


class Named:
    """Marks a section whose keys are those of the component its `name` picks."""


class Selected:
    """Marks a section holding any number of a registry's components, each under its own name
    with its own keys (`logger=[csv,tensorboard]` gives logger.csv and logger.tensorboard)."""


@dataclass
class SyntheticSection:
    train_size: int
    test_size: int
    seed: int


@dataclass
class DataSection:
    name: str
    source: str
    path: str | None
    root: str
    cache_dir: str | None
    download: bool
    sha256: str | None
    augment: bool
    mixup_alpha: float
    train_per_class: int | None
    test_per_class: int | None
    synthetic: SyntheticSection


@dataclass
class TrainerSection:
    epochs: int
    batch_size: int
    eval_batch_size: int | Literal["auto"]
    eval_every: int
    label_smoothing: float
    device: str
    precision: str
    channels_last: bool | Literal["auto"]
    compile: bool
    cudnn_benchmark: bool
    deterministic: bool
    checkpoint: bool
    save_model: bool
    progress: str
    gpus_per_job: int
    runs_per_gpu: int
    device_pool: Literal["auto", "off"] | list[str]


@dataclass
class PathsSection:
    runs_dir: str
    results_dir: str
    data_root: str
    device_locks: str


@dataclass
class LatencySection:
    batch_sizes: list[int]
    min_repeats: int
    max_seconds: float
    rel_tol: float


@dataclass
class ConfigSection:
    """The top level of the composed config."""

    seed: int
    name: str | None
    data: DataSection
    model: Named
    optimizer: Named
    scheduler: Named
    pruner: Named
    trainer: TrainerSection
    paths: PathsSection
    latency: LatencySection
    logger: Selected


def _named_schemas() -> dict[str, Mapping[str, type | None]]:
    def schemas(registry) -> dict[str, type | None]:
        return {name: component.schema for name, component in registry.items()}

    return {"model": MODEL_SCHEMAS, "optimizer": schemas(OPTIMIZERS), "scheduler": schemas(SCHEDULERS),
            "pruner": schemas(PRUNERS)}


# section -> (component name -> schema); read when checking, so registries may grow at import
NAMED_SECTIONS: Callable[[], dict[str, Mapping[str, type | None]]] = _named_schemas


def _selected_schemas() -> dict[str, Mapping[str, type | None]]:
    return {"logger": {name: component.schema for name, component in LOGGERS.items()}}


SELECTED_SECTIONS: Callable[[], dict[str, Mapping[str, type | None]]] = _selected_schemas


# ----------------------------------------------------------------------------- types


def matches(value, kind) -> bool:
    """Whether a plain (resolved) config value has the type `kind`, strictly."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is typing.Any:
        return True
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if kind is dict:  # a section of any keys (a custom component's kwargs)
        return isinstance(value, dict)
    if origin is Literal:
        return any(type(value) is type(choice) and value == choice for choice in args)
    if origin in (Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(matches(item, args[0]) for item in value)
    raise TypeError(f"schema type {kind!r} is not supported")


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null",
          dict: "a section"}
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def describe(kind) -> str:
    """`kind` in words: 'an integer or null', 'a list of numbers', ...'"""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        return " or ".join(repr(choice) for choice in args)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    if origin is list:
        return f"a list of {_PLURALS.get(args[0], describe(args[0]))}"
    return _NAMES.get(kind, getattr(kind, "__name__", str(kind)))


# ----------------------------------------------------------------------------- keys


def unknown_key(dotted: str, valid: list[str]) -> str:
    """One line for a key that is not in its section: the closest (up to three) of `valid` (the
    section's keys) if any is close, else all of them."""
    *parents, leaf = dotted.split(".")
    prefix = "".join(f"{part}." for part in parents)
    close = close_matches(leaf, valid)
    if close:
        return f"{dotted}: unknown key; did you mean {in_words([prefix + key for key in close])}?"
    where = ".".join(parents) or "the top level"
    return f"{dotted}: unknown key; {where} has {', '.join(sorted(valid))}"


def first_unknown_key(tree: dict, dotted: str) -> str | None:
    """The first part of `dotted` that `tree` lacks, as a one-line problem (None: all there)."""
    parts = dotted.split(".")
    node = tree
    for depth, part in enumerate(parts):
        if not isinstance(node, dict):
            return None
        if part not in node:
            return unknown_key(".".join(parts[: depth + 1]), list(node))
        node = node[part]
    return None


# ----------------------------------------------------------------------------- checking


def check_section(values: dict, schema: type, prefix: str = "") -> list[str]:
    """Problems of one section against its dataclass, one line each: wrong types and missing
    keys in the schema's order, then unknown keys."""
    hints = typing.get_type_hints(schema)
    problems = []
    for key, kind in hints.items():
        where = f"{prefix}{key}"
        if key not in values:
            if kind is not Selected:  # nothing selected (logger=[]) leaves no section at all
                problems.append(f"{where}: missing; the config must set it")
            continue
        value = values[key]
        if kind is Named:
            problems += check_named(where, value)
        elif kind is Selected:
            problems += check_selected(where, value)
        elif dataclasses.is_dataclass(kind):
            if isinstance(value, dict):
                problems += check_section(value, kind, f"{where}.")
            else:
                problems.append(f"{where}: must be a section with keys {', '.join(typing.get_type_hints(kind))}, got {value!r}")
        elif not matches(value, kind):
            problems.append(f"{where}: must be {describe(kind)}, got {value!r}")
    problems += [unknown_key(f"{prefix}{key}", list(hints)) for key in values if key not in hints]
    return problems


def check_named(section: str, values) -> list[str]:
    registry = NAMED_SECTIONS()[section]
    name = values.get("name") if isinstance(values, dict) else None
    if name not in registry:
        return [f"{section}.name: {name!r} is not allowed; use one of {', '.join(registry)}"]
    schema = registry[name]
    if schema is not None and not dataclasses.is_dataclass(schema):
        try:
            schema = schema(values)
        except ConfigError as error:
            return str(error).splitlines()
    return check_section(values, schema, f"{section}.") if schema is not None else []


def check_selected(section: str, values) -> list[str]:
    registry = SELECTED_SECTIONS()[section]
    if not isinstance(values, dict):
        return [f"{section}: must be a section of any of {', '.join(registry)}, got {values!r}"]
    problems = []
    for name, options in values.items():
        if name not in registry:
            problems.append(unknown_key(f"{section}.{name}", list(registry)))
        elif registry[name] is not None:
            problems += check_section(options if isinstance(options, dict) else {}, registry[name], f"{section}.{name}.")
    return problems


def check(cfg: DictConfig) -> list[str]:
    """Every schema problem of a composed config, one line each (empty: the config is typed right)."""
    try:
        tree = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "config"
        return [f"{key}: {str(error).splitlines()[0]}"]
    tree.pop("hydra", None)
    return check_section(tree, ConfigSection)
