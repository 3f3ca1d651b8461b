"""Composed jobs -> where their runs live, what is left to do, and what it costs, without
training anything.

A job's stages and their folders come from engine/stages.plan_stages (layout.py names them);
the run's identity needs the data's fingerprint, read once per distinct data section from the
decoded-data cache (about 0.5 s for CIFAR-10; never downloaded here). A shared stage's epochs
count once however many jobs share it (with the first job that needs them), and not at all once
it is trained.

Cost (`job_cost`) comes from a short probe measured on this device (probe.py: seconds per step,
per test image, per checkpoint, and a run's fixed cost): steps left x s/step + evaluations x
s/evaluation + the pruning work that is not a training step (one-shot levels' evaluations, DPM's
latency measurement) + checkpoints + the fixed cost per run (data loaded, model built; a process
start too where the launcher starts one per job).

After Ctrl-C in a list of jobs (a sweep, a paper's grid), `interruption_of` reads the same
states back to say what finished and what the interrupted run saved.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from ..data import load_arrays, per_class_subset, steps_per_epoch
from ..engine.peek import checkpoint_epoch
from ..engine.stages import Stage, plan_stages
from ..errors import ConfigError, Interrupted, PruneBenchError
from ..humanize import duration
from ..latency import WARMUP_PASSES
from ..layout import CHECKPOINT
from ..pruning import build_pruner
from .probe import Probe, probe_key, process_start_seconds, run_probe
from .status import RunStatus, inspect_run


@dataclass
class PlannedJob:
    overrides: list[str]
    cfg: DictConfig
    status: RunStatus
    stages: list[Stage] | None = None
    n_train: int | None = None
    images_left: int = 0  # training images still to go (shared trainings counted once)
    epochs_left: dict[str, int] = field(default_factory=dict)  # per stage, those this job trains
    n_test: int | None = None
    data_problem: str | None = None  # why the data could not be read (then the run dir is unknown)

    @property
    def todo(self) -> bool:
        return self.status.state not in ("finished", "diverged")


def data_info(data_cfg, cache: dict) -> dict:
    """The data's fingerprint fields for a data section (read once per distinct section);
    raises PruneBenchError when the data cannot be read (it is never downloaded here)."""
    section = OmegaConf.to_container(data_cfg, resolve=True)
    key = json.dumps(section, sort_keys=True)
    if key not in cache:
        offline = OmegaConf.create({**section, "download": False})
        try:
            arrays, info = load_arrays(offline)
            info["n_train"] = len(per_class_subset(arrays.train_labels, section.get("train_per_class")))
            info["n_test"] = len(per_class_subset(arrays.test_labels, section.get("test_per_class")))
            cache[key] = info
        except PruneBenchError as error:
            cache[key] = error
    if isinstance(cache[key], Exception):
        raise cache[key]
    return cache[key]


def check_schedules(jobs: list[tuple[list[str], DictConfig]]) -> None:
    """What a job can only check once its training-set size is known (its pruner's schedule
    against the stage it acts in: engine/stages.plan_stages), for every job before any trains.
    Raises one ConfigError with a line per problem; jobs whose data cannot be read here are left
    to their own run, which says why."""
    cache: dict = {}
    problems = []
    for overrides, cfg in jobs:
        try:
            plan_stages(cfg, data_info(cfg.data, cache), build_pruner(cfg.pruner))
        except ConfigError as error:
            prefix = f"[{' '.join(overrides)}] " if len(jobs) > 1 else ""
            problems += [f"{prefix}{line}" for line in str(error).splitlines()]
        except PruneBenchError:
            continue
    if problems:
        raise ConfigError("\n".join(problems))


def epochs_left(stage: Stage) -> int:
    """Epochs a stage still has to train: none once its output exists, else those after its checkpoint."""
    if stage.finished():
        return 0
    checkpoint = stage.directory / CHECKPOINT
    done = checkpoint_epoch(checkpoint) if checkpoint.is_file() else None
    return stage.epochs - (done or 0)


def plan_jobs(jobs: list[tuple[list[str], DictConfig]]) -> list[PlannedJob]:
    """The state of every job's run, and the epochs each of its stages still needs: a stage
    shared by several jobs counted once, with the first job that needs it."""
    cache: dict = {}
    shared_counted: set = set()
    planned = []
    for overrides, cfg in jobs:
        label = " ".join(overrides)
        try:
            info = data_info(cfg.data, cache)
        except PruneBenchError as error:
            status = RunStatus("pending", label, "data not read here (see below)", job=overrides,
                               epochs=cfg.trainer.epochs)
            planned.append(PlannedJob(overrides, cfg, status, data_problem=str(error)))
            continue
        stages = plan_stages(cfg, info, build_pruner(cfg.pruner))
        run_dir = stages[-1].directory
        status = inspect_run(run_dir) if run_dir.is_dir() else RunStatus(
            "pending", run_dir.name, "no run directory yet", run_dir, epochs=cfg.trainer.epochs)
        status.job = overrides
        job = PlannedJob(overrides, cfg, status, stages=stages, n_train=info["n_train"], n_test=info["n_test"])
        if job.todo:
            for stage in stages:
                if stage.directory in shared_counted:
                    job.epochs_left[stage.name] = 0
                    continue
                job.epochs_left[stage.name] = epochs_left(stage)
                if stage.shared:
                    shared_counted.add(stage.directory)
            shared = [stage for stage in stages if stage.shared]
            if status.state == "pending" and shared and all(stage.finished() for stage in shared):
                status.detail = "no run directory yet; its shared stages are done"
            job.images_left = sum(job.epochs_left.values()) * info["n_train"]
        planned.append(job)
    return planned


# ----------------------------------------------------------------------------- cost


@dataclass
class Cost:
    """A job's estimated seconds, and what they are made of."""

    seconds: float
    steps: int
    evaluations: float  # test-set passes (a latency measurement counted in them)
    parts: dict  # training, evaluation, pruning, checkpoints, fixed: seconds each


