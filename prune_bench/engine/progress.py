"""Where a running job is, for people and for `prune-bench status`.

While a run trains, `Monitor` (called by the loop and the stage runner) shows where it is and
keeps a record of it:

- on a terminal (`trainer.progress: bar`, what `auto` picks there): a live bar inside each epoch
  (steps, img/s, running loss, the ETA of the whole run; "stage 2/3 sparse" on a staged run),
  and one line per finished epoch that stays on screen;
- piped (`lines`): one compact line per epoch (stage, epoch k/n, loss, train/test accuracy,
  img/s, seconds, the run's ETA); inside an epoch only when it runs long, at most one line a
  minute;
- always: `log.txt` in the run folder holds every line the run prints, with the time, and a
  detail line every 10% of an epoch (loss, img/s, ETAs); `progress.json` (atomic writes) holds
  the stage (index and count), epoch, step, img/s, the stage's and the run's ETA, and where the
  training state lives (for a shared stage, its folder under runs/.trained/).

The run's ETA counts the steps left in this stage and every later stage's steps (a stage reused
from a shared folder costs nothing), at the seconds per step measured so far in this process
(an epoch's seconds run from its first step to its checkpoint, so evaluations count). Each epoch,
each pruning event and the final record also go to the metric loggers (loggers.py).

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from ..fileio import atomic_write_json
from ..humanize import duration
from ..layout import FAILED, LOG, PROGRESS

DETAIL_FRACTION = 0.1  # a detail line in log.txt every 10% of an epoch
LINE_SECONDS = 60.0  # piped: a line inside an epoch only once it has run this long, at most one per this
BAR_LOSS_SECONDS = 1.0  # the bar's running loss: read from the device at most this often
BAR_TEXT_SECONDS = 0.1  # the bar's img/s and ETA (host-side numbers): recomputed at most this often


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class StagePlan:
    """What the run's ETA needs of a stage: its name, epochs, steps per epoch, and whether it is
    reused (a shared stage whose output exists: it costs nothing)."""

    name: str
    epochs: int
    steps_per_epoch: int
    reused: bool = False

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def steps_left(plan: list[StagePlan], index: int, step: int) -> int:
    """Optimizer steps the run still has: stage `index`'s after its step `step`, and those of
    every later stage that is not reused."""
    later = sum(stage.steps for stage in plan[index + 1:] if not stage.reused)
    return max(0, plan[index].steps - step) + later


class RunLog:
    """log.txt in the run folder: every line the run prints, and the details, each with the time.
    Appended to (a resumed run adds to it), one line at a time, so it is complete after a crash."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        self.path, self.clock, self.handle = Path(path), clock, None

    def write(self, line: str) -> None:
        if self.handle is None:
            self.handle = open(self.path, "a", buffering=1)
            self.handle.write(f"{self._stamp()} --- pid {os.getpid()} on {socket.gethostname()}\n")
        self.handle.write(f"{self._stamp()} {line}\n")

    def _stamp(self) -> str:
        return datetime.fromtimestamp(self.clock()).strftime("%Y-%m-%d %H:%M:%S")

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class Monitor:
    """The object the stage runner and the loop report to. Every call between steps reads
    host-side counters only; `due()` says when a report (one device read, for the loss) is wanted.

    `mode`: bar | lines | none (what is shown; log.txt and progress.json are written in every mode).
    `echo`: where shown lines go (print). `clock`: seconds (tests pass a fake one)."""

    def __init__(self, run_dir: Path, mode: str = "lines", echo=print, sinks=None,
                 clock: Callable[[], float] = time.perf_counter):
        self.run_dir = Path(run_dir)
        self.mode = mode
        self.echo = echo
        self.sinks = sinks  # loggers.Sinks, opened lazily (a finished run opens none)
        self.clock = clock
        self.run_log = RunLog(self.run_dir / LOG)
        self.bar = None
        self.training_dir = self.run_dir
        self.fields: dict = {}
        self.plan = [StagePlan("train", 0, 0)]
        self.stage_index = 0
        self.seconds_here = 0.0  # seconds of finished epochs in this process (evaluation, checkpoint included)
        self.steps_here = 0  # their steps

    # ---- what the run shows and logs
    def say(self, line: str) -> None:
        """A line the run prints: shown (above a live bar, if any) and written to log.txt."""
        if self.bar is not None:
            self.bar.clear()
        self.echo(line)
        sys.stdout.flush()  # a log file or a scheduler's output shows it now, not at exit
        if self.bar is not None:
            self.bar.refresh()
        self.run_log.write(line)

    def detail(self, line: str) -> None:
        """A line for log.txt only."""
        self.run_log.write(line)

    # ---- the run's lifetime (engine/run.py, engine/stages.py)
    def set_plan(self, plan: list[StagePlan]) -> None:
        """The run's stages, first to last (StageRunner.run, before the first one)."""
        self.plan = list(plan)

    def start(self, training_dir: Path, index: int = 0) -> None:
        """Stage `index` of the plan starts (or resumes) training in `training_dir`."""
        self.training_dir = Path(training_dir)
        self.stage_index = index
        self._write(phase="starting", stage=self.stage_name, stage_index=index + 1, stages=len(self.plan))

    def finish(self, record: dict) -> None:
        self._write(phase=record["status"], eta_s=0.0, run_eta_s=0.0)
        if self.sinks is not None:
            self.sinks.finish(record)

    def close(self) -> None:
        self._close_bar()
        if self.sinks is not None:
            self.sinks.close()
        self.run_log.close()

    @property
    def staged(self) -> bool:
        return len(self.plan) > 1

    @property
    def stage_name(self) -> str | None:
        return self.plan[self.stage_index].name if self.staged else None

    def stage_label(self) -> str:
        """'stage 2/3 sparse, ' on a staged run, else ''."""
        if not self.staged:
            return ""
        return f"stage {self.stage_index + 1}/{len(self.plan)} {self.stage_name}, "

    # ---- training (engine/loop.train_epoch, engine/stages.py)
    def start_epoch(self, epoch: int, epochs: int, n_steps: int, state, n_images: int | None = None) -> None:
        """`epoch` counts from 0; `state` is the FitState before the epoch; `n_images` the
        epoch's training images (the bar's img/s between reports; without it, none is shown)."""
        self.epoch, self.epochs, self.n_steps = epoch, epochs, n_steps
        self.n_images = n_images
        self.every = max(1, int(n_steps * DETAIL_FRACTION))
        now = self.clock()
        self.epoch_started = self.last_report = self.last_line = now
        self.last_text = now - BAR_TEXT_SECONDS
        self.step_at_epoch_start = state.step
        self.loss_text = ""
        if self.sinks is not None:
            self.sinks.open(start_step=state.step)
        self._write(phase="training", stage=self.stage_name, stage_index=self.stage_index + 1, stages=len(self.plan),
                    epoch=epoch + 1, epochs=epochs, epoch_fraction=0.0, step=state.step, steps_total=epochs * n_steps,
                    run_eta_s=self.run_eta(state.step, 0, now))
        if self.mode == "bar":
            self._close_bar()
            self.bar = tqdm(total=n_steps, desc=f"{self.stage_label()}epoch {epoch + 1}/{epochs}", leave=False,
                            file=sys.stderr, dynamic_ncols=True,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps [{elapsed}{postfix}]")

    def due(self, done: int) -> bool:
        """After `done` steps of this epoch: time for a report with the loss? Advances the bar
        (host-side numbers only: no device sync here)."""
        now = self.clock()
        if self.bar is not None:
            if now - self.last_text >= BAR_TEXT_SECONDS or done == self.n_steps:
                self.last_text = now
                self.bar.set_postfix_str(self._bar_text(done, now), refresh=False)
            self.bar.update(done - self.bar.n)
            if done == self.n_steps:
                self._close_bar()
        if done == self.n_steps:
            return False  # the epoch line follows
        if done % self.every == 0 or now - self.last_report >= LINE_SECONDS:
            return True
        return self.bar is not None and now - self.last_report >= BAR_LOSS_SECONDS

    def during_epoch(self, done: int, loss: float, seen: int) -> None:
        now = self.clock()
        self.last_report = now
        elapsed = now - self.epoch_started
        step = self.step_at_epoch_start + done
        images_per_s = seen / elapsed if elapsed > 0 else None
        stage_eta = self._eta(self.epochs * self.n_steps - step, done, now)
        run_eta = self.run_eta(step, done, now)
        self._write(phase="training", epoch_fraction=done / self.n_steps, step=step,
                    images_per_s=images_per_s, eta_s=stage_eta, run_eta_s=run_eta, train_loss=loss)
        self.loss_text = f"loss {loss:.3f}"
        line = (f"{self.stage_label()}epoch {self.epoch + 1}/{self.epochs} {100 * done / self.n_steps:3.0f}% "
                f"({done}/{self.n_steps} steps)  loss {loss:.4f}  {images_per_s or 0:.0f} img/s  "
                f"{'stage ETA ' + duration(stage_eta) + '  ' if self.staged else ''}run ETA {duration(run_eta)}")
        if self.mode == "lines" and now - self.last_line >= LINE_SECONDS:  # a long epoch: a line a minute
            self.last_line = now
            self.say(line)
        elif done % self.every == 0:
            self.detail(line)

    def after_epoch(self, entry: dict, state, pruner_report: dict) -> None:
        """The epoch's entry (its evaluation and checkpoint done): the epoch line, progress.json,
        the loggers."""
        now = self.clock()
        self.seconds_here += now - self.epoch_started
        self.steps_here += state.step - self.step_at_epoch_start
        run_eta = self.run_eta(state.step, 0, now)
        stage_eta = self._eta(self.epochs * self.n_steps - state.step, 0, now)
        last = entry["epoch"] == self.epochs  # then: the pruner's finish, evaluation, the record
        self._write(phase="finishing" if last else "training", epoch=entry["epoch"], epoch_fraction=1.0,
                    step=state.step, images_per_s=entry["images_per_s"], eta_s=stage_eta, run_eta_s=run_eta,
                    train_loss=entry["train_loss"])
        left = steps_left(self.plan, self.stage_index, state.step)
        self.say(epoch_line(entry, self.epochs, self.stage_label()) + (f"  run ETA {duration(run_eta)}" if left else ""))
        if self.sinks is not None:
            self.sinks.epoch(entry, state.history, pruner_report.get("event_log", []))

    # ---- the ETA
    def seconds_per_step(self, steps_now: int = 0, now: float | None = None) -> float | None:
        """Seconds per step in this process: finished epochs, plus `steps_now` steps of the
        running epoch until `now`."""
        steps = self.steps_here + steps_now
        seconds = self.seconds_here + (now - self.epoch_started if steps_now and now is not None else 0.0)
        if steps <= 0 or seconds <= 0:
            return None
        return seconds / steps

    def run_eta(self, step: int, steps_now: int, now: float) -> float | None:
        """Seconds left in the whole run with the current stage at `step` (`steps_now` of them
        in the running epoch)."""
        return self._eta(steps_left(self.plan, self.stage_index, step), steps_now, now)

    def _eta(self, steps: int, steps_now: int, now: float) -> float | None:
        rate = self.seconds_per_step(steps_now, now)
        return None if rate is None else steps * rate

    # ---- helpers
    def _bar_text(self, done: int, now: float) -> str:
        elapsed = now - self.epoch_started
        parts = []
        if self.n_images and elapsed > 0 and done:
            parts.append(f"{done * self.n_images / self.n_steps / elapsed:.0f} img/s")
        if self.loss_text:
            parts.append(self.loss_text)
        eta = self.run_eta(self.step_at_epoch_start + done, done, now)
        parts.append(f"run ETA {duration(eta)}")
        return ", ".join(parts)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _write(self, **fields) -> None:
        self.fields.update(fields)
        self.fields.update(pid=os.getpid(), host=socket.gethostname(), slurm_job=slurm_job(),
                           updated=_now(), updated_unix=time.time(), training_dir=str(self.training_dir))
        atomic_write_json(self.run_dir / PROGRESS, self.fields)


def epoch_line(entry: dict, epochs: int, stage: str = "") -> str:
    """One finished epoch: `stage` ('stage 2/3 sparse, ' or ''), epoch k/n, loss, accuracies,
    sparsity, lr, img/s and seconds."""
    parts = [f"{stage}epoch {entry['epoch']}/{epochs}", f"loss {entry['train_loss']:.4f}",
             f"train {entry['train_acc']:.2f}%"]
    if "test_acc" in entry:
        parts.append(f"test {entry['test_acc']:.2f}%")
    if "sparsity" in entry:
        parts.append(f"sparsity {100 * entry['sparsity']:.2f}%")
    elif entry.get("zeros_all", 0) > 0:
        parts.append(f"zeros {100 * entry['zeros_all']:.2f}%")
    parts += [f"lr {entry['lr']:.4g}", f"{entry['images_per_s']:.0f} img/s", f"{entry['seconds']:.1f}s"]
    return "  ".join(parts)


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
