"""Where a running job is, for people and for `prune-bench status`.

While a run trains, `Monitor` (called by the loop and the stage runner) keeps `progress.json`
in the run directory up to date (atomic writes: epoch, step, img/s, ETA, and where the training
state lives, which for a shared stage is its folder under runs/.trained/), shows a progress bar
on a terminal or prints a progress line at least every 10% of an epoch or every 60 s when output
is not a terminal, and hands each epoch, each pruning event and the final record to the metric
loggers (loggers.py).

`note_failure` leaves `failed.json` (the exception and its traceback) in the run directory of a
run that raised, so the other jobs of a sweep go on and `status` can say why it failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from ..fileio import atomic_write_json
from ..humanize import duration
from ..layout import FAILED, PROGRESS

REFRESH_EVERY = 50  # steps between the bar's loss refreshes (each one reads the loss from the device)
LINE_FRACTION = 0.1  # a progress line at least every 10% of an epoch ...
LINE_SECONDS = 60.0  # ... or every 60 s, whichever comes first


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Monitor:
    """The object fit() reports to. Every call between steps reads host-side counters only;
    `due()` says when a report (which needs one device sync for the loss) is wanted."""

    def __init__(self, run_dir: Path, print_lines: bool, log=print, sinks=None, bar: bool = False):
        self.run_dir = Path(run_dir)
        self.print_lines = print_lines
        self.show_bar = bar
        self.bar = None
        self.log = log
        self.sinks = sinks  # loggers.Sinks, opened lazily (a finished run opens none)
        self.training_dir = self.run_dir
        self.fields: dict = {}
        self._seconds = 0.0  # training seconds in this process, for the ETA
        self._steps = 0

    # ---- the run's lifetime (experiment.run)
    def start(self, training_dir: Path, stage: str | None = None) -> None:
        """`stage`: which stage of a staged run (stages.py) trains in `training_dir`."""
        self.training_dir = Path(training_dir)
        self._write(phase="starting", stage=stage)

    def finish(self, record: dict) -> None:
        self._write(phase=record["status"], eta_s=0.0)
        if self.sinks is not None:
            self.sinks.finish(record)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.sinks is not None:
            self.sinks.close()

    # ---- training (engine/loop.train_epoch, engine/stages.py)
    def start_epoch(self, epoch: int, epochs: int, n_steps: int, state) -> None:
        """`epoch` counts from 0; `state` is the FitState before the epoch."""
        self.epoch, self.epochs, self.n_steps = epoch, epochs, n_steps
        self.every = max(1, int(n_steps * LINE_FRACTION))
        self.epoch_started = self.last_report = time.perf_counter()
        self.step_at_epoch_start = state.step
        if self.sinks is not None:
            self.sinks.open(start_step=state.step)
        self._write(phase="training", epoch=epoch + 1, epochs=epochs, epoch_fraction=0.0,
                    step=state.step, steps_total=epochs * n_steps)
        if self.show_bar:
            self.bar = tqdm(total=n_steps, desc=f"epoch {epoch + 1}/{epochs}", leave=False, file=sys.stderr)

    def due(self, done: int) -> bool:
        """After `done` steps of this epoch (the bar advances): time for a report with the loss?
        (No device sync here.)"""
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if done == self.n_steps:
                self.bar.close()
                self.bar = None
            elif done % REFRESH_EVERY == 0:
                return True
        if done == self.n_steps:
            return False  # the epoch line follows
        return done % self.every == 0 or time.perf_counter() - self.last_report >= LINE_SECONDS

    def during_epoch(self, done: int, loss: float, seen: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}")
        now = time.perf_counter()
        self.last_report = now
        elapsed = now - self.epoch_started
        step = self.step_at_epoch_start + done
        eta = self._eta(step, self._steps + done, self._seconds + elapsed)
        images_per_s = seen / elapsed if elapsed > 0 else None
        self._write(phase="training", epoch_fraction=done / self.n_steps, step=step,
                    images_per_s=images_per_s, eta_s=eta, train_loss=loss)
        if self.print_lines:
            self.log(f"epoch {self.epoch + 1}/{self.epochs} {100 * done / self.n_steps:3.0f}% "
                     f"({done}/{self.n_steps} steps)  loss {loss:.4f}  "
                     f"{images_per_s or 0:.0f} img/s  ETA {duration(eta)}")
            sys.stdout.flush()  # a log file or a scheduler's output shows it now, not at exit

    def after_epoch(self, entry: dict, state, pruner_report: dict) -> None:
        self._seconds += entry["seconds"]
        self._steps += state.step - self.step_at_epoch_start
        eta = self._eta(state.step, self._steps, self._seconds)
        last = entry["epoch"] == self.epochs  # then: the pruner's finish, evaluation, the record
        self._write(phase="finishing" if last else "training", epoch=entry["epoch"], epoch_fraction=1.0,
                    step=state.step, images_per_s=entry["images_per_s"], eta_s=eta, train_loss=entry["train_loss"])
        if self.sinks is not None:
            self.sinks.epoch(entry, state.history, pruner_report.get("event_log", []))

    # ---- helpers
    def _eta(self, step: int, steps_here: int, seconds_here: float) -> float | None:
        if steps_here <= 0 or seconds_here <= 0:
            return None
        return (self.epochs * self.n_steps - step) * seconds_here / steps_here

    def _write(self, **fields) -> None:
        self.fields.update(fields)
        self.fields.update(pid=os.getpid(), host=socket.gethostname(), slurm_job=slurm_job(),
                           updated=_now(), updated_unix=time.time(), training_dir=str(self.training_dir))
        atomic_write_json(self.run_dir / PROGRESS, self.fields)


def slurm_job() -> str | None:
    """The SLURM job this process runs in (array jobs as ARRAYID_TASK, as squeue shows them)."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
    return os.environ.get("SLURM_JOB_ID")


def read_json(path: Path) -> dict | None:
    """A small JSON file, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def note_failure(run_dir: Path):
    """Around one attempt at a run: a stale failed.json goes on entry; an exception leaves the
    reason in failed.json (then propagates). Bad input (a PruneBenchError) before the run has
    anything worth keeping removes its folder (experiment.run, workspace.py), so that reason lives
    only in the command's one-line error. Ctrl-C, SIGKILL and a scheduler's exit are not
    failures: the run is interrupted and resumes."""
    run_dir = Path(run_dir)
    (run_dir / FAILED).unlink(missing_ok=True)
    try:
        yield
    except Exception as error:
        if run_dir.is_dir():  # a run that failed before its folder existed leaves nothing
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:500]
            try:
                atomic_write_json(run_dir / FAILED, {"reason": reason, "traceback": traceback.format_exc(),
                                                     "host": socket.gethostname(), "time": _now()})
            except OSError:  # a full or read-only disk: the error that met it first is the one to raise
                pass
        raise
