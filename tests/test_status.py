"""`prune-bench status`: every state read back from what real runs leave behind (record,
failed.json, checkpoint, lock, progress.json); progress lines and the progress file while a
run trains."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import interrupt_in_epoch, make_config, run_cli
from prune_bench.engine import progress as progress_module
from prune_bench.engine.checkpoint import atomic_torch_save
from prune_bench.engine.peek import checkpoint_epoch
from prune_bench.engine.run import run
from prune_bench.scale import plan
from prune_bench.scale.status import lock_held, render, scan

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_each_state_from_real_runs(tmp_path, tiny_overrides, monkeypatch):
    quiet = lambda line: None  # noqa: E731
    lines = ["trainer.progress=lines"]
    run(make_config([*tiny_overrides, "seed=1"]), log=quiet)  # finished
    run(make_config([*tiny_overrides, "seed=2", "optimizer.lr=1e30"]), log=quiet)  # diverged
    seen = []
    interrupt_in_epoch(monkeypatch, 1, seen)
    with pytest.raises(KeyboardInterrupt):
        run(make_config([*tiny_overrides, *lines, "seed=3"]), log=quiet)  # interrupted in epoch 2
    monkeypatch.undo()
    runs = tmp_path / "runs"
    # a failure before the first checkpoint takes its folder back (workspace.py): nothing is left
    failing = make_config([*tiny_overrides, "seed=4"])
    (planned,) = plan.plan_jobs([([], failing)])
    failing_dir = planned.status.run_dir
    interrupt_in_epoch(monkeypatch, 0)
    with pytest.raises(KeyboardInterrupt):
        run(failing, log=quiet)
    monkeypatch.undo()
    assert not failing_dir.exists()
    # a corrupt checkpoint fails the run and is kept, so failed.json stays beside it
    failing_dir.mkdir()
    (failing_dir / "checkpoint.pt").write_bytes(b"junk")
    with pytest.raises(Exception, match="cannot be read"):
        run(failing, log=quiet)
    assert (failing_dir / "failed.json").is_file()

    states = {s.name: s for s in scan(runs)}
    assert sorted(s.state for s in states.values()) == ["diverged", "failed", "finished", "interrupted"]
    interrupted = next(s for s in states.values() if s.state == "interrupted")
    assert interrupted.detail == "checkpoint after epoch 1/2" and interrupted.epochs_done == 1
    assert "CheckpointError: checkpoint" in states[failing_dir.name].detail
    assert next(s for s in states.values() if s.state == "diverged").detail.startswith("non-finite loss at step")
    assert "test " in next(s for s in states.values() if s.state == "finished").detail
    # while it trained, the interrupted run was "running", its epoch and speed read from progress.json
    # 200 images in batches of 50: 4 steps, a report after each of the first three
    assert seen and seen[0].state == "running" and seen[0].detail.startswith("epoch 1/2 (25%), ")
    assert " img/s, ETA " in seen[0].detail and f"[pid {os.getpid()} on " in seen[0].detail
    text = render(list(states.values()))
    assert text.splitlines()[-1] == "4 runs: 1 finished, 0 running, 1 interrupted, 1 failed, 1 diverged, 0 pending"


def test_a_killed_job_releases_its_lock(tmp_path):
    """The run lock is an OS lock: SIGKILL of its holder frees it, so status says interrupted."""
    (tmp_path / ".locks").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from filelock import FileLock; "
        f"lock = FileLock({str(tmp_path / '.locks' / 'r.lock')!r}); lock.acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert lock_held(tmp_path / "r")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert not lock_held(tmp_path / "r")


@pytest.mark.slow
def test_piped_lines_per_epoch_details_in_the_log_and_the_progress_file(tmp_path, tiny_overrides, monkeypatch):
    """200 images in batches of 10: 20 steps. Piped, one line per epoch and none inside it; the
    log holds every printed line and a detail every 2 steps (10%), 9 per epoch (the 10th is the
    epoch line). With the long-epoch rule at 0 s, a printed line after every report instead."""
    lines = []
    cfg = make_config([*tiny_overrides, "trainer.batch_size=10", "trainer.progress=lines"])
    record = run(cfg, log=lines.append)
    run_dir = tmp_path / "runs" / record["run_dir"].split("/")[-1]
    assert not [line for line in lines if "% (" in line]
    assert [line.split("  ")[0] for line in lines if line.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    logged = [line.split(" ", 2)[2] for line in (run_dir / "log.txt").read_text().splitlines()]
    assert all(line in logged for line in lines)
    assert all(line in lines or "% (" in line or line.startswith("--- pid ") for line in logged)
    details = [line for line in logged if "% (" in line]
    assert len(details) == 2 * 9
    assert [line.split("(")[1].split(" ")[0] for line in details[:9]] == [f"{2 * k}/20" for k in range(1, 10)]
    assert all(" img/s  run ETA " in line and "loss " in line for line in details)
    saved = json.loads((run_dir / "progress.json").read_text())
    assert saved["phase"] == "finished" and saved["epoch"] == 2 and saved["step"] == 40 and saved["eta_s"] == 0.0
    assert saved["run_eta_s"] == 0.0 and saved["stages"] == 1
    monkeypatch.setattr(progress_module, "LINE_SECONDS", 0.0)
    lines.clear()
    run(make_config([*tiny_overrides, "trainer.batch_size=10", "trainer.progress=lines", "seed=2"]), log=lines.append)
    assert len([line for line in lines if "% (" in line]) == 2 * 19


@pytest.mark.slow
def test_status_cli_on_a_run_m_sweep_and_for_a_paper(tmp_path):
    common = ["data=synthetic", "data.synthetic.train_size=100", "data.synthetic.test_size=50", "model=resnet20",
              "trainer.epochs=1", "trainer.batch_size=50", "scheduler=constant", "trainer.progress=none",
              f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_root={tmp_path / 'data'}"]
    assert run_cli(["run", "-m", *common, "seed=1,2"], cwd=tmp_path).returncode == 0
    result = run_cli(["status", "--runs", str(tmp_path / "runs")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.startswith("finished    resnet20_sgd_none-") for line in lines) == 2
    assert lines[-1] == "2 runs: 2 finished, 0 running, 0 interrupted, 0 failed, 0 diverged, 0 pending"
    # the smoke grid at 1 epoch and batch 50: its resnet20 seed-1 cell is the same config as the
    # run -m job above (so finished); its resnet32 cell has no directory yet (pending)
    paper = run_cli(["status", "smoke", "--budget", "quick", "--runs", str(tmp_path / "runs"), "--seeds", "1",
                     "data.synthetic.train_size=100", "data.synthetic.test_size=50", "trainer.batch_size=50",
                     f"paths.data_root={tmp_path / 'data'}"], cwd=tmp_path)
    assert paper.returncode == 0, paper.stderr
    out = paper.stdout.splitlines()
    assert out[-1] == "2 runs: 1 finished, 0 running, 0 interrupted, 0 failed, 0 diverged, 1 pending"
    assert any(line.startswith("finished    resnet20_sgd_none-") for line in out)
    assert any(line.startswith("pending     resnet32_sgd_none-") and "no run directory yet" in line for line in out)
    missing = run_cli(["status", "--runs", str(tmp_path / "nothing")], cwd=tmp_path)
    assert missing.returncode == 2 and "prune-bench: error: --runs:" in missing.stderr


def test_watch_refreshes_until_interrupted(tmp_path):
    (tmp_path / "runs").mkdir()
    # Ctrl-C as a terminal sends it: a shell that started these tests in the background passes
    # SIGINT down as ignored, so the child gets the default handler back first.
    watcher = subprocess.Popen([sys.executable, "-m", "prune_bench.cli", "status", "--runs", str(tmp_path / "runs"),
                                "--watch", "0.2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(os.path.dirname(os.path.dirname(__file__)))},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    try:
        refreshes = 0
        while refreshes < 2:  # two refreshes, then Ctrl-C
            line = watcher.stdout.readline()
            assert line, watcher.stderr.read()
            refreshes += line.startswith("0 runs: 0 finished")
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err


def test_the_place_a_runs_epochs_count_in_is_named():
    from prune_bench.scale.status import where_trained

    assert where_trained(None, None) == ""
    assert where_trained({}, "") == " (shared training)"
    assert where_trained({}, "resnet20_sgd-1a2b") == " (shared training resnet20_sgd-1a2b)"
    assert where_trained({"stage": "finetune"}, None) == " (finetune stage)"
    assert where_trained({"stage": "pretrain"}, "") == " (pretrain stage, shared)"
    assert where_trained({"stage": "sparse"}, "resnet20_bnscale-sparse-9f") == " (sparse stage, shared resnet20_bnscale-sparse-9f)"


class Effect:
    """Unpickled by torch.load(weights_only=False), it would run `os.system(command)`."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_the_epoch_of_a_checkpoint_is_read_without_torch_and_without_running_what_it_names(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "checkpoint.pt"
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))  # a state_dict with _metadata
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "pruner": {"masks": {"w": torch.ones(3, dtype=torch.bool)}, "kept": np.arange(4), "raw": b"\x00\x01",
                          "names": {"a", "b"}, "dtype": torch.float16, "shape": torch.Size([2, 3]),
                          "effect": Effect(f"touch {marker}")},
               "rng": {"torch": torch.get_rng_state(), "cuda": []},
               "state": {"epoch": 7, "step": 21, "history": [{"epoch": 7, "train_loss": 0.5}], "diverged_step": None}}
    atomic_torch_save(payload, path)
    assert checkpoint_epoch(path) == 7 and not marker.exists()

    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut off: the zip's directory is gone
    assert checkpoint_epoch(path) is None
    path.write_bytes(b"not a checkpoint")
    assert checkpoint_epoch(path) is None
    atomic_torch_save({"epoch": 3}, path)  # readable, but no state.epoch
    assert checkpoint_epoch(path) is None
