"""Components named by import path: a config section with `name: custom` names its class or
function in `target` (`mypkg.nets:TinyNet` or `torch.optim.RMSprop`), importable from the
working directory or PYTHONPATH. Each registry (models, optimizers, schedulers, pruners) has a
`custom` entry built on what is here: importing the target, checking the keyword arguments it
is given against its signature, the label a run folder and a table give it, and the digest of
the file that defines it (part of the run's identity, so an edited model is a new run).

Every problem is one line naming the key (`model.target`, `model.kwargs.width`) and what is
wrong, as registry.py's checks are."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError, first_line, in_words

CUSTOM = "custom"  # the name of the entry, in every registry, whose section names a target
SECTIONS = ("model", "optimizer", "scheduler", "pruner")  # the sections that can name a target


def split_target(key: str, target) -> tuple[str, str]:
    """(module, attribute path) of `module:Name` or `module.Name`."""
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"{key}: not set; give the import path of a class or function, "
                          f"e.g. {key}=mypkg.nets:TinyNet")
    module, colon, attribute = target.partition(":")
    if not colon:
        module, _, attribute = target.rpartition(".")
    if not module or not attribute or not all(part.isidentifier() for part in [*module.split("."),
                                                                                 *attribute.split(".")]):
        raise ConfigError(f"{key}: '{target}' is not an import path; use module:Name or module.Name "
                          "(e.g. mypkg.nets:TinyNet)")
    return module, attribute


def import_module(key: str, module: str):
    """The module, imported with the working directory on the path (as `python -m` has it)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = error.name or module
        where = "" if missing != module.split(".")[0] and missing != module else \
            "; is its folder the working directory or on PYTHONPATH?"
        raise ConfigError(f"{key}: cannot import module '{module}' (no module named '{missing}'){where}") from None
    except Exception as error:  # the module's own code failed: a syntax error, an import inside it
        raise ConfigError(f"{key}: importing module '{module}' failed ({first_line(error)})") from None


def resolve(key: str, target) -> object:
    """What `target` names, imported; one line naming `key` when it cannot be."""
    module_name, attribute = split_target(key, target)
    value = import_module(key, module_name)
    for part in attribute.split("."):
        if not hasattr(value, part):
            where = getattr(import_module(key, module_name), "__file__", None) or module_name
            raise ConfigError(f"{key}: module '{module_name}' ({where}) has no '{attribute}'")
        value = getattr(value, part)
    return value


def resolve_callable(key: str, target) -> object:
    """A class or function named by `target`."""
    value = resolve(key, target)
    if not callable(value):
        raise ConfigError(f"{key}: {target} is not a class or callable (it is of type {type(value).__name__})")
    return value


def resolve_subclass(key: str, target, base: type, base_name: str) -> type:
    """A subclass of `base` named by `target` (base_name: how the user knows `base`)."""
    value = resolve(key, target)
    if not (isinstance(value, type) and issubclass(value, base)):
        what = "a class" if isinstance(value, type) else f"of type {type(value).__name__}"
        raise ConfigError(f"{key}: {target} is not a subclass of {base_name} (it is {what})")
    return value


def _parameters(function) -> list[inspect.Parameter] | None:
    """The parameters `function` (a class: its constructor) takes by keyword; None when it takes
    any keyword (**kwargs) or its signature cannot be read."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def check_arguments(section: str, function, target: str, kwargs: Mapping, given: tuple[str, ...]) -> None:
    """`function` is called with the arguments `given` (by prune-bench: num_classes, lr, ...) and
    the section's `kwargs`: every one must be a parameter of it, none of `kwargs` may be one
    prune-bench gives, and every parameter without a default must be given."""
    for name in kwargs:
        if name in given:
            raise ConfigError(f"{section}.kwargs.{name}: prune-bench passes {name} itself; drop it")
    parameters = _parameters(function)
    if parameters is None:
        return
    names = [p.name for p in parameters]
    for name in [*given, *kwargs]:
        if name not in names:
            takes = f"it takes {in_words(names, 'and')}" if names else "it takes no keyword arguments"
            where = f"{section}.kwargs.{name}" if name in kwargs else f"{section}.target"
            raise ConfigError(f"{where}: {target} does not accept {name}; {takes}")
    for parameter in parameters:
        if parameter.default is inspect.Parameter.empty and parameter.name not in (*given, *kwargs):
            raise ConfigError(f"{section}.kwargs: {target} needs {parameter.name}; "
                              f"set +{section}.kwargs.{parameter.name}=...")


def keyword_arguments(section) -> dict:
    """A section's `kwargs` as a plain dict (lists and nested sections as lists and dicts)."""
    kwargs = section.get("kwargs") or {}
    return OmegaConf.to_container(kwargs, resolve=True) if isinstance(kwargs, DictConfig) else dict(kwargs)


def label(section: Mapping) -> str:
    """What a section is called in run folders, logs and tables: its name, or for a custom
    component the last part of its target (mypkg.nets:TinyNet -> TinyNet)."""
    name = str(section.get("name"))
    if name != CUSTOM or not isinstance(section.get("target"), str):
        return name
    return section["target"].replace(":", ".").rsplit(".", 1)[-1]


def source_file(key: str, target) -> Path:
    """The file whose code defines `target`: the module of the class or function it names."""
    value = resolve(key, target)
    module = sys.modules.get(getattr(value, "__module__", None) or "") or import_module(key, split_target(key, target)[0])
    path = getattr(module, "__file__", None)
    if path is None:
        raise ConfigError(f"{key}: {target} is defined in module '{module.__name__}', which has no source file")
    return Path(path).resolve()


def custom_sources(tree: Mapping, sections: tuple[str, ...] = SECTIONS) -> dict[str, dict]:
    """Per custom section of a config tree (plain dicts): its target, the file that defines it and
    that file's sha256. Empty when no section names a target."""
    sources = {}
    for section in sections:
        values = tree.get(section)
        if isinstance(values, Mapping) and values.get("name") == CUSTOM:
            key = f"{section}.target"
            path = source_file(key, values.get("target"))
            sources[section] = {"target": values["target"], "file": str(path),
                                "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return sources
