"""`prune-bench reproduce PAPER`: a paper's grid (missing runs only), then its table and plot
(scale/reproduce.py). `prune-bench status PAPER` reads the grid's cells through this module too."""

from __future__ import annotations

import argparse

from ..scale.reproduce import paper_status, parse_seeds, reproduce
from . import fail


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="prune-bench reproduce")
    parser.add_argument("paper", help="a paper (conf/reproduce/PAPER.yaml)")
    parser.add_argument("--budget", default="full", help="full (the paper's recipe, default) or quick (CPU-sized)")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the paper's)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs, their state and cost; run nothing")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (hydra/launcher=... too)")
    options = parser.parse_intermixed_args(args)
    seeds = parse_seeds(options.seeds) if options.seeds is not None else None
    failed = reproduce(options.paper, options.budget, seeds, options.overrides, options.dry_run)
    if failed:
        fail("\n".join([f"{len(failed)} runs did not finish:", *failed]), code=1)
    return 0


def grid_status(paper: str, budget: str, seeds: str | None, overrides: list[str]) -> str:
    """`prune-bench status PAPER`: one line per cell of the grid, pending ones too. `seeds`: as
    --seeds gives them (None: the paper's)."""
    return paper_status(paper, budget, parse_seeds(seeds) if seeds is not None else None, overrides)
