"""The loop end to end on tiny synthetic runs: records, re-runs, resume, divergence."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import Crash, crash_after_checkpoint, make_config, run_cli
from prune_bench.engine import run as experiment
from prune_bench.engine import stages
from prune_bench.engine.record import summary
from prune_bench.errors import CheckpointError
from prune_bench.identity import run_identity


def quiet(message):
    pass


def load_weights(record):
    return torch.load(Path(record["run_dir"]) / "model.pt", weights_only=True)["model"]


def test_a_run_writes_a_complete_record(tiny_overrides):
    record = experiment.run(make_config(tiny_overrides), log=quiet)
    assert record["status"] == "finished"
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert all("test_acc" in h and "train_loss" in h and "lr" in h for h in record["history"])
    assert all(h["zeros_all"] == 0.0 for h in record["history"])  # dense SGD: no exact zeros
    assert record["metrics"]["test_acc"] == record["history"][-1]["test_acc"]
    assert record["params"] == 269_722 and record["macs"] > 40e6
    assert record["sparsity"]["prunable"] == 0.0 and record["sparsity"]["target"] is None
    assert record["timing"]["images_per_s"] > 0 and record["device"]["type"] == "cpu"
    run_dir = Path(record["run_dir"])
    # progress.json: where the run got to (prune-bench status); metrics.csv: the csv logger (on by default)
    # log.txt: every line the run printed, and progress details
    assert {p.name for p in run_dir.iterdir()} == {"config.yaml", "model.pt", "record.json", "progress.json", "metrics.csv",
                                                  "log.txt"}


def test_finished_runs_are_reported_not_retrained(tiny_overrides, monkeypatch):
    first = experiment.run(make_config(tiny_overrides), log=quiet)
    monkeypatch.setattr(stages, "train_epoch", lambda *a, **k: pytest.fail("trained again"))
    lines = []
    again = experiment.run(make_config(tiny_overrides), log=lines.append)
    assert again == json.loads(json.dumps(first)) and lines[0].startswith("already done: finished")


def test_identity_ignores_paths_but_not_semantics(tiny_overrides, tmp_path):
    cfg = make_config(tiny_overrides)
    info = {"dataset": "cifar10", "format": "synthetic", "n_train": 200, "n_test": 100}
    same = make_config([*tiny_overrides, "trainer.progress=lines", f"paths.results_dir={tmp_path}"])
    other_seed = make_config([*tiny_overrides, "seed=2"])
    other_lr = make_config([*tiny_overrides, "optimizer.lr=0.05"])
    ident = run_identity
    assert ident(cfg, info) == ident(same, info)
    assert len({ident(cfg, info), ident(other_seed, info), ident(other_lr, info)}) == 3
    assert ident(cfg, info) != ident(cfg, {**info, "format": "jpeg"})


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet20", "vgg16"])  # vgg16 has dropout: the RNG state must resume too
def test_resume_after_a_crash_is_bitwise_equal(tiny_overrides, tmp_path, monkeypatch, model):
    overrides = [*tiny_overrides, f"model={model}", "trainer.epochs=3", "scheduler=multistep",
                 "optimizer.nesterov=true", "data.synthetic.train_size=100"]
    whole = experiment.run(make_config([*overrides, f"paths.runs_dir={tmp_path / 'whole'}"]), log=quiet)

    cut = make_config([*overrides, f"paths.runs_dir={tmp_path / 'cut'}"])
    crash_after_checkpoint(monkeypatch, lambda training, state, path: state.epoch == 1)
    with pytest.raises(Crash):
        experiment.run(cut, log=quiet)
    assert not list((tmp_path / "cut").glob("*/record.json"))
    monkeypatch.undo()
    lines = []
    resumed = experiment.run(cut, log=lines.append)
    assert any("after epoch 1 of 3" in line for line in lines)
    assert resumed["timing"]["resumed_after_epoch"] == 1
    assert resumed["metrics"]["test_acc"] == whole["metrics"]["test_acc"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in whole["history"]]
    for name, tensor in load_weights(whole).items():
        assert torch.equal(tensor, load_weights(resumed)[name]), name


@pytest.mark.slow
def test_sigkill_in_epoch_two_then_rerun_resumes_and_matches(tmp_path):
    args = ["run", "+exp=smoke", "data.synthetic.train_size=300", "data.synthetic.test_size=100",
            "trainer.epochs=3", "trainer.batch_size=20", "trainer.progress=none"]
    whole = run_cli([*args, f"paths.runs_dir={tmp_path / 'whole'}"], cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    runs = tmp_path / "cut"
    process = subprocess.Popen([sys.executable, "-m", "prune_bench.cli", *args, f"paths.runs_dir={runs}"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    deadline = time.time() + 120
    while not list(runs.glob("*/checkpoint.pt")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # during epoch 2: the epoch-1 checkpoint just appeared
    process.wait()
    assert not list(runs.glob("*/record.json"))
    resumed = run_cli([*args, f"paths.runs_dir={runs}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "after epoch 1 of 3" in resumed.stdout and "epoch 1/3" not in resumed.stdout
    record = lambda folder: json.loads(next(folder.glob("*/record.json")).read_text())  # noqa: E731
    assert record(runs)["metrics"]["test_acc"] == record(tmp_path / "whole")["metrics"]["test_acc"]
    again = run_cli([*args, f"paths.runs_dir={runs}"], cwd=tmp_path)
    assert again.stdout.startswith("already done: finished") and "epoch 3/3" not in again.stdout


def test_a_corrupt_checkpoint_is_a_clear_error(tiny_overrides, tmp_path, monkeypatch):
    cfg = make_config(tiny_overrides)

    crash_after_checkpoint(monkeypatch, lambda training, state, path: True)
    with pytest.raises(Crash):
        experiment.run(cfg, log=quiet)
    checkpoint = next((tmp_path / "runs").glob("*/checkpoint.pt"))
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="cannot be read .* delete it to start the run again"):
        experiment.run(cfg, log=quiet)


def test_divergence_is_recorded_with_its_step(tiny_overrides):
    record = experiment.run(make_config([*tiny_overrides, "optimizer.lr=1e30"]), log=quiet)
    assert record["status"] == "diverged"
    assert isinstance(record["diverged_step"], int) and 0 <= record["diverged_step"] < 8
    assert not (Path(record["run_dir"]) / "model.pt").exists()
    assert "non-finite loss at step" in summary(record)


def test_deterministic_kernels_turn_autotuning_off():
    from prune_bench.engine.runtime import configure_cuda_kernels

    try:
        configure_cuda_kernels(OmegaConf.create({"deterministic": True, "cudnn_benchmark": True}))
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"]
        configure_cuda_kernels(OmegaConf.create({"deterministic": False, "cudnn_benchmark": True}))
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.backends.cudnn.benchmark = torch.backends.cudnn.deterministic = False
        torch.use_deterministic_algorithms(False)


def test_a_one_epoch_run_says_1_epoch(tiny_overrides):
    lines = []
    experiment.run(make_config([*tiny_overrides, "trainer.epochs=1"]), log=lines.append)
    assert any(", 1 epoch, device cpu" in line for line in lines), lines
    assert not any("1 epochs" in line for line in lines)
