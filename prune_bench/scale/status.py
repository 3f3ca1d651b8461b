"""A runs folder -> the state of every run in it, from what the runs leave behind:

- finished / diverged: record.json (its status);
- running:     the run's lock (runs/.locks/<run dir>.lock) is held; progress.json says the epoch,
               img/s and ETA;
- failed:      failed.json (the exception), lock free, no record;
- interrupted: no record, lock free, and a checkpoint (in the run directory, or for a one-shot
               pruner in the shared training under runs/.trained/), or nothing saved yet;
- pending:     (for a paper's grid, plan.py) a cell with no run directory yet.

Works on any runs folder, whatever launched the runs (`run`, `run -m`, `reproduce`, SLURM).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout
from omegaconf import OmegaConf

from ..engine.peek import checkpoint_epoch
from ..engine.progress import read_json
from ..humanize import duration
from ..layout import (
    CHECKPOINT,
    CONFIG,
    FAILED,
    PROGRESS,
    RECORD,
    STAGE_OUTPUT,
    is_run_dir,
    is_shared,
    lock_path,
)

STATES = ("finished", "running", "interrupted", "failed", "diverged", "pending")
STALE_SECONDS = 300  # a running job's progress older than this is shown with its age


@dataclass
class RunStatus:
    state: str  # one of STATES
    name: str  # the run directory's name, or the cell's overrides while it has none
    detail: str = ""
    run_dir: Path | None = None
    job: list[str] = field(default_factory=list)  # a grid cell's overrides (paper status)
    epochs_done: int = 0  # completed epochs saved in a checkpoint (or all, when finished)
    epochs: int | None = None


def lock_held(folder: Path) -> bool:
    """Is the lock of a run's (or a shared stage's) folder held by a process (on any host sharing
    the runs folder)? Probing takes the lock for an instant when it is free; a job starting then
    waits that instant."""
    path = lock_path(folder)
    if not path.is_file():
        return False
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


def _configured_epochs(run_dir: Path) -> int | None:
    try:
        return int(OmegaConf.load(run_dir / CONFIG).trainer.epochs)
    except Exception:
        return None


def _record_detail(record: dict) -> str:
    config, metrics = record.get("config", {}), record.get("metrics", {})
    if record.get("status") == "diverged":
        return f"non-finite loss at step {record.get('diverged_step')} (seed {config.get('seed')})"
    parts = [f"test {metrics.get('test_acc', float('nan')):.2f}%"]
    if metrics.get("test_acc_trained") not in (None, metrics.get("test_acc")):
        parts[0] += f" (trained {metrics['test_acc_trained']:.2f}%)"
    sparsity = (record.get("sparsity") or {}).get("prunable")
    if sparsity:
        parts.append(f"sparsity {100 * sparsity:.1f}%")
    parts.append(f"seed {config.get('seed')}")
    timing = record.get("timing") or {}
    if timing.get("images_per_s"):
        parts.append(f"{timing['images_per_s']:.0f} img/s")
    return ", ".join(parts)


def where_trained(progress: dict | None, shared: str | None) -> str:
    """Where a run's epochs are counted: "" in its own directory, " (shared training[ NAME])" in a
    one-shot pruner's shared training, " (STAGE stage[, shared[ NAME]])" for a staged run (DPM).
    `shared`: None for the run's own directory, else the shared directory's name or ""."""
    named = f" {shared}" if shared else ""
    stage = (progress or {}).get("stage")
    if stage:
        return f" ({stage} stage{'' if shared is None else ', shared' + named})"
    return "" if shared is None else f" (shared training{named})"


def _running_detail(progress: dict | None) -> str:
    if not progress:
        return "started (no progress yet)"
    phase = progress.get("phase")
    shared = where_trained(progress, "" if is_shared(Path(progress.get("training_dir", ""))) else None)
    if phase != "training":
        text = {"starting": "starting, or waiting for the shared training",
                "finishing": f"trained {progress.get('epochs')} epochs; pruning, evaluating, writing the record"}.get(
            phase, phase or "?")
    else:
        epoch, epochs = progress.get("epoch"), progress.get("epochs")
        fraction = progress.get("epoch_fraction") or 0.0
        staged = (progress.get("stages") or 1) > 1
        if staged:  # stage 2/3 (sparse, shared), epoch 1/3 (40%), ...
            in_shared = is_shared(Path(progress.get("training_dir", "")))
            text = (f"stage {progress.get('stage_index')}/{progress['stages']} "
                    f"({progress.get('stage')}{', shared' if in_shared else ''}), "
                    f"epoch {epoch}/{epochs} ({100 * fraction:.0f}%)")
        else:
            text = f"epoch {epoch}/{epochs} ({100 * fraction:.0f}%){shared}"
        if progress.get("images_per_s"):
            text += f", {progress['images_per_s']:.0f} img/s"
        run_eta = progress.get("run_eta_s", progress.get("eta_s"))
        text += f", ETA for the run {duration(run_eta)}" if staged else f", ETA {duration(run_eta)}"
    age = time.time() - progress.get("updated_unix", time.time())
    if age > STALE_SECONDS:
        text += f" (last progress {duration(age)} ago)"
    where = f"SLURM job {progress['slurm_job']}" if progress.get("slurm_job") else f"pid {progress.get('pid')}"
    return f"{text} [{where} on {progress.get('host')}]"


def inspect_run(run_dir: Path) -> RunStatus:
    """The state of one run directory (it exists)."""
    run_dir = Path(run_dir)
    name = run_dir.name
    record = read_json(run_dir / RECORD)
    if record is not None:
        state = "diverged" if record.get("status") == "diverged" else "finished"
        epochs = (record.get("metrics") or {}).get("epochs_run")
        return RunStatus(state, name, _record_detail(record), run_dir, epochs_done=epochs or 0, epochs=epochs)
    progress = read_json(run_dir / PROGRESS)
    epochs = (progress or {}).get("epochs") or _configured_epochs(run_dir)
    if lock_held(run_dir):
        return RunStatus("running", name, _running_detail(progress), run_dir, epochs=epochs)
    failed = read_json(run_dir / FAILED)
    if failed is not None:
        return RunStatus("failed", name, failed.get("reason", "?"), run_dir, epochs=epochs)
    where = run_dir
    if progress and progress.get("training_dir"):
        where = Path(progress["training_dir"])
    if (where / STAGE_OUTPUT).is_file():
        return RunStatus("interrupted", name, f"training done (shared: {where.name}); pruning not done",
                         run_dir, epochs_done=epochs or 0, epochs=epochs)
    done = checkpoint_epoch(where / CHECKPOINT) if (where / CHECKPOINT).is_file() else None
    if done is None:
        return RunStatus("interrupted", name, "stopped before its first checkpoint", run_dir, epochs=epochs)
    shared = where_trained(progress, where.name if where != run_dir else None)
    return RunStatus("interrupted", name, f"checkpoint after epoch {done}/{epochs}{shared}", run_dir,
                     epochs_done=done, epochs=epochs)


def scan(runs_dir: Path) -> list[RunStatus]:
    """Every run directory directly under `runs_dir`."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return [inspect_run(path) for path in sorted(runs_dir.iterdir()) if is_run_dir(path)]


def totals(statuses: list[RunStatus]) -> str:
    counts = {state: sum(s.state == state for s in statuses) for state in STATES}
    return f"{len(statuses)} runs: " + ", ".join(f"{counts[state]} {state}" for state in STATES)


def render(statuses: list[RunStatus], extra: dict[int, str] | None = None) -> str:
    """One line per run (state, name, detail, and `extra[i]` if given), then the totals."""
    width = max((len(s.name) for s in statuses), default=0)
    lines = []
    for i, status in enumerate(statuses):
        line = f"{status.state:<12}{status.name:<{width}}  {status.detail}"
        if extra and extra.get(i):
            line += f"  {extra[i]}"
        lines.append(line.rstrip())
    lines.append(totals(statuses))
    return "\n".join(lines)
