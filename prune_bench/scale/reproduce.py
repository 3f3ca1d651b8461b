"""A paper's grid -> jobs -> (validated, planned) -> launcher -> table and plot.

A grid is declared once in conf/reproduce/<paper>.yaml (its format: config/grids.py).

Each cell is `grid entry + budget overrides + seed=S + the command line's overrides`, so the
command line has the last word. Every cell is composed and validated before anything runs; the
cells without a finished record go to the launcher the command line selects (hydra/launcher=...);
an interrupted run resumes from its checkpoint; then the table and the plot are written. A cell
that fails leaves its reason in its run directory, the others go on, and the command ends
non-zero naming it. Adding a paper is one yaml file here (and its table in conf/table/); a
user's grid is the same file in their config folder's reproduce/ (config/user.py).
"""

from __future__ import annotations

from hydra.core.utils import JobStatus
from tqdm import tqdm

from ..config.compose import compose_all
from ..config.grids import grid_jobs, read_grid
from ..errors import ConfigError, Interrupted, PruneBenchError
from ..layout import results_root, runs_root
from ..report.specs import load_table_spec, table_names
from ..report.tables import write_plot, write_table
from .launch import launch
from .plan import (
    cell_labels,
    check_schedules,
    cost_text,
    cost_total,
    interruption_of,
    job_costs,
    plan_jobs,
    probe_jobs,
)
from .status import render
from .watch import GridWatch


def load_grid(paper: str) -> dict:
    path, spec = read_grid(paper)
    if spec["table"] not in table_names():
        raise ConfigError(f"paper: {path} names the table '{spec['table']}'; allowed: {', '.join(table_names())}")
    return spec


def is_launcher_override(override: str) -> bool:
    """hydra/launcher=slurm, hydra.launcher.n_jobs=4, ...: for the launcher, not the jobs."""
    return override.lstrip("+~").startswith(("hydra/", "hydra."))


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(seed < 0 for seed in seeds):
        raise ConfigError(f"--seeds: a comma-separated list of integers >= 0, e.g. 1,2,3; got '{text}'")
    return seeds




def _failure_reason(job_return) -> str | None:
    if job_return is not None and job_return.status == JobStatus.FAILED:
        error = job_return._return_value
        return " ".join(f"{type(error).__name__}: {error}".split())[:300]
    return None


def launcher_choice(launcher_overrides: list[str]) -> str:
    """The launcher the command line selects (hydra/launcher=NAME), basic by default."""
    names = [o.split("=", 1)[1] for o in launcher_overrides if o.lstrip("+~").startswith("hydra/launcher=")]
    return names[-1] if names else "basic"


def reproduce(paper: str, budget: str, seeds: list[int] | None, overrides: list[str],
              dry_run: bool = False, log=tqdm.write) -> list[str]:
    """Run the paper's grid (or with dry_run, list it). Returns the failed runs, one line each.
    The cost of the runs left is estimated from a probe on this device (plan.py, probe.py); while
    they run, a line says runs done / left and the time left as each ends (watch.py). `log`
    writes above a live progress bar when there is one."""
    spec = load_grid(paper)
    launcher_overrides = [o for o in overrides if is_launcher_override(o)]
    job_overrides = [o for o in overrides if not is_launcher_override(o)]
    jobs = grid_jobs(spec, budget, seeds or list(spec["seeds"]), job_overrides)
    composed = compose_all(jobs)  # nothing runs unless every job is valid
    check_schedules(composed)  # nor unless every pruner's schedule fits its run
    planned = plan_jobs(composed)
    note = spec["budgets"][budget].get("note", "")
    log(f"{paper}, budget {budget}: {len(planned)} runs{f' ({note})' if note else ''}")
    statuses = [job.status for job in planned]
    todo = [job for job in planned if job.todo]
    launcher = launcher_choice(launcher_overrides)
    # a probe here says nothing of a cluster's nodes; every launcher but the basic one starts a process per job
    probes = probe_jobs(planned, launcher != "basic") if todo and "slurm" not in launcher else None
    costs = job_costs(planned, probes) if probes is not None else [None] * len(planned)
    cells = cell_labels([job.overrides for job in planned])
    # a pending run is named by its overrides already; a run with a folder gets its cell's label
    extra = {i: ("" if job.status.run_dir is None else f"[{cells[i]}]")
             + (f"  {cost_text(job, costs[i])}" if dry_run and cost_text(job, costs[i]) else "")
             for i, job in enumerate(planned)}
    log(render(statuses, extra))
    log(cost_total(planned, costs, probes, probe_again=dry_run))
    if todo and probes is None:
        log(f"no time estimate: hydra/launcher={launcher} runs the jobs on other machines than this one")
    if dry_run:
        return []

    returns: dict[int, object] = {}
    if todo:
        log(f"launching {len(todo)} runs ({len(planned) - len(todo)} already have a record)")
        todo_costs = [cost for job, cost in zip(planned, costs) if job.todo]
        with GridWatch(todo, todo_costs, len(planned) - len(todo), log):
            try:
                for job, job_return in zip(todo, launch([job.overrides for job in todo],
                                                        [*launcher_overrides, *job_overrides])):
                    returns[id(job)] = job_return
            except KeyboardInterrupt as error:
                raise interruption_of(error, composed) from None
            except Exception as error:  # e.g. a scheduler lost a job: report, then look at the runs
                log(f"launcher: {' '.join(str(error).split())[:300]}")
    else:
        log("every run already has a record")

    after = plan_jobs(composed)
    failed = []
    for before, job in zip(planned, after):
        if job.status.state == "finished":
            continue
        reason = _failure_reason(returns.get(id(before))) if job.status.state != "diverged" else None
        failed.append(f"{job.status.name} ({job.status.state}: {reason or job.status.detail})")
    try:
        _write_results(spec["table"], composed[0][1], log)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted while writing table {spec['table']} (every run has ended; what was "
                          "written is listed above)", "run the same command to write it") from None
    if not failed:
        log(f"all {len(after)} runs finished")
    return failed


def _write_results(table: str, cfg, log) -> None:
    runs_dir, results_dir = runs_root(cfg), results_root(cfg)
    try:  # with no finished run to table (all failed), say so and go on to name the failures
        _, path, text = write_table(table, runs_dir, results_dir)
    except PruneBenchError as error:
        log(f"no table: {error}")
        return
    log(text)
    log(f"wrote {path}")
    if load_table_spec(table).get("plot"):
        try:
            log(f"wrote {write_plot(table, runs_dir, results_dir)}")
        except PruneBenchError as error:
            log(f"no plot: {error}")


def paper_status(paper: str, budget: str, seeds: list[int] | None, overrides: list[str]) -> str:
    """`prune-bench status PAPER`: one line per cell of the grid (pending ones too)."""
    spec = load_grid(paper)
    jobs = grid_jobs(spec, budget, seeds or list(spec["seeds"]), [o for o in overrides if not is_launcher_override(o)])
    planned = plan_jobs(compose_all(jobs))
    extra = {i: f"[{cell}]" for i, cell in enumerate(cell_labels([job.overrides for job in planned]))}
    return f"{paper}, budget {budget}:\n" + render([job.status for job in planned], extra)
