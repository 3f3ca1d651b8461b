"""Metric loggers, the `logger` config group: any of csv (on by default), tensorboard, wandb.

`logger=[csv,tensorboard,wandb]` selects several; `logger=[]` none. None needs a network: wandb
runs in offline mode unless told otherwise (`logger.wandb.mode`). What each writes, in the run
directory:
- csv:         metrics.csv, one row per epoch (rewritten whole from the run's history, so a
               resumed run never has a duplicate or a missing row);
- tensorboard: tensorboard/ event files: every numeric epoch value under `epoch/` at the step
               the epoch ended, every pruning event under `prune/` at its step, and for one-shot
               pruning the accuracy at each level under `levels/` (x = percent pruned);
- wandb:       wandb/ (an offline run; `wandb sync` uploads it later): the same values.
Loggers do not change what a run computes, so the `logger` section is not part of its identity.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

from ..fileio import atomic_write_text
from ..registry import Component, choice


@dataclass
class CsvLoggerConfig:
    file: str


@dataclass
class TensorBoardLoggerConfig:
    dir: str
    flush_secs: int


@dataclass
class WandbLoggerConfig:
    project: str
    mode: str
    dir: str


def _numeric(entry: dict) -> dict:
    return {k: v for k, v in entry.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch", "step")}


def _level_accuracies(record: dict) -> dict[int, float]:
    """One-shot pruning: {percent pruned: test accuracy}."""
    levels = (record.get("metrics") or {}).get("levels") or {}
    return {round(100 * level["sparsity"]): level["test_acc"] for level in levels.values()
            if "test_acc" in level}


class CsvLogger:
    def __init__(self, cfg, run_dir: Path, run_id: str, config: dict):
        self.path = Path(run_dir) / cfg.file

    def open(self, start_step: int) -> None:
        pass

    def write(self, history: list[dict]) -> None:
        columns = list(dict.fromkeys(key for entry in history for key in entry))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.path, buffer.getvalue())

    def epoch(self, entry: dict, history: list[dict], new_events: list[dict]) -> None:
        self.write(history)

    def finish(self, record: dict) -> None:
        if record.get("history"):
            self.write(record["history"])

    def close(self) -> None:
        pass


class TensorBoardLogger:
    def __init__(self, cfg, run_dir: Path, run_id: str, config: dict):
        self.dir = Path(run_dir) / cfg.dir
        self.flush_secs = cfg.flush_secs
        self.writer = None

    def open(self, start_step: int) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: after a resume, values logged past the checkpoint are hidden
            self.writer = SummaryWriter(str(self.dir), purge_step=start_step or None,
                                        flush_secs=self.flush_secs)

    def epoch(self, entry: dict, history: list[dict], new_events: list[dict]) -> None:
        for event in new_events:
            for key, value in _numeric(event).items():
                self.writer.add_scalar(f"prune/{key}", value, event["step"])
        for key, value in _numeric(entry).items():
            self.writer.add_scalar(f"epoch/{key}", value, entry["step"])
        self.writer.flush()

    def finish(self, record: dict) -> None:
        levels = _level_accuracies(record)
        if not levels:
            return
        self.open(0)
        for percent, accuracy in sorted(levels.items()):
            self.writer.add_scalar("levels/test_acc", accuracy, percent)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandbLogger:
    def __init__(self, cfg, run_dir: Path, run_id: str, config: dict):
        self.cfg, self.run_dir, self.run_id, self.config = cfg, Path(run_dir), run_id, config
        self.run = None

    def open(self, start_step: int) -> None:
        if self.run is None:
            import wandb

            directory = self.run_dir / self.cfg.dir
            directory.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(project=self.cfg.project, mode=self.cfg.mode, dir=str(directory),
                                  id=self.run_id, name=self.run_dir.name, config=self.config,
                                  resume="allow", reinit="finish_previous")
            # x axis: the run's optimizer step, logged as a value (wandb's own step counter only
            # grows, so a resumed run's epochs would be dropped)
            self.run.define_metric("step")
            self.run.define_metric("*", step_metric="step")

    def epoch(self, entry: dict, history: list[dict], new_events: list[dict]) -> None:
        for event in new_events:
            self.run.log({"step": event["step"], **{f"prune/{k}": v for k, v in _numeric(event).items()}})
        self.run.log({"step": entry["step"], **{f"epoch/{k}": v for k, v in _numeric(entry).items()}})

    def finish(self, record: dict) -> None:
        levels = _level_accuracies(record)
        if levels:
            self.open(0)
            self.run.summary.update({f"levels/test_acc_p{p}": a for p, a in levels.items()})
        if self.run is not None:
            self.run.summary["status"] = record["status"]

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _needs(package: str, extra: str):
    def validate(cfg) -> list[str]:
        if importlib.util.find_spec(package) is None:
            return [f"logger.{extra}: needs the {package} package; pip install 'prune-bench[{extra}]' "
                    f"or leave it out of logger=[...]"]
        return []

    return validate


def _check_wandb(cfg) -> list[str]:
    return _needs("wandb", "wandb")(cfg) + choice(cfg, "mode", "logger.wandb", ("offline", "online", "disabled"))


LOGGERS = {
    "csv": Component(CsvLogger, schema=CsvLoggerConfig),
    "tensorboard": Component(TensorBoardLogger, _needs("tensorboard", "tensorboard"), TensorBoardLoggerConfig),
    "wandb": Component(WandbLogger, _check_wandb, WandbLoggerConfig),
}


def validate_loggers(section) -> list[str]:
    """Problems of the selected loggers' values (their keys and types are schema.py's)."""
    return [problem for name in section for problem in LOGGERS[name].validate(section[name])]


class Sinks:
    """The selected loggers, opened when the first epoch starts (a finished run opens none)."""

    def __init__(self, section, run_dir: Path, run_id: str, config: dict):
        self.loggers = [LOGGERS[name].build(section[name], run_dir, run_id, config) for name in section or {}]

    def open(self, start_step: int) -> None:
        for logger in self.loggers:
            logger.open(start_step)

    def epoch(self, entry: dict, history: list[dict], event_log: list[dict]) -> None:
        new_events = [e for e in event_log if e["step"] > self._last_event_step(history)]
        for logger in self.loggers:
            logger.epoch(entry, history, new_events)

    @staticmethod
    def _last_event_step(history: list[dict]) -> int:
        """Events up to the end of the previous epoch were logged with it."""
        return history[-2]["step"] if len(history) > 1 else -1

    def finish(self, record: dict) -> None:
        for logger in self.loggers:
            logger.finish(record)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