@dataclass
class Probes:
    """The probes of a list of jobs: one per setting (probe.probe_key), and what they took."""

    by_key: dict
    seconds: float
    process_start: float = 0.0  # per run, where the launcher starts a process per job
    problems: dict = field(default_factory=dict)  # key -> why its probe failed (its jobs: no estimate)

    def of(self, job: PlannedJob) -> Probe | None:
        return self.by_key.get(probe_key(job.cfg))


def probe_jobs(jobs: list[PlannedJob], process_per_job: bool = False) -> Probes:
    """One probe per distinct setting among the jobs with work left (probe.py); with
    `process_per_job`, a process start measured once too."""
    started = time.perf_counter()
    by_key: dict = {}
    problems: dict = {}
    for job in jobs:
        if job.todo and job.n_train is not None:
            key = probe_key(job.cfg)
            if key not in by_key and key not in problems:
                try:
                    by_key[key] = run_probe(job.cfg)
                except Exception as error:  # an estimate is no reason to stop the grid: its run will say
                    problems[key] = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    process_start = 0.0
    if process_per_job and by_key:
        process_start = process_start_seconds()
    return Probes(by_key, time.perf_counter() - started, process_start, problems)


def evaluations_in(stage: Stage, epochs_to_train: int) -> int:
    """The test evaluations of a stage's last `epochs_to_train` epochs: every eval_every-th epoch
    and the last."""
    every = int(stage.trainer.get("eval_every", 1) or 1)
    first = stage.epochs - epochs_to_train + 1
    return sum(1 for epoch in range(first, stage.epochs + 1) if epoch % every == 0 or epoch == stage.epochs)


def pruning_evaluations(job: PlannedJob) -> float:
    """Test-set passes of the pruning work that is not a training step (pruning/ declares no
    cost, so its settings are read here): the evaluation after a pruner's finish; one-shot
    magnitude pruning's levels, each evaluated on a pruned copy at its stage's start; a slimmed
    model's latency measurement (the `latency` section: dense and slimmed, the warm-up and at
    least min_repeats forward passes at each batch size, counted as evaluated images; a median
    that takes longer to settle takes up to max_seconds more)."""
    pruner = job.cfg.pruner
    if pruner.name == "none":
        return 0.0
    passes = 1.0
    last = job.stages[-1]
    if pruner.name == "magnitude" and not (last.directory / CHECKPOINT).is_file():
        passes += len({float(level) for level in pruner.sparsity_levels} | {float(pruner.sparsity)})
    if pruner.name == "dpm":
        timed = 2 * (WARMUP_PASSES + int(job.cfg.latency.min_repeats))
        passes += sum(timed * int(batch) for batch in job.cfg.latency.batch_sizes) / job.n_test
    return passes


