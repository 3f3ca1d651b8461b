"""A paper's grid -> jobs -> (validated, planned) -> launcher -> table and plot.

A grid is declared once in conf/reproduce/<paper>.yaml:

    table: sga2024              # the table (conf/table/) written at the end; plotted if it has a plot
    seeds: [1, 2, 3]            # default seeds (--seeds replaces them)
    budgets:
      full:                     # the paper's recipe
        note: ...               # one line, shown by --dry-run
        overrides: []           # applied to every cell of this budget
        grid:                   # each entry: overrides in Hydra's sweep syntax, expanded as
          - ["+exp=a,b", "pruner.sparsity=0.9,0.95"]   #   `run -m` expands them (a product)
      quick: {...}              # CPU-sized

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
from omegaconf import DictConfig
from tqdm import tqdm

from ..config.catalog import load_entry
from ..config.compose import compose_all, expand_sweep
from ..errors import ConfigError, Interrupted, PruneBenchError
from ..layout import results_root, runs_root
from ..report.tables import load_table_spec, table_names, write_plot, write_table
from .launch import launch
from .plan import check_schedules, cost_text, cost_total, job_costs, plan_jobs, probe_jobs
from .status import render
from .watch import GridWatch


def load_grid(paper: str) -> dict:
    entry, spec = load_entry("reproduce", paper, "paper", ("table", "seeds", "budgets"), resolve=False)
    if spec["table"] not in table_names():
        raise ConfigError(f"paper: {entry.path} names the table '{spec['table']}'; allowed: {', '.join(table_names())}")
    for budget, section in spec["budgets"].items():
        if not section.get("grid"):
            raise ConfigError(f"paper: {entry.path}: budget '{budget}' has no grid")
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


def grid_jobs(spec: dict, budget: str, seeds: list[int], overrides: list[str]) -> list[list[str]]:
    """Every cell of the grid at `budget`, as override lists, in grid order."""
    if budget not in spec["budgets"]:
        raise ConfigError(f"--budget: '{budget}' is not allowed; use one of {', '.join(spec['budgets'])}")
    section = spec["budgets"][budget]
    shared = list(section.get("overrides") or [])
    seed_override = "seed=" + ",".join(str(seed) for seed in seeds)
    jobs: list[list[str]] = []
    for entry in section["grid"]:
        for job in expand_sweep([*entry, *shared, seed_override, *overrides]):
            if job not in jobs:
                jobs.append(job)
    return jobs


def cell_labels(jobs: list[list[str]]) -> list[str]:
    """Each job's overrides less those every job shares: what tells the cells apart."""
    common = set(jobs[0]).intersection(*jobs[1:]) if len(jobs) > 1 else set()
    return [" ".join(o for o in job if o not in common) for job in jobs]


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


def interruption_of(error: KeyboardInterrupt, jobs: list[tuple[list[str], DictConfig]]) -> Interrupted:
    """Ctrl-C during a list of jobs (a paper's grid, a sweep), read back from the runs folders: how
    many runs have finished, which one it interrupted (the run `error` names, else the first
    without a record: the launcher was between runs) and what that one saved."""
    planned = plan_jobs(jobs)
    labels = cell_labels([job.overrides for job in planned])
    done = [job.status.state in ("finished", "diverged") for job in planned]  # skipped by the next command
    tally = f"{sum(job.status.state == 'finished' for job in planned)} of {len(planned)} runs finished"
    run_dir = getattr(error, "run_dir", None)
    named = [i for i, job in enumerate(planned) if job.stages and job.stages[-1].directory == run_dir]
    if all(done):
        return Interrupted(f"interrupted after every run ended ({tally})", "run the same command to finish")
    index = named[0] if named and not done[named[0]] else done.index(False)
    if index in named and getattr(error, "resumes", False):
        what, after = error.what.removeprefix("interrupted "), "this one resumes"
    else:
        what, after = "before it saved anything", "this one starts again"
    stages = planned[index].stages
    return Interrupted(f"interrupted in run [{labels[index]}] {what}; {tally}",
                       f"run the same command to go on: finished runs are skipped, {after}",
                       stages[-1].directory if stages else None, resumes=after == "this one resumes")


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
