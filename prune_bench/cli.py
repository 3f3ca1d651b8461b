"""`prune-bench <command> [...]`: the dispatcher. It prints the usage, imports the one module of
the command it is given (commands/<command>.py, which imports what that command needs) and runs
it; what any command raises for the user to see (a user error, Ctrl-C, a closed pipe) ends here."""

from __future__ import annotations

import os
import sys

from .commands import command_module, fail
from .config.catalog import check_group_overrides
from .config.user import take_config_dir_options
from .errors import Interrupted, PruneBenchError, in_words, suggest

USAGE = """usage: prune-bench [--config-dir DIR] <command> [...]

commands:
  run [overrides]   train, prune, evaluate and record one run (Hydra overrides; -m for sweeps)
                    e.g. prune-bench run +exp=smoke
                         prune-bench run -m +exp=resnet56_sga_p50 seed=1,2,3
  reproduce PAPER   run a paper's whole grid (missing runs only), then its table and plot
                    e.g. prune-bench reproduce sga2024 --budget quick --seeds 1 [--dry-run]
                         prune-bench reproduce fggp2024 hydra/launcher=slurm
  status [PAPER]    one line per run: finished, running, interrupted, failed, diverged, pending
                    (--runs DIR for any runs folder, --watch to refresh)
  table NAME        collect records into results/NAME.csv beside the published numbers
  plot NAME         draw results/NAME.png from the same records
  list [GROUP]      list experiments (+exp=...), config groups' options (model=...), papers and
                    tables; GROUP (exp, model, ..., table) for one of them
  export RUN_DIR    write a finished run's model as ONNX and torch.export files (slimmed shapes
                    included), each checked against PyTorch, with export.json (input, normalisation,
                    classes); --out DIR (default RUN_DIR/export), --format onnx,pt2,torchscript

--config-dir DIR (or $PRUNE_BENCH_CONFIG_DIR), before or after the command: your exp/,
                    reproduce/, table/ beside the shipped ones (docs/extending.md)
"""


COMMANDS = ("run", "reproduce", "status", "table", "plot", "list", "export")  # each a module in commands/
TAKE_OVERRIDES = ("run", "reproduce")  # their group choices (model=...) are checked before their module loads


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        argv = take_config_dir_options(argv)
    except PruneBenchError as error:
        fail(str(error))
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        listing = f"use {in_words(list(COMMANDS))} (prune-bench --help says more)"
        fail(f"unknown command '{command}'; {suggest(command, COMMANDS, listing)}")
    try:
        if command in TAKE_OVERRIDES:  # a mistyped choice answers in a moment, before torch is imported
            check_group_overrides(args)
        return command_module(command).main(args)
    except PruneBenchError as error:
        fail(str(error))
    except KeyboardInterrupt as error:  # a run, a sweep or a paper's grid says what it saved (Interrupted)
        fail(str(error) if isinstance(error, Interrupted) else "interrupted; nothing was written", 130)
    except BrokenPipeError:  # e.g. `prune-bench list | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
