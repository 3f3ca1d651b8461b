"""Every path under a runs folder: nothing else in the project builds these names.

    runs/
      <model>_<optimizer>_<pruner>-<run id>/   a run's own folder, where its last stage trains:
                                               config.yaml, log.txt, progress.json, checkpoint.pt
                                               (while training), then record.json and model.pt;
                                               failed.json after a crash
      .trained/<label>-<stage id>/             a stage shared by every run whose stages begin the
                                               same way: checkpoint.pt while training, then trained.pt
      .locks/<folder name>.lock                one process per folder at a time
      .multirun/                               Hydra's sweep logs

A folder's id is its identity (identity.py: a hash of what the run or the stage computes), so
two runs whose stages begin alike share those folders. This module imports nothing heavy:
`prune-bench status` reads runs folders through it.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from .targets import label

RECORD = "record.json"
CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"
STAGE_OUTPUT = "trained.pt"  # a finished shared stage: its final weights, shapes and FitState
MODEL = "model.pt"
PROGRESS = "progress.json"
FAILED = "failed.json"
LOG = "log.txt"
SHARED = ".trained"
LOCKS = ".locks"
SWEEPS = ".multirun"
WORTH_KEEPING = (RECORD, CHECKPOINT, STAGE_OUTPUT, MODEL)  # a folder holding one is never removed


# ----------------------------------------------------------------------------- paths


def runs_root(cfg: DictConfig) -> Path:
    return Path(os.path.expanduser(str(cfg.paths.runs_dir)))


def results_root(cfg: DictConfig) -> Path:
    return Path(os.path.expanduser(str(cfg.paths.results_dir)))


def run_label(cfg: DictConfig) -> str:
    """The run folder's prefix says what ran (an experiment's name may no longer, after overrides);
    a custom component by its target's name (targets.label)."""
    return f"{label(cfg.model)}_{label(cfg.optimizer)}_{label(cfg.pruner)}"


def run_dir(cfg: DictConfig, identity: str) -> Path:
    """A run's own folder: what ran, then its identity (identity.run_identity)."""
    return runs_root(cfg) / f"{run_label(cfg)}-{identity}"


def shared_dir(runs_dir: Path, label: str, identity: str) -> Path:
    """A shared stage's folder: `label` says what it trains (e.g. resnet56_sgd, resnet56_depgraph-sparse)."""
    return Path(runs_dir) / SHARED / f"{label}-{identity}"


def runs_dir_of(folder: Path) -> Path:
    """The runs folder a run folder or a shared stage folder lives in."""
    folder = Path(folder)
    return folder.parent.parent if folder.parent.name == SHARED else folder.parent


def is_shared(folder: Path) -> bool:
    return Path(folder).parent.name == SHARED


def lock_path(folder: Path) -> Path:
    """The lock file that one process holds while it works in `folder` (a run's or a shared stage's)."""
    return runs_dir_of(folder) / LOCKS / f"{Path(folder).name}.lock"


def sweep_dir(runs_dir: Path) -> Path:
    return Path(runs_dir) / SWEEPS


def is_run_dir(path: Path) -> bool:
    """A run's own folder (not a shared stage, a lock or a sweep log)."""
    path = Path(path)
    return path.is_dir() and not path.name.startswith(".") and any(
        (path / name).exists() for name in (CONFIG, RECORD, PROGRESS, FAILED, CHECKPOINT))


def record_paths(runs_dir: Path) -> list[Path]:
    """Every record.json under a runs folder (its run folders, and any folder of runs below it)."""
    return sorted(Path(runs_dir).glob(f"**/{RECORD}"))
