"""Which budget of a paper's grid file (conf/reproduce/<paper>.yaml) a table row came from.

A row is one semantic config (report/cells.py: the config less execution details, seeds and the
table's merged keys). It came from a budget when one of that budget's jobs, composed as
`prune-bench reproduce` composes it, has the same semantic config on the row's kind of device.
Budgets are composed on first need, one after another in the grid file's order, and kept for the
process: a table whose rows are all in the paper's setting composes nothing.
"""

from __future__ import annotations

from functools import lru_cache

from omegaconf import OmegaConf

from ..config.compose import compose_config
from ..config.grids import grid_jobs, grids_of_table, read_grid
from .cells import SEED_KEYS, semantic

DEVICES = ("cpu", "cuda")  # where a job may have run: it sets the precision `auto` resolves to
DATA_INFO = "data_info."  # what a record says of its data; a composed job knows only its config


def config_only(config: dict) -> dict:
    """A flattened semantic config without the keys that describe the data a run read."""
    return {key: value for key, value in config.items() if not key.startswith(DATA_INFO)}


@lru_cache
def budgets_of(table: str) -> tuple[tuple[str, str, str], ...]:
    """(label, grid, budget) of every budget of the grid files that write `table`; the label is the
    budget's name, prefixed by its grid's name when the grid is not named after the table."""
    return tuple((budget if paper == table else f"{paper} {budget}", paper, budget)
                 for paper in grids_of_table(table) for budget in read_grid(paper)[1]["budgets"])


@lru_cache
def budget_configs(paper: str, budget: str, merged: tuple[str, ...]) -> tuple[dict, ...]:
    """The semantic configs of the budget's jobs (seeds and `merged` dropped), on each device."""
    _, spec = read_grid(paper)
    configs = []
    for job in grid_jobs(spec, budget, [spec["seeds"][0]], []):
        tree = OmegaConf.to_container(compose_config(job), resolve=True)
        configs += [config_only(semantic({"config": tree, "device": {"type": device}}, drop=SEED_KEYS + merged))
                    for device in DEVICES]
    return tuple(configs)


def budget_of(table: str, config: dict, merged: tuple[str, ...] = ()) -> str | None:
    """The label of the first budget with a job of this row's semantic config, or None."""
    wanted = config_only(config)
    for label, paper, budget in budgets_of(table):
        if wanted in budget_configs(paper, budget, merged):
            return label
    return None
