"""Shared helpers: tiny synthetic configs composed from the shipped config tree, and a way to
run the real CLI in a subprocess; and a HOME of its own for the test session (below)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from prune_bench.config.shipped import conf_dir
from prune_bench.config.user import CONFIG_DIR_VARIABLE
from prune_bench.config.validate import validate
from prune_bench.engine import run as experiment
from prune_bench.engine import stages
from prune_bench.engine.progress import Monitor
from prune_bench.errors import ConfigError
from prune_bench.optim import build_scheduler
from prune_bench.scale.status import inspect_run

# ----------------------------------------------------------------------------- a HOME of its own
#
# Tests write only under temporary folders. Tools write under ~ on their own: wandb (~/.cache/wandb,
# ~/.config/wandb, ~/.local/share/wandb), onnxruntime (~/.cache/Microsoft), matplotlib (~/.config
# and ~/.cache/matplotlib), pip, triton and CUDA on a GPU, and prune-bench's own defaults
# (paths.data_root with its decoded-data cache, the device locks). So the session gets a HOME of
# its own, which catches the tools that know only ~ (and those nobody listed), and each known
# tool's variable points into a folder beside it, so that HOME stays empty unless a tool ignores
# its variable (tests/test_isolation.py checks that a run with every logger leaves it empty).
# Set in pytest_configure, before any test module is imported, not in a fixture: matplotlib, which
# prune_bench.report imports, makes its folders when it is imported, i.e. while
# tests are collected. Subprocesses inherit the variables (run_cli passes os.environ).

CACHE_VARIABLES = {  # variable -> its folder under the session's folder
    "XDG_CACHE_HOME": "cache", "XDG_CONFIG_HOME": "config", "XDG_DATA_HOME": "data", "XDG_STATE_HOME": "state",
    "WANDB_DIR": "wandb/runs", "WANDB_CACHE_DIR": "wandb/cache", "WANDB_CONFIG_DIR": "wandb/config",
    "WANDB_DATA_DIR": "wandb/data", "MPLCONFIGDIR": "matplotlib",
    "TRITON_HOME": "triton", "CUDA_CACHE_PATH": "cuda",  # torch.compile on a GPU: ~/.triton, ~/.nv
}
# the user's own folders for prune-bench: tests use their defaults, under the session's HOME
USER_FOLDERS = ("PRUNE_BENCH_DATA", "PRUNE_BENCH_CACHE", "PRUNE_BENCH_DEVICE_LOCKS")
# set when the tests run inside a SLURM job (salloc, srun): a run would name that job where the
# tests expect `status` to name its process (engine/progress.py, slurm_job)
SLURM_JOB_VARIABLES = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")
IMPORT_TIME_WRITERS = ("matplotlib", "wandb", "onnxruntime")


def isolated_environment(folder: Path) -> dict[str, str]:
    """HOME (folder/home, empty) and every CACHE_VARIABLES folder under `folder`, made."""
    env = {"HOME": str(folder / "home"), **{name: str(folder / sub) for name, sub in CACHE_VARIABLES.items()}}
    for path in env.values():
        Path(path).mkdir(parents=True, exist_ok=True)
    return env


SESSION_FOLDER: Path | None = None


def pytest_configure(config) -> None:
    global SESSION_FOLDER
    imported = [name for name in IMPORT_TIME_WRITERS if name in sys.modules]
    if imported:
        raise pytest.UsageError(f"{', '.join(imported)} imported before the tests' HOME was set (conftest.py)")
    SESSION_FOLDER = Path(tempfile.mkdtemp(prefix="prune-bench-tests-"))
    os.environ.update(isolated_environment(SESSION_FOLDER))
    for name in (*USER_FOLDERS, *SLURM_JOB_VARIABLES):
        os.environ.pop(name, None)
    # One thread per test process and per CLI it starts (they inherit the variable): the tests'
    # tensors are tiny, and the suite's workers (pytest-xdist, one per core) share the cores; two
    # threads each made a piped DPM run take 195 s instead of 16 s. A test about threads sets its own.
    # A test of threads starts its process with more, on cores the other workers use: OpenMP's
    # spinning threads then slow it threefold (a two-thread tiny DPM run: 38 s, passive 11 s).
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    torch.set_num_threads(1)


def pytest_unconfigure(config) -> None:
    if SESSION_FOLDER is not None:
        shutil.rmtree(SESSION_FOLDER, ignore_errors=True)


# ----------------------------------------------------------------------------- configs and the CLI


@pytest.fixture(autouse=True)
def no_user_config_folders(monkeypatch):
    """Each test starts without the user's config folders and leaves none behind: `--config-dir`
    sets the variable in the CLI's own process (config/user.py), and a test may call the CLI in-process."""
    monkeypatch.setenv(CONFIG_DIR_VARIABLE, "")  # recorded first, so teardown restores its absence
    monkeypatch.delenv(CONFIG_DIR_VARIABLE)


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


