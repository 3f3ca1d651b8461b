"""A paper's grid file (conf/reproduce/<paper>.yaml, or reproduce/ in a user's config folder): its budgets and the jobs each expands to.
scale/reproduce.py runs them; report/budgets.py names the budget a table's rows came from.

    table: sga2024              # the table (conf/table/) written at the end; plotted if it has a plot
    seeds: [1, 2, 3]            # default seeds (--seeds replaces them)
    budgets:
      full:                     # the paper's recipe
        note: ...               # one line, shown by --dry-run
        overrides: []           # applied to every cell of this budget
        grid:                   # each entry: overrides in Hydra's sweep syntax, expanded as
          - ["+exp=a,b", "pruner.sparsity=0.9,0.95"]   #   `run -m` expands them (a product)
      quick: {...}              # CPU-sized
"""

from __future__ import annotations

from ..errors import ConfigError
from .catalog import load_entry, names
from .compose import expand_sweep


def read_grid(paper: str) -> tuple:
    """(path, content) of reproduce/<paper>.yaml, shipped or in a user's config folder; every
    budget must have a grid."""
    entry, spec = load_entry("reproduce", paper, "paper", ("table", "seeds", "budgets"), resolve=False)
    for budget, section in spec["budgets"].items():
        if not section.get("grid"):
            raise ConfigError(f"paper: {entry.path}: budget '{budget}' has no grid")
    return entry.path, spec


def grids_of_table(table: str) -> list[str]:
    """The grid files (shipped and the user's) whose runs the table `table` collects."""
    return [paper for paper in names("reproduce") if read_grid(paper)[1]["table"] == table]


def grid_jobs(spec: dict, budget: str, seeds: list[int], overrides: list[str]) -> list[list[str]]:
    """Every cell of the grid at `budget`, as override lists, in grid order: the grid entry, the
    budget's overrides, `seed=S`, then `overrides` (which come last and win)."""
    if budget not in spec["budgets"]:
        raise ConfigError(f"--budget: '{budget}' is not allowed; use one of {', '.join(spec['budgets'])}")
    section = spec["budgets"][budget]
    shared = list(section.get("overrides") or [])
    seed_override = "seed=" + ",".join(str(seed) for seed in seeds)
    jobs: list[list[str]] = []
    for entry in section["grid"]:
        for job in expand_sweep([*entry, *shared, seed_override, *overrides]):
            if job not in jobs:
                jobs.append(job)
    return jobs
