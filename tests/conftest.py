"""Shared helpers: tiny synthetic configs composed from the shipped config tree, and a way to
run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from prune_bench import experiment
from prune_bench.optim import build_scheduler
from prune_bench.paths import conf_dir


def make_config(overrides: list[str]):
    """The config `prune-bench run <overrides>` would see."""
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture
def tiny_overrides(tmp_path):
    """A seconds-long synthetic run: ResNet-20 on 200 images, quiet, in tmp_path."""
    return [
        "data=synthetic",
        "data.synthetic.train_size=200",
        "data.synthetic.test_size=100",
        "model=resnet20",
        "scheduler=constant",
        "trainer.epochs=2",
        "trainer.batch_size=50",
        "trainer.eval_batch_size=100",
        "trainer.progress=none",
        f"paths.runs_dir={tmp_path / 'runs'}",
        f"paths.data_root={tmp_path / 'data'}",
    ]


def run_cli(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """`prune-bench ARGS` as a new user would type it, from `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "prune_bench.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


@pytest.fixture
def one_thread():
    """For tests of tiny tensors: one thread is faster, and steady on a busy CPU (measured:
    7 s instead of 65 s for the gradual-pruning loop tests on 2 busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def interrupt_in_epoch(monkeypatch, epoch: int, seen: list | None = None) -> None:
    """Ctrl-C at the first progress report of `epoch` (0-based), after that epoch's progress.json
    is written; `seen` gets the run's state as `prune-bench status` reads it at each report.
    The runs need trainer.progress=lines (or bar) for reports to happen; monkeypatch.undo() ends it."""
    from prune_bench.progress import Monitor
    from prune_bench.status import inspect_run

    during_epoch = Monitor.during_epoch

    def report_then_interrupt(self, *args):
        during_epoch(self, *args)
        if seen is not None:
            seen.append(inspect_run(self.run_dir))
        if self.epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(Monitor, "during_epoch", report_then_interrupt)


def lr_factors(cfg: dict, steps_per_epoch: int, epochs: int) -> list[float]:
    """The lr of every step of a run under the scheduler `cfg` (base lr 1)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(OmegaConf.create(cfg), optimizer, steps_per_epoch, epochs)
    values = []
    for _ in range(steps_per_epoch * epochs):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


@pytest.fixture(scope="session")
def slimmed_run(tmp_path_factory) -> Path:
    """The directory of one finished DPM run (tests/test_dpm_runs.py's tiny config): a slimmed
    ResNet-20 with its model.pt, config.yaml and record.json, in a session temporary folder."""
    from test_dpm_runs import TINY_DPM  # here, not at the top: that module imports this one

    runs = tmp_path_factory.mktemp("slimmed") / "runs"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        record = experiment.run(make_config([*TINY_DPM, f"paths.runs_dir={runs}",
                                             f"paths.data_root={runs.parent / 'data'}"]), log=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    return Path(record["run_dir"])
