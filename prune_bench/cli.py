"""`prune-bench run|reproduce|status|table|plot|list`. Parsing only; the work is in engine/run.py
(through scale/launch.py), scale/reproduce.py, scale/status.py and report/tables.py."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import hydra

from .config.catalog import listing, option_groups
from .config.compose import check_group_overrides, compose_jobs, job_overrides
from .config.shipped import conf_dir
from .config.user import search_path_overrides, take_config_dir_options
from .engine.workspace import ensure_writable, inside, what_to_do
from .errors import Interrupted, PruneBenchError, in_words, suggest
from .export import DEFAULT_FORMATS, FILES, export_run, parse_formats
from .layout import runs_root, sweep_dir
from .report.tables import table_names, write_plot, write_table
from .scale.launch import task as run_task
from .scale.plan import check_schedules
from .scale.reproduce import interruption_of, paper_status, parse_seeds, reproduce
from .scale.status import render, scan

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

--config-dir DIR (or $PRUNE_BENCH_CONFIG_DIR): your exp/, reproduce/, table/ beside the shipped
                    ones (docs/extending.md)
"""


COMMANDS = ("run", "reproduce", "status", "table", "plot", "list", "export")


def fail(message: str, code: int = 2) -> None:
    for line in str(message).splitlines() or ["error"]:
        print(f"prune-bench: error: {line}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        argv = take_config_dir_options(argv)
    except PruneBenchError as error:
        fail(str(error))
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "run":
            return run_command(rest)
        if command in ("table", "plot"):
            return table_command(command, rest)
        if command == "list":
            return list_command(rest)
        if command == "reproduce":
            return reproduce_command(rest)
        if command == "status":
            return status_command(rest)
        if command == "export":
            return export_command(rest)
    except PruneBenchError as error:
        fail(str(error))
    except KeyboardInterrupt as error:  # a run, a sweep or a paper's grid says what it saved (Interrupted)
        fail(str(error) if isinstance(error, Interrupted) else "interrupted; nothing was written", 130)
    except BrokenPipeError:  # e.g. `prune-bench list | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    listing = f"use {in_words(list(COMMANDS))} (prune-bench --help says more)"
    fail(f"unknown command '{command}'; {suggest(command, COMMANDS, listing)}")
    return 2


# ----------------------------------------------------------------------------- run


def _sweep_dir(overrides: list[str], cfg) -> tuple[Path, str]:
    """Where Hydra writes a sweep's log (conf/config.yaml: hydra.sweep.dir), and the key that sets it."""
    for override in overrides:
        if override.startswith("hydra.sweep.dir="):
            return Path(override.split("=", 1)[1]).expanduser(), "hydra.sweep.dir"
    return sweep_dir(runs_root(cfg)), "paths.runs_dir"


def run_command(overrides: list[str]) -> int:
    check_group_overrides(overrides)
    jobs = compose_jobs(job_overrides(overrides))  # every job of a sweep validated before any trains
    if "-m" in overrides or "--multirun" in overrides:  # Hydra writes the sweep's multirun.yaml first
        check_schedules(jobs)  # and its pruning schedule checked against its data
        ensure_writable(*_sweep_dir(overrides, jobs[0][1]))

    def task(cfg) -> None:
        try:
            run_task(cfg)
        except PruneBenchError as error:
            fail(str(error))

    sys.argv = ["prune-bench run", *overrides, *search_path_overrides()]
    try:
        hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(task)()
    except KeyboardInterrupt as error:
        if len(jobs) > 1:
            raise interruption_of(error, jobs) from None
        if isinstance(error, Interrupted):
            raise
        raise Interrupted("interrupted before the run started; nothing was saved",
                          "run the same command to start again") from None
    return 0


# ----------------------------------------------------------------------------- reproduce, status


def reproduce_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="prune-bench reproduce")
    parser.add_argument("paper", help="a paper (conf/reproduce/PAPER.yaml)")
    parser.add_argument("--budget", default="full", help="full (the paper's recipe, default) or quick (CPU-sized)")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the paper's)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs, their state and cost; run nothing")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (hydra/launcher=... too)")
    options = parser.parse_intermixed_args(args)
    seeds = parse_seeds(options.seeds) if options.seeds is not None else None
    check_group_overrides(options.overrides)
    failed = reproduce(options.paper, options.budget, seeds, options.overrides, options.dry_run)
    if failed:
        fail("\n".join([f"{len(failed)} runs did not finish:", *failed]), code=1)
    return 0