def job_cost(job: PlannedJob, probe: Probe, process_start: float = 0.0) -> Cost:
    """The seconds a job still needs on the probed device (see the module's docstring)."""
    if not job.todo:
        return Cost(0.0, 0, 0.0, {})
    steps = evaluations = checkpoints = 0
    for stage in job.stages:
        epochs = job.epochs_left.get(stage.name, 0)
        steps += epochs * steps_per_epoch(job.n_train, int(stage.trainer.batch_size))
        evaluations += evaluations_in(stage, epochs)
        checkpoints += epochs * bool(stage.trainer.checkpoint) + (1 if epochs and stage.shared else 0)
    checkpoints += 1  # the run's model.pt and record
    pruning = pruning_evaluations(job)
    seconds_per_eval = probe.seconds_per_test_image * job.n_test
    parts = {"training": steps * probe.seconds_per_step, "evaluation": evaluations * seconds_per_eval,
             "pruning": pruning * seconds_per_eval, "checkpoints": checkpoints * probe.seconds_per_checkpoint,
             "fixed": probe.seconds_fixed + process_start}
    return Cost(sum(parts.values()), steps, evaluations + pruning, parts)


def job_costs(jobs: list[PlannedJob], probes: Probes) -> list[Cost | None]:
    """Each job's cost (None where its data could not be read, so nothing was probed)."""
    costs = []
    for job in jobs:
        probe = probes.of(job)
        costs.append(job_cost(job, probe, probes.process_start) if probe is not None else
                     (Cost(0.0, 0, 0.0, {}) if not job.todo else None))
    return costs


def cost_text(job: PlannedJob, cost: Cost | None) -> str:
    if not job.todo:
        return ""
    if job.n_train is None:
        return f"{job.status.epochs} epochs x ? images"
    epochs = sum(job.epochs_left.values())
    text = f"{epochs:g} epochs x {job.n_train:,} images" if epochs else "no training left"
    if cost is not None:
        text += f", {cost.evaluations:.3g} evaluations: about {duration(cost.seconds)}"
    return text


def probe_text(probes: Probes) -> str:
    """What the probe measured, one line per setting."""
    lines = [f"(an estimate from a {probes.seconds:.0f} s probe: engine.loop's steps timed now on this device)"]
    for probe in probes.by_key.values():
        lines.append(f"  {probe.label}: {probe.seconds_per_step:.3g} s/step ({probe.steps_timed} timed), "
                     f"{1e3 * probe.seconds_per_test_image:.3g} ms per test image, "
                     f"{probe.seconds_per_checkpoint:.2g} s per checkpoint, {probe.seconds_fixed:.2g} s per run "
                     "to load the data and build the model")
    if probes.process_start:
        lines.append(f"  a process start per run: {probes.process_start:.2g} s")
    for problem in sorted(set(probes.problems.values())):
        lines.append(f"  no probe (those runs are not in the estimate): {problem}")
    return "\n".join(lines)


def cost_total(jobs: list[PlannedJob], costs: list[Cost | None] | None = None, probes: Probes | None = None,
               probe_again: bool = False) -> str:
    """The images to train and, with the probes, the estimated time; `probe_again`: a dry run,
    whose real run probes again before it launches."""
    images = sum(job.images_left for job in jobs)
    text = f"to train: {images:,} images"
    known = [cost for job, cost in zip(jobs, costs or [None] * len(jobs)) if job.todo and cost is not None]
    if known and probes is not None:
        total = sum(cost.seconds for cost in known)
        text += f"; about {duration(total)} for the runs left, one after another"
        if probe_again:
            text += f" ({duration(total + probes.seconds)} with the probe that runs again before they launch)"
        text += f"\n{probe_text(probes)}"
    elif probes is not None and probes.problems:
        text += "; no estimate:\n" + "\n".join(f"  {problem}" for problem in sorted(set(probes.problems.values())))
    unread = [job for job in jobs if job.data_problem]
    if unread:
        text += f", and {len(unread)} runs whose data is not readable here yet (not in the estimate)"
        for problem in sorted({job.data_problem for job in unread}):
            text += f"\n  {problem}"
    return text


# ----------------------------------------------------------------------------- after Ctrl-C


def cell_labels(jobs: list[list[str]]) -> list[str]:
    """Each job's overrides less those every job shares: what tells the cells apart."""
    common = set(jobs[0]).intersection(*jobs[1:]) if len(jobs) > 1 else set()
    return [" ".join(o for o in job if o not in common) for job in jobs]


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
