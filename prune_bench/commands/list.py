"""`prune-bench list [GROUP]`: experiments, config groups' options, papers and tables, read from
the shipped config tree (nothing here imports torch, pandas or matplotlib)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config.shipped import conf_dir, shipped_names
from ..errors import PruneBenchError, in_words, suggest
from ..report.specs import load_table_spec, table_names


def _description(path: Path) -> str:
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#") and "@package" not in text:
            return text.lstrip("# ").strip()
    return ""


def option_groups() -> list[str]:
    """The config groups a run selects an option of (model=..., data=...): the folders of the
    config tree, less those with a section of their own in `list` and Hydra's."""
    return sorted(path.name for path in conf_dir().iterdir()
                  if path.is_dir() and path.name not in ("exp", "table", "reproduce", "hydra"))


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="prune-bench list")
    parser.add_argument("group", nargs="?", help="only this: exp, table, reproduce or a config group (model, ...)")
    options = parser.parse_args(args)
    groups = ["exp", *option_groups(), "reproduce", "table"]
    if options.group is not None and options.group not in groups:
        listing = f"use {in_words(groups)}"
        raise PruneBenchError(f"list: unknown group '{options.group}'; {suggest(options.group, groups, listing)}")
    shown = groups if options.group is None else [options.group]
    sections = []
    if "exp" in shown:
        lines = [f"  {path.stem:<32} {_description(path)}" for path in sorted((conf_dir() / "exp").glob("*.yaml"))]
        sections.append(["experiments (prune-bench run +exp=NAME):", *lines])
    chosen = [group for group in option_groups() if group in shown]
    if chosen:
        lines = [f"  {group:<12} {', '.join(shipped_names(group))}" for group in chosen]
        sections.append(["config groups (prune-bench run GROUP=NAME):", *lines])
    if "reproduce" in shown:
        sections.append(["papers (prune-bench reproduce NAME):", *(f"  {name}" for name in shipped_names("reproduce"))])
    if "table" in shown:
        lines = [f"  {name:<32} {load_table_spec(name)['title']}" for name in table_names()]
        sections.append(["tables (prune-bench table NAME):", *lines])
    print("\n\n".join("\n".join(section) for section in sections))
    return 0