def config_problems(overrides: list[str]) -> list[str]:
    """The lines of the ConfigError that validating the config of `overrides` raises."""
    with pytest.raises(ConfigError) as error:
        validate(make_config(overrides))
    return str(error.value).splitlines()


def cli_error_lines(args: list[str], cwd: Path) -> list[str]:
    """`prune-bench ARGS`, which must fail with exit status 2: its stderr lines."""
    result = run_cli(args, cwd)
    assert result.returncode == 2, (result.stdout, result.stderr)
    return result.stderr.strip().splitlines()


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


class Crash(Exception):
    """Raised by `crash_after_checkpoint` in place of a real crash."""


def crash_after_checkpoint(monkeypatch, crash_when) -> None:
    """From now on, the stage runner raises Crash right after it saved a checkpoint for which
    `crash_when(training, state, path)` is true (training: engine.loop.Training, state: its FitState,
    path: the checkpoint's).
    `monkeypatch.undo()` ends it."""
    real_save = stages.save_checkpoint

    def save_then_crash(path, training, state, identity, architecture):
        real_save(path, training, state, identity, architecture)
        if crash_when(training, state, path):
            raise Crash()

    monkeypatch.setattr(stages, "save_checkpoint", save_then_crash)


# A DPM run in seconds: ResNet-20 (shortcut B) on 100 synthetic images, every stage of 1-3 epochs.
TINY_DPM = [
    "data=synthetic", "data.synthetic.train_size=100", "data.synthetic.test_size=50",
    "model=resnet20", "model.shortcut=B", "scheduler=constant", "trainer.epochs=1",
    "trainer.batch_size=25", "trainer.eval_batch_size=50", "trainer.progress=none",
    "pruner=dpm", "pruner.speedup=1.6", "pruner.sparse.epochs=2", "pruner.finetune.epochs=3",
    "pruner.prune_epochs=2", "pruner.prune_steps=4", "pruner.sp_steps=2", "pruner.sr_cooldown=2",
    "latency.batch_sizes=[1,4]", "latency.min_repeats=3", "latency.max_seconds=0.2",
]


def tiny_dpm_config(runs: Path, *extra):
    return make_config([*TINY_DPM, f"paths.runs_dir={runs}", f"paths.data_root={runs.parent / 'data'}", *extra])


@pytest.fixture(scope="session")
def tiny_dpm_run(tmp_path_factory):
    """One uninterrupted sp+sr TINY_DPM run: (its runs folder, which holds the shared stages, its
    record, the lines it logged)."""
    runs = tmp_path_factory.mktemp("dpm") / "runs"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    lines = []
    try:
        record = experiment.run(tiny_dpm_config(runs), log=lines.append)
    finally:
        torch.set_num_threads(threads)
    return runs, record, lines


@pytest.fixture(scope="session")
def slimmed_run(tiny_dpm_run) -> Path:
    """The folder of a finished run with a slimmed model (model.pt, config.yaml, record.json)."""
    return Path(tiny_dpm_run[1]["run_dir"])
