"""`prune-bench run|table|plot|list`. Parsing only; the work is in experiment.py and results.py."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from .errors import PruneBenchError
from .paths import conf_dir
from .workspace import ensure_writable, inside

USAGE = """usage: prune-bench <command> [...]

commands:
  run [overrides]   train, prune, evaluate and record one run (Hydra overrides; -m for sweeps)
                    e.g. prune-bench run +exp=smoke
                         prune-bench run -m +exp=resnet56_sga_p50 seed=1,2,3
  table NAME        collect records into results/NAME.csv beside the published numbers
  plot NAME         draw results/NAME.png from the same records
  list              list experiments (+exp=...) and tables
"""


def fail(message: str, code: int = 2) -> None:
    for line in str(message).splitlines() or ["error"]:
        print(f"prune-bench: error: {line}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
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
            return list_command()
    except PruneBenchError as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to resume from the last checkpoint", 130)
    except BrokenPipeError:  # e.g. `prune-bench list | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    fail(f"unknown command '{command}'; use run, table, plot or list")
    return 2


# ----------------------------------------------------------------------------- run


def _group_options(group: str) -> list[str] | None:
    folder = conf_dir() / group
    if not folder.is_dir():
        return None
    return sorted(p.stem for p in folder.glob("*.yaml"))


def check_group_overrides(overrides: list[str]) -> None:
    """Catch `model=resnet57` or `+exp=typo` before Hydra does (its message spans many lines)."""
    for override in overrides:
        if override.startswith("-") or "=" not in override:
            continue
        key, value = override.split("=", 1)
        group = key.lstrip("+~")
        options = _group_options(group) if "/" not in group and "." not in group else None
        if options is None:
            continue
        if not re.fullmatch(r"[\w\-,]+", value):  # sweep syntax like choice(...): leave to Hydra
            continue
        for choice in value.split(","):
            if choice not in options:
                raise PruneBenchError(f"{group}={choice}: unknown option; allowed: {', '.join(options)}")


def _sweep_dir(overrides: list[str], cfg) -> tuple[Path, str]:
    """Where Hydra writes a sweep's log (conf/config.yaml: hydra.sweep.dir), and the key that sets it."""
    for override in overrides:
        if override.startswith("hydra.sweep.dir="):
            return Path(override.split("=", 1)[1]), "hydra.sweep.dir"
    return Path(str(cfg.paths.runs_dir)) / ".multirun", "paths.runs_dir"


def run_command(overrides: list[str]) -> int:
    import hydra

    check_group_overrides(overrides)
    from .compose import compose_jobs, job_overrides

    jobs = compose_jobs(job_overrides(overrides))  # every job of a sweep validated before any trains
    if "-m" in overrides or "--multirun" in overrides:  # Hydra writes the sweep's multirun.yaml first
        ensure_writable(*_sweep_dir(overrides, jobs[0][1]))
    from .experiment import run

    def task(cfg) -> None:
        try:
            run(cfg)
        except PruneBenchError as error:
            fail(str(error))

    sys.argv = ["prune-bench run", *overrides]
    hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(task)()
    return 0


# ----------------------------------------------------------------------------- table, plot, list


def table_command(command: str, args: list[str]) -> int:
    from .results import table_names, write_plot, write_table

    parser = argparse.ArgumentParser(prog=f"prune-bench {command}")
    parser.add_argument("name", help="table name (prune-bench list shows them)")
    parser.add_argument("--runs-dir", default="runs", help="where run records are (default: runs)")
    parser.add_argument("--results-dir", default="results", help="where to write (default: results)")
    options = parser.parse_args(args)
    runs_dir, results_dir = Path(options.runs_dir), Path(options.results_dir)
    if not runs_dir.is_dir():
        raise PruneBenchError(f"--runs-dir: {runs_dir} does not exist (run some experiments first)")
    if options.name not in table_names():
        raise PruneBenchError(f"{command}: unknown table '{options.name}'; allowed: {', '.join(table_names())}")
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
                              "use a writable folder") from None
    return 0


def _description(path: Path) -> str:
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#") and "@package" not in text:
            return text.lstrip("# ").strip()
    return ""


def list_command() -> int:
    from .results import load_table_spec, table_names

    print("experiments (prune-bench run +exp=NAME):")
    for path in sorted((conf_dir() / "exp").glob("*.yaml")):
        print(f"  {path.stem:<32} {_description(path)}")
    print("\ntables (prune-bench table NAME):")
    for name in table_names():
        print(f"  {name:<32} {load_table_spec(name)['title']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
