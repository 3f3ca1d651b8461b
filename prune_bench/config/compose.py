"""Configs composed the way `prune-bench run` composes them, outside Hydra's app: a sweep's
overrides expanded into its jobs (Hydra's own sweep syntax and expansion), and each job's
config composed and validated before anything trains. Hydra's multi-line errors become one
ConfigError line."""

from __future__ import annotations

import re

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError
from . import resolvers  # noqa: F401  (registers the resolvers the config tree uses)
from .hydra_private import sweep_jobs
from .schema import first_unknown_key
from .shipped import conf_dir
from .user import search_path_overrides
from .validate import validate


def one_line(error: Exception) -> str:
    """The first paragraph of an exception's text, on one line (Hydra appends search paths,
    option lists and links on further lines)."""
    text = str(error).split("\n\n")[0]
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(error).__name__


def job_overrides(argv: list[str]) -> list[str]:
    """The config overrides in a `run` command line (Hydra's flags such as -m are not)."""
    return [arg for arg in argv if not arg.startswith("-")]


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """Every job of a sweep (`seed=1,2,3 model=resnet20,resnet56` -> 6 override lists), in the
    order Hydra's basic sweeper runs them. A command without sweep syntax is one job."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        raise ConfigError(f"overrides: {one_line(error)}") from None
    return sweep_jobs(parsed)


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _compose(overrides: list[str]) -> DictConfig:
    """The shipped tree and the user's config folders (on Hydra's search path) composed."""
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=[*search_path_overrides(), *overrides])


def _problem(error: Exception, overrides: list[str]) -> tuple[str | None, str]:
    """(the key Hydra could not override, if that is the error; the error on one line)."""
    text = one_line(error)
    unknown = re.match(r"Could not override '([^']+)'", text)
    if unknown and not unknown.group(1).startswith("hydra."):  # Hydra's own keys: its text
        return unknown.group(1), text
    present = re.match(r"Could not append to config\. An item is already at '([^']+)'", text)
    if present:
        key = present.group(1)
        typed = next((o for o in overrides if o.startswith("+") and _override_key(o) == key), f"+{key}=...")
        return None, f"{typed}: {key} is already set; drop the + ({typed.lstrip('+')})"
    return None, text


def compose_config(overrides: list[str]) -> DictConfig:
    """The config `prune-bench run <overrides>` would see (one job). An override of a key the
    config lacks (Hydra: "Could not override") becomes one line naming the closest valid key;
    every such key is named (the config is composed again without it to find the next)."""
    remaining, unknown = list(overrides), []
    while True:
        try:
            cfg = _compose(remaining)
            break
        except (HydraException, OmegaConfBaseException) as error:
            key, text = _problem(error, remaining)
            if key is None or not any(_override_key(o) == key for o in remaining):
                raise ConfigError("\n".join([*unknown, text])) from None
            unknown.append(key)
            remaining = [o for o in remaining if _override_key(o) != key]
    if unknown:
        tree = OmegaConf.to_container(cfg, resolve=False)
        raise ConfigError("\n".join(first_unknown_key(tree, key) or f"{key}: unknown key" for key in unknown))
    return cfg


def compose_all(jobs: list[list[str]]) -> list[tuple[list[str], DictConfig]]:
    """Every job (a list of overrides) composed and validated: (its overrides, its config).
    Raises one ConfigError listing the problems of every bad job, one line each (a job's line
    names its overrides when there is more than one job)."""
    composed, problems = [], []
    for job in jobs:
        prefix = f"[{' '.join(job)}] " if len(jobs) > 1 else ""
        try:
            cfg = compose_config(job)
            validate(cfg)
        except ConfigError as error:
            problems += [f"{prefix}{line}" for line in str(error).splitlines()]
            continue
        composed.append((job, cfg))
    if problems:
        raise ConfigError("\n".join(problems))
    return composed


def compose_jobs(overrides: list[str]) -> list[tuple[list[str], DictConfig]]:
    """Every job of the sweep `overrides` describes, composed and validated (compose_all)."""
    return compose_all(expand_sweep(overrides))
