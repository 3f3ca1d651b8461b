"""Shared helpers: tiny synthetic configs composed from the shipped config tree, and a way to
run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from prune_bench.paths import conf_dir

torch_threads = os.environ.setdefault("OMP_NUM_THREADS", "2")


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
