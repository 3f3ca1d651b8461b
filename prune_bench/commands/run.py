"""`prune-bench run [overrides]`: one run, or with -m a sweep. Every job is composed and
validated before any trains; then Hydra runs each through scale/launch.py's task."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra

from ..config.compose import compose_jobs, job_overrides
from ..config.shipped import conf_dir
from ..config.user import search_path_overrides
from ..engine.workspace import ensure_writable
from ..errors import Interrupted, PruneBenchError
from ..layout import runs_root, sweep_dir
from ..scale.launch import task as run_task
from ..scale.plan import check_schedules, interruption_of
from . import fail


def _sweep_dir(overrides: list[str], cfg) -> tuple[Path, str]:
    """Where Hydra writes a sweep's log (conf/config.yaml: hydra.sweep.dir), and the key that sets it."""
    for override in overrides:
        if override.startswith("hydra.sweep.dir="):
            return Path(override.split("=", 1)[1]).expanduser(), "hydra.sweep.dir"
    return sweep_dir(runs_root(cfg)), "paths.runs_dir"


def main(overrides: list[str]) -> int:
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
