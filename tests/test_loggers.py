"""Metric loggers: what each writes is read back and compared with the run's own history."""

import csv

import pytest

from conftest import interrupt_in_epoch, make_config, run_cli
from prune_bench.engine.run import run

pytestmark = pytest.mark.usefixtures("one_thread")
GRADUAL = ["pruner=gmp", "pruner.sparsity=0.5", "pruner.events=3", "pruner.t_end=1.0"]  # events in epochs 1 and 2


def _run_dir(tmp_path, record):
    return tmp_path / "runs" / record["run_dir"].rsplit("/", 1)[-1]


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_csv_is_the_history_one_row_per_epoch_also_after_a_resume(tmp_path, tiny_overrides, monkeypatch):
    cfg = make_config([*tiny_overrides, "trainer.epochs=3", "trainer.progress=lines"])
    interrupt_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, log=lambda line: None)
    monkeypatch.undo()
    record = run(cfg, log=lambda line: None)
    assert record["timing"]["resumed_after_epoch"] == 2
    rows = _rows(_run_dir(tmp_path, record) / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row, entry in zip(rows, record["history"]):
        assert float(row["test_acc"]) == pytest.approx(entry["test_acc"]) and int(row["step"]) == entry["step"]
    none = run(make_config([*tiny_overrides, "seed=2", "logger=[]"]), log=lambda line: None)
    assert not (_run_dir(tmp_path, none) / "metrics.csv").exists()


def test_tensorboard_scalars_per_epoch_and_per_pruning_event(tmp_path, tiny_overrides):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = run(make_config([*tiny_overrides, *GRADUAL, "logger=[csv,tensorboard]"]), log=lambda line: None)
    events = EventAccumulator(str(_run_dir(tmp_path, record) / "tensorboard"))
    events.Reload()
    loss = events.Scalars("epoch/train_loss")
    assert [(s.step, pytest.approx(s.value)) for s in loss] == [(h["step"], h["train_loss"]) for h in record["history"]]
    pruned = events.Scalars("prune/sparsity")
    log = record["pruner"]["event_log"]
    assert len(log) == 3 and [(s.step, pytest.approx(s.value)) for s in pruned] == [(e["step"], e["sparsity"]) for e in log]
    assert _rows(_run_dir(tmp_path, record) / "metrics.csv")  # csv beside it


@pytest.mark.slow
def test_tensorboard_levels_of_one_shot_pruning(tmp_path, tiny_overrides):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = run(make_config([*tiny_overrides, "pruner=magnitude", "pruner.sparsity_levels=[0.0,0.3]",
                              "logger=[tensorboard]"]), log=lambda line: None)
    events = EventAccumulator(str(_run_dir(tmp_path, record) / "tensorboard"))
    events.Reload()
    levels = record["metrics"]["levels"]
    expected = sorted((round(100 * v["sparsity"]), v["test_acc"]) for v in levels.values())
    assert [(s.step, pytest.approx(s.value)) for s in events.Scalars("levels/test_acc")] == expected


@pytest.mark.slow
def test_wandb_offline_run_holds_the_last_epoch(tmp_path, tiny_overrides, monkeypatch):
    """The offline run's summary (the last value of every key wandb was given), read from the
    live run just before it closes, and the offline run file named by the run's identity."""
    pytest.importorskip("wandb")
    from prune_bench.engine.loggers import WandbLogger

    monkeypatch.setenv("WANDB_SILENT", "true")
    summaries = []
    close = WandbLogger.close

    def keep_summary(self):
        if self.run is not None:
            summaries.append({key: self.run.summary[key] for key in self.run.summary.keys()})
        close(self)

    monkeypatch.setattr(WandbLogger, "close", keep_summary)
    record = run(make_config([*tiny_overrides, *GRADUAL, "logger=[wandb]"]), log=lambda line: None)
    (summary,) = summaries
    last, events = record["history"][-1], record["pruner"]["event_log"]
    assert summary["epoch/test_acc"] == pytest.approx(last["test_acc"])
    assert summary["epoch/train_loss"] == pytest.approx(last["train_loss"])
    assert summary["prune/sparsity"] == pytest.approx(events[-1]["sparsity"]) and summary["status"] == "finished"
    assert summary["step"] == last["step"]
    (offline,) = (_run_dir(tmp_path, record) / "wandb").glob("offline-run-*")
    data = offline / f"run-{record['run_id']}.wandb"
    assert data.is_file() and data.stat().st_size > 0


def test_a_logger_whose_package_is_missing_is_one_line(tmp_path, monkeypatch):
    import importlib.util

    from prune_bench.engine import loggers

    real = importlib.util.find_spec
    monkeypatch.setattr(loggers.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    problems = loggers.validate_loggers(make_config(["logger=[csv,wandb]"]).logger)
    assert problems == ["logger.wandb: needs the wandb package; pip install 'prune-bench[wandb]' or leave it out of logger=[...]"]
    result = run_cli(["run", "logger=[csv,nope]", f"paths.runs_dir={tmp_path}"], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr == "prune-bench: error: In 'config': Could not load 'logger/nope'.\n"
