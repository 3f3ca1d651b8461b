"""While a launcher runs a grid's jobs: runs done / left and the time left, printed as each run
ends. Read from the runs folder (records, failed.json), not from the launcher, so it is the same
for every launcher: the basic one (jobs in this process), joblib (processes on this machine) or
SLURM (jobs elsewhere, sharing the runs folder).

The time left is the estimated cost of the runs left (plan.job_cost, from the probe) scaled by
what the ended runs measured: the seconds since the launch over the estimated cost of the runs
that ended, so a probe that was off, a busier machine or jobs that run side by side correct it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..humanize import duration
from ..layout import FAILED, RECORD
from .plan import Cost, PlannedJob

POLL_SECONDS = 2.0


def time_left(costs_left: float, costs_ended: float, elapsed: float) -> float:
    """Seconds left: the estimate of the runs left, at the pace the ended runs kept (the estimate
    as it is before any run ended)."""
    if costs_ended <= 0 or elapsed <= 0:
        return costs_left
    return costs_left * elapsed / costs_ended


class GridWatch:
    """Polls the run folders of `jobs` (those being launched) from a thread; `done_before` runs
    of the grid had a record already."""

    def __init__(self, jobs: list[PlannedJob], costs: list[Cost | None], done_before: int, log: Callable,
                 poll_seconds: float | None = None, clock: Callable[[], float] = time.time):
        self.jobs, self.costs, self.done_before, self.log = jobs, costs, done_before, log
        self.poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
        self.clock = clock
        self.ended: set[int] = set()
        self.started = clock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="prune-bench grid watch", daemon=True)

    def line(self) -> str:
        """'3/6 runs done, 3 left; about 12m10s left (...)'."""
        total = self.done_before + len(self.jobs)
        done = self.done_before + len(self.ended)
        left = len(self.jobs) - len(self.ended)
        text = f"reproduce: {done}/{total} runs done, {left} left"
        if not left or all(cost is None for cost in self.costs):
            return text
        cost = [c.seconds if c is not None else 0.0 for c in self.costs]
        ended = sum(cost[i] for i in self.ended)
        remaining = sum(cost[i] for i in range(len(self.jobs)) if i not in self.ended)
        elapsed = self.clock() - self.started
        seconds = time_left(remaining, ended, elapsed)
        how = "the probe's estimate"
        if ended > 0:
            how += f" x {elapsed / ended:.2f}, the pace of the runs that ended"
        return f"{text}; about {duration(seconds)} left ({how})"

    def poll(self) -> None:
        """Say so when runs ended since the last poll (a record, or a failure after the launch)."""
        newly = [i for i, job in enumerate(self.jobs) if i not in self.ended and self._ended(job)]
        if newly:
            self.ended.update(newly)
            self.log(self.line())

    def _ended(self, job: PlannedJob) -> bool:
        run_dir = job.status.run_dir
        if run_dir is None:
            return False
        if (run_dir / RECORD).is_file():
            return True
        failed = run_dir / FAILED
        try:
            return failed.stat().st_mtime >= self.started
        except OSError:
            return False

    def _loop(self) -> None:
        while not self.stopping.wait(self.poll_seconds):
            self.poll()

    def __enter__(self) -> GridWatch:
        self.started = self.clock()
        self.log(self.line())
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()
        self.poll()
        text = f"reproduce: {len(self.ended)} of {len(self.jobs)} runs ended in {duration(self.clock() - self.started)}"
        if any(cost is not None for cost in self.costs):
            text += f" (the probe's estimate: {duration(sum(cost.seconds for cost in self.costs if cost is not None))})"
        self.log(text)
