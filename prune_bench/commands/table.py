"""`prune-bench table NAME`: results/NAME.csv and the markdown table from a runs folder's records
(report/tables.py), with --summaries the runs' summaries (report/summaries.py). `prune-bench plot NAME` (commands/plot.py) shares this module's `write`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.workspace import inside, what_to_do
from ..errors import PruneBenchError, suggest
from ..report.specs import load_table_spec, table_names
from ..report.summaries import write_summaries
from ..report.tables import write_plot, write_table


def write(command: str, args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"prune-bench {command}")
    parser.add_argument("name", help="table name (prune-bench list shows them)")
    parser.add_argument("--runs", default="runs", help="the runs folder to read records from (default: runs)")
    parser.add_argument("--results-dir", default="results", help="where to write (default: results)")
    if command == "table":
        parser.add_argument("--summaries", action="store_true",
                            help="also write each run's record without its bulk to RESULTS_DIR/runs/<run folder>/, "
                                 "a folder --runs can read the table from again")
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
            if options.summaries:
                written = write_summaries(load_table_spec(options.name), runs_dir, results_dir / "runs")
                print(f"wrote {len(written)} run summaries under {results_dir / 'runs'}")
        else:
            print(f"wrote {write_plot(options.name, runs_dir, results_dir)}")
    except OSError as error:  # read-only, or a file where the folder should be
        if not inside(error.filename, results_dir):
            raise
        raise PruneBenchError(f"--results-dir: cannot write {results_dir} ({error.strerror or error}); "
                              f"{what_to_do(error, '--results-dir')}") from None
    return 0


def main(args: list[str]) -> int:
    return write("table", args)
