"""What a run shows while it trains and what it leaves for `status`: the live bar on a terminal
(driven in a pseudo-terminal), one line per epoch piped with the details in log.txt, the whole
run's ETA over every stage, `status` for a staged run; and `reproduce`'s estimate from a probe
of engine.loop's steps, and its runs done / left while it launches."""

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_DPM, make_config, run_cli, tiny_dpm_config
from prune_bench.engine import loop
from prune_bench.engine.loop import FitState
from prune_bench.engine.progress import Monitor, StagePlan, steps_left
from prune_bench.engine.run import run
from prune_bench.scale import plan, probe, reproduce, watch
from prune_bench.scale.probe import Probe
from prune_bench.scale.status import inspect_run

pytestmark = pytest.mark.usefixtures("one_thread")

SUMMARY = re.compile(r"^finished resnet20 / sgd / none on cifar10-synthetic seed 1: test (\d+\.\d\d)% best (\d+\.\d\d)%")


@pytest.mark.slow
def test_a_terminal_shows_a_live_bar_then_the_epoch_lines_and_the_summary(tmp_path):
    """In a pseudo-terminal (`progress: auto`): tqdm redraws one line with '\\r' (steps, img/s,
    the run's ETA); the epoch lines and the summary stay, with the record's numbers."""
    pexpect = pytest.importorskip("pexpect")
    args = ["-m", "prune_bench.cli", "run", "data=synthetic", "data.synthetic.train_size=400",
            "data.synthetic.test_size=50", "model=resnet20", "scheduler=constant", "trainer.epochs=2",
            "trainer.batch_size=4", "trainer.eval_batch_size=50", f"paths.runs_dir={tmp_path / 'runs'}",
            f"paths.data_root={tmp_path / 'data'}"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    child = pexpect.spawn(sys.executable, args, cwd=str(tmp_path), env=env, encoding="utf-8", timeout=240,
                          dimensions=(24, 160))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    screen = child.before
    redraws = [part for line in screen.split("\n") for part in line.split("\r")[1:]]
    bars = [part for part in redraws if re.search(r"^epoch [12]/2 +\d+%\|.*\| \d+/100 steps \[", part)]
    assert len(bars) >= 4, screen[:2000]
    assert any(re.search(r"\d+ img/s, .*run ETA \d", part) for part in bars)
    assert any("loss " in part for part in bars)  # the running loss, read at reports
    lines = [line.split("\r")[-1] for line in screen.replace("\r\n", "\n").split("\n") if line.strip()]
    epoch_lines = [line for line in lines if re.match(r"epoch [12]/2  loss \d", line)]
    assert len(epoch_lines) == 2 and "run ETA" in epoch_lines[0] and "run ETA" not in epoch_lines[1]
    summary = SUMMARY.match(lines[-1])
    assert summary, lines[-3:]
    record = json.loads(next((tmp_path / "runs").glob("*/record.json")).read_text())
    assert summary.group(1) == f"{record['metrics']['test_acc']:.2f}"
    assert f"test {record['history'][-1]['test_acc']:.2f}%" in epoch_lines[-1]


# pretrain 3 epochs, sparse stage 2, fine-tune 3: 8 epochs of 4 steps (100 images, batch 25)
MANY_EPOCHS = ["trainer.epochs=3", "pruner.sparse.epochs=2", "pruner.finetune.epochs=3"]


@pytest.mark.slow
def test_a_piped_staged_run_prints_a_line_per_epoch_and_logs_the_details(tmp_path):
    runs = tmp_path / "runs"
    result = run_cli(["run", *TINY_DPM, *MANY_EPOCHS, "trainer.progress=auto", f"paths.runs_dir={runs}",
                      f"paths.data_root={tmp_path / 'data'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    epoch_lines = [line for line in printed if re.match(r"stage \d/3 \w+, epoch \d+/\d+  loss ", line)]
    assert len(epoch_lines) == 3 + 2 + 3
    assert epoch_lines[0].startswith("stage 1/3 pretrain, epoch 1/3") and epoch_lines[3].startswith("stage 2/3 sparse")
    assert all(" img/s  " in line and "s  run ETA " in line for line in epoch_lines[:-1])
    # the run's header, a line per stage (and DPM's memory-format note), the epochs, the summary
    assert len(printed) <= len(epoch_lines) + 6, printed
    assert not [line for line in printed if "% (" in line]  # nothing inside an epoch
    assert printed[-1].startswith("finished resnet20 / sgd / dpm")
    record = json.loads(next(runs.glob("*/record.json")).read_text())
    logged = [line.split(" ", 2)[2] for line in (Path(record["run_dir"]) / "log.txt").read_text().splitlines()]
    assert all(line in logged for line in printed if not line.startswith(("[", "decoding", "decoded")))
    details = [line for line in logged if "% (" in line]
    assert len(details) == 8 * 3  # 4 steps an epoch: a detail after steps 1, 2 and 3
    assert all(" loss " in line and " img/s  " in line and "run ETA" in line for line in details)
    assert sum(line.startswith("stage 2/3 sparse, epoch 1/2  25% (1/4 steps)") for line in details) == 1


def test_the_run_eta_counts_every_stage_left_at_this_process_speed(tmp_path):
    """A fake clock: one second per step, evaluation and checkpoint 2 s after each epoch."""
    now = [0.0]
    monitor = Monitor(tmp_path, "none", echo=lambda line: None, clock=lambda: now[0])
    monitor.set_plan([StagePlan("pretrain", 4, 10), StagePlan("sparse", 2, 10), StagePlan("finetune", 3, 10)])
    progress = lambda: json.loads((tmp_path / "progress.json").read_text())  # noqa: E731
    monitor.start(tmp_path / "pretrain", 0)
    state = FitState()
    monitor.start_epoch(0, 4, 10, state, n_images=100)
    assert progress()["run_eta_s"] is None  # nothing measured yet
    for done in range(1, 11):
        now[0] += 1.0
        state.step += 1
        if monitor.due(done):
            monitor.during_epoch(done, 2.3, done * 10)
        if done == 5:  # 35 steps left in pretrain, 20 sparse, 30 fine-tune, at 1 s a step
            assert progress()["run_eta_s"] == pytest.approx(85.0) and progress()["eta_s"] == pytest.approx(35.0)
    now[0] += 2.0  # evaluation, checkpoint
    state.epoch = 1
    monitor.after_epoch({"epoch": 1, "train_loss": 2.0, "train_acc": 10.0, "lr": 0.1, "images_per_s": 100.0,
                         "seconds": 12.0}, state, {})
    saved = progress()
    assert saved["run_eta_s"] == pytest.approx((30 + 20 + 30) * 1.2) and saved["eta_s"] == pytest.approx(30 * 1.2)
    assert saved["stage_index"] == 1 and saved["stages"] == 3 and saved["stage"] == "pretrain"
    assert steps_left(monitor.plan, 0, 10) == 80
    # the sparse stage reused from a shared folder costs nothing; in the fine-tune stage only its steps are left
    reused = [StagePlan("pretrain", 4, 10, reused=True), StagePlan("sparse", 2, 10, reused=True),
              StagePlan("finetune", 3, 10)]
    assert steps_left(reused, 0, 0) == 70 and steps_left(reused, 2, 10) == 20
    monitor.set_plan(reused)
    monitor.start(tmp_path / "finetune", 2)
    state = FitState(step=10, epoch=1)  # resumed after its first epoch
    monitor.start_epoch(1, 3, 10, state, n_images=100)
    assert progress()["run_eta_s"] == pytest.approx(20 * 1.2)  # this process's speed so far
    assert progress()["stage_index"] == 3 and progress()["stage"] == "finetune"


@pytest.mark.slow
def test_status_names_the_stage_and_the_run_eta_of_a_staged_run(tmp_path, monkeypatch):
    seen = []
    during_epoch = Monitor.during_epoch

    def report_and_look(self, *args):
        during_epoch(self, *args)
        if self.stage_index == 1:
            seen.append(inspect_run(self.run_dir))

    monkeypatch.setattr(Monitor, "during_epoch", report_and_look)
    run(tiny_dpm_config(tmp_path / "runs", "trainer.progress=lines"), log=lambda line: None)
    assert seen and seen[0].state == "running"
    assert re.match(r"stage 2/3 \(sparse, shared\), epoch 1/2 \(25%\), \d+ img/s, ETA for the run \d+s \[pid ",
                    seen[0].detail), seen[0].detail


def tiny_smoke(tmp_path, *extra):
    return ["data.synthetic.train_size=100", "data.synthetic.test_size=50", "trainer.batch_size=50",
            "trainer.progress=none", f"paths.runs_dir={tmp_path / 'runs'}",
            f"paths.results_dir={tmp_path / 'results'}", f"paths.data_root={tmp_path / 'data'}", *extra]


FAKE_PROBE = Probe("fake", seconds_per_step=0.5, seconds_per_test_image=0.01, seconds_per_checkpoint=0.25,
                   seconds_fixed=3.0, steps_timed=4, seconds=1.0)


def test_the_dry_run_estimate_is_the_probes_seconds_times_the_work_left(tmp_path, monkeypatch):
    """smoke, full budget: 2 epochs of 100 images at batch 50 = 4 steps, 2 evaluations of 50
    images, 2 checkpoints and model.pt; at the probe's figures: 2 + 1 + 0.75 + 3 = 6.75 s a run."""
    monkeypatch.setattr(plan, "run_probe", lambda cfg: FAKE_PROBE)
    lines = []
    assert reproduce.reproduce("smoke", "full", [1], tiny_smoke(tmp_path, "model=resnet20"), dry_run=True,
                               log=lines.append) == []
    text = "\n".join(lines)
    assert "2 epochs x 100 images, 2 evaluations: about 7s" in text
    assert "about 7s for the runs left, one after another" in text
    assert re.search(r"\(an estimate from a \d+ s probe: engine.loop's steps timed now on this device\)", text)
    assert "fake: 0.5 s/step (4 timed)" in text
    (job,) = plan.plan_jobs(reproduce.compose_all(reproduce.grid_jobs(
        reproduce.load_grid("smoke"), "full", [1], tiny_smoke(tmp_path, "model=resnet20"))))
    cost = plan.job_cost(job, FAKE_PROBE)
    assert cost.steps == 4 and cost.seconds == pytest.approx(4 * 0.5 + 2 * 50 * 0.01 + 3 * 0.25 + 3.0)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*/record.json"))


def test_one_shot_levels_and_dpm_latency_are_counted_as_evaluations(tmp_path):
    levels = make_config(tiny_smoke(tmp_path, "+exp=smoke", "pruner=magnitude", "pruner.sparsity=0.5",
                                    "pruner.sparsity_levels=[0.0,0.3,0.6]"))
    (job,) = plan.plan_jobs([([], levels)])
    cost = plan.job_cost(job, FAKE_PROBE)
    # the pretrain stage's 2 evaluations, 4 levels (0, 0.3, 0.5, 0.6), the evaluation after the pruner's finish
    assert cost.evaluations == 2 + 4 + 1
    dpm = tiny_dpm_config(tmp_path / "runs")
    (job,) = plan.plan_jobs([([], dpm)])
    cost = plan.job_cost(job, FAKE_PROBE)
    # epochs 1 + 2 + 3, each evaluated; the finish's evaluation; latency: dense and slimmed, 3 warm-up
    # and min_repeats 3 passes at batch 1 and at batch 4, against 50 test images
    assert cost.steps == 6 * 4 and cost.evaluations == pytest.approx(6 + 1 + 2 * (3 + 3) * (1 + 4) / 50)


@pytest.mark.slow
def test_the_probe_times_engine_loop_steps(tmp_path, monkeypatch):
    """A step made 0.2 s slower in engine.loop makes the probe's s/step 0.2 s larger."""
    cfg = make_config(tiny_smoke(tmp_path, "+exp=smoke", "model=resnet20"))
    fast = probe.run_probe(cfg)
    real_step = loop.train_step
    steps = []

    def slower(*args, **kwargs):
        steps.append(1)
        result = real_step(*args, **kwargs)
        time.sleep(0.2)
        return result

    monkeypatch.setattr(loop, "train_step", slower)
    slow = probe.run_probe(cfg)
    assert len(steps) >= probe.WARMUP_STEPS + slow.steps_timed and slow.steps_timed >= probe.MIN_STEPS
    # the real step's own time varies with the load between the two probes (the suite's other
    # workers share the cores): allowed up to its own length beside 0.08 s of clock and sleep jitter
    assert slow.seconds_per_step - fast.seconds_per_step == pytest.approx(0.2, abs=0.08 + fast.seconds_per_step)
    assert slow.seconds < 10 and fast.seconds_per_test_image > 0 and fast.seconds_fixed > 0


def test_reproduce_says_runs_done_and_left_as_each_run_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "run_probe", lambda cfg: FAKE_PROBE)
    monkeypatch.setattr(watch, "POLL_SECONDS", 0.05)
    lines = []
    failed = reproduce.reproduce("smoke", "full", [1, 2], tiny_smoke(tmp_path, "model=resnet20"), log=lines.append)
    assert failed == []
    progress = [line for line in lines if line.startswith("reproduce: ")]
    assert progress[0].startswith("reproduce: 0/2 runs done, 2 left; about 14s left (the probe's estimate)")
    assert progress[-2] == "reproduce: 2/2 runs done, 0 left"
    assert re.match(r"reproduce: 2 of 2 runs ended in \d+s \(the probe's estimate: 14s\)$", progress[-1])
    assert len(progress) == 4
    assert re.match(r"reproduce: 1/2 runs done, 1 left; about \d+s left \(the probe's estimate x \d+\.\d\d, the pace",
                    progress[1]), progress


def test_time_left_scales_the_estimate_by_the_pace_of_the_ended_runs():
    assert watch.time_left(100.0, 0.0, 30.0) == 100.0  # nothing ended: the estimate
    assert watch.time_left(100.0, 50.0, 75.0) == pytest.approx(150.0)  # ended runs took 1.5x their estimate
