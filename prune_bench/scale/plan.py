"""Composed jobs -> where their runs live and what is left to do, without training anything.

A job's stages and their folders come from engine/stages.plan_stages (layout.py names them);
the run's identity needs the data's fingerprint, read once per distinct data section from the
decoded-data cache (about 0.5 s for CIFAR-10; never downloaded here). A shared stage's cost
counts once however many jobs share it, and nothing once it is trained.

Cost is training images (epochs left x training-set size). With earlier records of the same
model on this device, it becomes hours at their median img/s (training only: evaluation and
pruning are not counted).
"""

from __future__ import annotations

import json
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..data import load_arrays, per_class_subset
from ..engine.checkpoint import checkpoint_epoch
from ..engine.runtime import resolve_device
from ..engine.stages import Stage, plan_stages
from ..errors import ConfigError, PruneBenchError
from ..layout import CHECKPOINT, runs_root
from ..pruning import build_pruner
from ..report.tables import collect_records
from .status import RunStatus, inspect_run


@dataclass
class PlannedJob:
    overrides: list[str]
    cfg: DictConfig
    status: RunStatus
    stages: list[Stage] | None = None
    n_train: int | None = None
    images_left: int = 0  # training images still to go (shared trainings counted once)
    speed: float | None = None  # img/s measured earlier for this model on this device
    data_problem: str | None = None  # why the data could not be read (then the run dir is unknown)


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


def device_key(cfg) -> tuple[str, str]:
    """(type, name) of the device a job would run on here, as records store it."""
    device = resolve_device(str(cfg.trainer.device))
    if device.type == "cuda":
        return "cuda", torch.cuda.get_device_name(device)
    return device.type, platform.processor() or platform.machine()


def measured_speeds(runs_dir: Path) -> dict[tuple, float]:
    """Median training img/s per (device type, device name, model) over the finished records."""
    speeds: dict[tuple, list[float]] = {}
    for record in collect_records(runs_dir) if Path(runs_dir).is_dir() else []:
        rate = (record.get("timing") or {}).get("images_per_s")
        if not rate or (record.get("timing") or {}).get("reused_trained_model"):
            continue
        device = record.get("device") or {}
        key = (device.get("type"), device.get("name"), record["config"]["model"]["name"])
        speeds.setdefault(key, []).append(rate)
    return {key: statistics.median(values) for key, values in speeds.items()}


def epochs_left(stage: Stage) -> int:
    """Epochs a stage still has to train: none once its output exists, else those after its checkpoint."""
    if stage.finished():
        return 0
    checkpoint = stage.directory / CHECKPOINT
    done = checkpoint_epoch(checkpoint) if checkpoint.is_file() else None
    return stage.epochs - (done or 0)


def plan_jobs(jobs: list[tuple[list[str], DictConfig]]) -> list[PlannedJob]:
    """The state of every job's run, and the training images each still needs: its stages' epochs
    left, a stage shared by several jobs counted once."""
    cache: dict = {}
    speeds_by_dir: dict[Path, dict] = {}
    shared_counted: set[Path] = set()
    planned = []
    for overrides, cfg in jobs:
        label = " ".join(overrides)
        runs_dir = runs_root(cfg)
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
        job = PlannedJob(overrides, cfg, status, stages=stages, n_train=info["n_train"])
        if status.state not in ("finished", "diverged"):
            left = 0
            for stage in stages:
                if stage.directory in shared_counted:
                    continue
                left += epochs_left(stage)
                if stage.shared:
                    shared_counted.add(stage.directory)
            shared = [stage for stage in stages if stage.shared]
            if status.state == "pending" and shared and all(stage.finished() for stage in shared):
                status.detail = "no run directory yet; its shared stages are done"
            job.images_left = left * info["n_train"]
        if runs_dir not in speeds_by_dir:
            speeds_by_dir[runs_dir] = measured_speeds(runs_dir)
        job.speed = speeds_by_dir[runs_dir].get((*device_key(cfg), str(cfg.model.name)))
        planned.append(job)
    return planned


def cost_text(job: PlannedJob) -> str:
    if job.status.state in ("finished", "diverged"):
        return ""
    if job.n_train is None:
        return f"{job.status.epochs} epochs x ? images"
    if job.images_left == 0:
        return "no training left"
    text = f"{job.images_left / job.n_train:g} epochs x {job.n_train:,} images"
    if job.speed:
        text += f" = {job.images_left / job.speed / 3600:.2f} h at {job.speed:.0f} img/s"
    return text


def cost_total(jobs: list[PlannedJob]) -> str:
    images = sum(job.images_left for job in jobs)
    known = [job for job in jobs if job.images_left and job.speed]
    hours = sum(job.images_left / job.speed for job in known) / 3600
    text = f"to train: {images:,} images"
    if known:
        unknown = sum(1 for job in jobs if job.images_left and not job.speed)
        text += f", about {hours:.2f} h on this device (training only"
        text += f"; {unknown} runs with no earlier record of their model here)" if unknown else ")"
    elif images:
        text += " (no earlier record of these models on this device: no time estimate)"
    unread = [job for job in jobs if job.data_problem]
    if unread:
        text += f", and {len(unread)} runs whose data is not readable here yet"
        for problem in sorted({job.data_problem for job in unread}):
            text += f"\n  {problem}"
    return text
