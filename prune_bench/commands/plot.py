"""`prune-bench plot NAME`: results/NAME.png from the records the table reads (commands/table.py)."""

from __future__ import annotations

from .table import write


def main(args: list[str]) -> int:
    return write("plot", args)
