"""`prune-bench status [PAPER]`: one line per run of a runs folder, read from what the runs leave
behind (scale/status.py); nothing here imports torch. With a PAPER, the lines are its grid's
cells, pending ones too: composing a grid is the reproduce command's work, so its module is
imported then."""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

from ..errors import PruneBenchError
from ..scale.status import render, scan
from . import command_module


def runs_status(runs: Path) -> str:
    if not runs.is_dir():
        raise PruneBenchError(f"--runs: {runs} does not exist")
    return render(scan(runs))


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="prune-bench status")
    parser.add_argument("paper", nargs="?", help="a paper: its grid's cells, pending ones included")
    parser.add_argument("--runs", default="runs", help="the runs folder (default: runs)")
    parser.add_argument("--budget", default="full", help="with a paper: full or quick")
    parser.add_argument("--seeds", help="with a paper: comma-separated seeds")
    parser.add_argument("--watch", nargs="?", const=10.0, type=float, metavar="SECONDS",
                        help="refresh every SECONDS (default 10) until Ctrl-C")
    options, overrides = parser.parse_known_args(args)
    if options.paper is None:
        show = partial(runs_status, Path(options.runs))
    else:
        show = partial(command_module("reproduce").grid_status, options.paper, options.budget, options.seeds,
                       [f"paths.runs_dir={options.runs}", *overrides])
    if not options.watch:
        print(show())
        return 0
    try:
        while True:
            text = show()
            print(("\033[H\033[2J" if sys.stdout.isatty() else "") + time.strftime("%H:%M:%S ") + "\n" + text, flush=True)
            time.sleep(options.watch)
    except KeyboardInterrupt:
        return 0