def status_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="prune-bench status")
    parser.add_argument("paper", nargs="?", help="a paper: its grid's cells, pending ones included")
    parser.add_argument("--runs", default="runs", help="the runs folder (default: runs)")
    parser.add_argument("--budget", default="full", help="with a paper: full or quick")
    parser.add_argument("--seeds", help="with a paper: comma-separated seeds")
    parser.add_argument("--watch", nargs="?", const=10.0, type=float, metavar="SECONDS",
                        help="refresh every SECONDS (default 10) until Ctrl-C")
    options, overrides = parser.parse_known_args(args)

    def show() -> str:
        if options.paper is None:
            if not Path(options.runs).is_dir():
                raise PruneBenchError(f"--runs: {options.runs} does not exist")
            return render(scan(Path(options.runs)))
        seeds = parse_seeds(options.seeds) if options.seeds is not None else None
        return paper_status(options.paper, options.budget, seeds, [f"paths.runs_dir={options.runs}", *overrides])

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


# ----------------------------------------------------------------------------- table, plot, list


def table_command(command: str, args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"prune-bench {command}")
    parser.add_argument("name", help="table name (prune-bench list shows them)")
    parser.add_argument("--runs", default="runs", help="the runs folder to read records from (default: runs)")
    parser.add_argument("--results-dir", default="results", help="where to write (default: results)")
    options = parser.parse_args(args)
    runs_dir, results_dir = Path(options.runs), Path(options.results_dir)
    if not runs_dir.is_dir():
        raise PruneBenchError(f"--runs: {runs_dir} does not exist (run some experiments first)")
    if options.name not in table_names():
        listing = f"allowed: {', '.join(table_names())}"
        raise PruneBenchError(f"{command}: unknown table '{options.name}'; {suggest(options.name, table_names(), listing)}")
    try:
        if command == "table":
            _, path, text = write_table(options.name, runs_dir, results_dir)
            print(text)
            print(f"wrote {path}")
        else:
            print(f"wrote {write_plot(options.name, runs_dir, results_dir)}")
    except OSError as error:  # read-only, or a file where the folder should be
        if not inside(error.filename, results_dir):
            raise
        raise PruneBenchError(f"--results-dir: cannot write {results_dir} ({error.strerror or error}); "
                              f"{what_to_do(error, '--results-dir')}") from None
    return 0


def list_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="prune-bench list")
    parser.add_argument("group", nargs="?", help="only this: exp, table, reproduce or a config group (model, ...)")
    options = parser.parse_args(args)
    groups = ["exp", *option_groups(), "reproduce", "table"]
    if options.group is not None and options.group not in groups:
        allowed = f"use {in_words(groups)}"
        raise PruneBenchError(f"list: unknown group '{options.group}'; {suggest(options.group, groups, allowed)}")
    print(listing(groups if options.group is None else [options.group]))
    return 0


# ----------------------------------------------------------------------------- export


def export_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="prune-bench export")
    parser.add_argument("run_dir", help="a finished run's directory (it holds record.json and model.pt)")
    parser.add_argument("--out", help="the folder to write (default: RUN_DIR/export)")
    parser.add_argument("--format", default=",".join(DEFAULT_FORMATS),
                        help=f"comma-separated, any of {', '.join(FILES)} (default: {','.join(DEFAULT_FORMATS)})")
    options = parser.parse_args(args)
    formats = parse_formats(options.format)
    try:
        manifest = export_run(Path(options.run_dir), options.out, formats)
    except KeyboardInterrupt:
        fail("interrupted; nothing was written", 130)
    out_dir = Path(options.out).expanduser() if options.out else Path(options.run_dir).expanduser() / "export"
    model, normalisation = manifest["model"], manifest["input"]["normalisation"]
    shape = "slimmed" if model["slimmed"] else "unpruned"
    print(f"exported {model['label']} ({shape}, {model['params'] / 1e6:.2f}M params) from {options.run_dir}")
    for name, entry in manifest["formats"].items():
        check = entry["verified"]
        batches = " and ".join(str(n) for n in check["batch_sizes"])
        print(f"  {name:<12} {out_dir / entry['file']}  ({entry['bytes'] / 1e6:.1f} MB); {check['runtime']} vs "
              f"PyTorch at batch {batches}: max |logit diff| {check['max_abs_diff']:.1e} "
              f"(tolerance {check['tolerance']:.1e})")
    mean = ", ".join(f"{v:.2f}" for v in normalisation["mean"])
    std = ", ".join(f"{v:.2f}" for v in normalisation["std"])
    print(f"  {'manifest':<12} {out_dir / 'export.json'}")
    shape = ", ".join(str(n) for n in manifest["input"]["shape"])
    print(f"input: float32 [{shape}] ({manifest['input']['layout']}, "
          f"{manifest['input']['channels']}), (pixels - mean) / std with pixels in 0..255, "
          f"mean [{mean}], std [{std}]; {len(manifest['classes'])} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
