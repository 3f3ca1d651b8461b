"""`prune-bench list [GROUP]`: experiments, config groups' options, papers and tables, read from
the shipped config tree and the user's config folders (config/catalog.py; nothing here imports
torch, pandas or matplotlib)."""

from __future__ import annotations

import argparse

from ..config.catalog import listing, option_groups
from ..errors import PruneBenchError, in_words, suggest


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="prune-bench list")
    parser.add_argument("group", nargs="?", help="only this: exp, table, reproduce or a config group (model, ...)")
    options = parser.parse_args(args)
    groups = ["exp", *option_groups(), "reproduce", "table"]
    if options.group is not None and options.group not in groups:
        allowed = f"use {in_words(groups)}"
        raise PruneBenchError(f"list: unknown group '{options.group}'; {suggest(options.group, groups, allowed)}")
    print(listing(groups if options.group is None else [options.group]))
    return 0
