"""`prune-bench reproduce`: a paper's grid expanded, validated before anything trains, planned
(run directories, states, cost) without training, run through the launcher with finished cells
skipped and interrupted ones resumed, failures named; then the table."""

import contextlib
import io
import json
import re

import pytest

from conftest import interrupt_in_epoch, run_cli
from prune_bench.cli import main
from prune_bench.engine.run import run
from prune_bench.errors import ConfigError
from prune_bench.scale import plan, reproduce
from prune_bench.scale.status import inspect_run

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(tmp_path, *extra):
    """The smoke grid (exp=smoke x resnet20/32 x seeds) shrunk to seconds."""
    return ["data.synthetic.train_size=100", "data.synthetic.test_size=50", "trainer.batch_size=50",
            "trainer.progress=none", f"paths.runs_dir={tmp_path / 'runs'}",
            f"paths.results_dir={tmp_path / 'results'}", f"paths.data_root={tmp_path / 'data'}", *extra]


SPEC = {
    "table": "t", "seeds": [1, 2],
    "budgets": {"quick": {"overrides": ["trainer.epochs=1"],
                          "grid": [["+exp=a,b", "pruner.sparsity=0.5,0.9"], ["+exp=c"], ["+exp=a", "pruner.sparsity=0.5"]]}},
}


def test_grid_is_each_entry_times_seeds_with_the_command_line_last():
    jobs = reproduce.grid_jobs(SPEC, "quick", [1, 2], ["model=resnet20"])
    expected = []
    for exp, sparsity in [("a", 0.5), ("a", 0.9), ("b", 0.5), ("b", 0.9)]:
        for seed in (1, 2):
            expected.append([f"+exp={exp}", f"pruner.sparsity={sparsity}", "trainer.epochs=1", f"seed={seed}", "model=resnet20"])
    expected += [["+exp=c", "trainer.epochs=1", f"seed={seed}", "model=resnet20"] for seed in (1, 2)]
    assert jobs == expected  # the third entry repeats cells of the first: listed once
    with pytest.raises(ConfigError, match="--budget: 'full' is not allowed; use one of quick"):
        reproduce.grid_jobs(SPEC, "full", [1], [])


FULL_CELLS = {
    "sga2024": 3 * 2 * 3,  # 3 depths x {adam, sga} x 3 seeds
    "fggp2024": 2 * 2 * 3 * 2 * 3,  # 2 models x 2 pruners x 3 sparsities x 2 starts x 3 seeds
    "grda2020": (4 + 1 + 2 * (4 + 1)) * 3,  # VGG16: 4 mu + SGD; WRN: 2 datasets x (4 mu + SGD)
}
QUICK_CELLS_ONE_SEED = {"sga2024": 2, "fggp2024": 2 * 2, "grda2020": 3 + 1}


@pytest.mark.slow
@pytest.mark.parametrize("paper", sorted(FULL_CELLS))
def test_shipped_grids_have_the_papers_cells_and_compose(paper):
    spec = reproduce.load_grid(paper)
    assert len(reproduce.grid_jobs(spec, "full", list(spec["seeds"]), [])) == FULL_CELLS[paper]
    full = reproduce.compose_all(reproduce.grid_jobs(spec, "full", [1], []))
    assert len(full) == FULL_CELLS[paper] // len(spec["seeds"])
    assert all(cfg.data.name in ("cifar10", "cifar100") and cfg.data.train_per_class is None for _, cfg in full)
    quick = reproduce.compose_all(reproduce.grid_jobs(spec, "quick", [1], []))
    assert len(quick) == QUICK_CELLS_ONE_SEED[paper]
    assert all(cfg.data.name == "cifar10" and cfg.data.train_per_class <= 1000 and cfg.trainer.epochs <= 5
               for _, cfg in quick)


@pytest.mark.slow
def test_a_bad_value_in_the_last_job_stops_everything_before_training(tmp_path):
    result = run_cli(["reproduce", "smoke", "--budget", "quick", *tiny(tmp_path, "optimizer.lr=0.1,-0.1")], cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    # the -0.1 jobs: resnet20 and resnet32, seeds 1 and 2 -> four problems, one line each
    assert len(lines) == 4 and all(line.startswith("prune-bench: error: [") for line in lines)
    assert all("optimizer.lr: must be a number > 0, got -0.1" in line for line in lines)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_unknown_paper_and_bad_seeds_are_one_line(tmp_path):
    for args, message in [(["nopaper"], "paper: unknown paper 'nopaper'; allowed: baselines, dpm2024, fggp2024"),
                          (["smoke", "--seeds", "1,x"], "--seeds: a comma-separated list of integers >= 0")]:
        result = run_cli(["reproduce", *args], cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def _reproduce(tmp_path, seeds, *extra, budget="quick"):
    """`reproduce smoke` in this process: (the failed runs, the lines it logged and the runs printed)."""
    lines = []
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        failed = reproduce.reproduce("smoke", budget, seeds, tiny(tmp_path, *extra), log=lines.append)
    return failed, "\n".join(lines), printed.getvalue()


@pytest.mark.slow
def test_reproduce_runs_the_missing_cells_only_then_writes_the_table(tmp_path):
    failed, log, printed = _reproduce(tmp_path, [1])
    assert failed == [] and "all 2 runs finished" in log and printed.count("finished resnet") == 2
    assert len(list((tmp_path / "runs").glob("*/record.json"))) == 2
    table = (tmp_path / "results" / "baselines.csv").read_text()
    assert "resnet20" in table and "resnet32" in table and "wrote" in log
    # seeds 1 and 2 of resnet20: the seed-1 cell is skipped, the seed-2 cell trains
    failed, log, printed = _reproduce(tmp_path, [1, 2], "model=resnet20")
    assert failed == [] and "launching 1 runs (1 already have a record)" in log
    assert printed.count("epoch 1/1") == 1 and "already done" not in printed
    assert len(list((tmp_path / "runs").glob("*/record.json"))) == 3
    failed, log, printed = _reproduce(tmp_path, [1, 2], "model=resnet20")
    assert failed == [] and "every run already has a record" in log and "epoch 1/1" not in printed


def _planned(tmp_path, *extra, seeds=(1,)):
    spec = reproduce.load_grid("smoke")
    jobs = reproduce.grid_jobs(spec, "full", list(seeds), tiny(tmp_path, *extra))
    return plan.plan_jobs(reproduce.compose_all(jobs))


@pytest.mark.slow
def test_an_interrupted_cell_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C in the second epoch of the first cell (after its epoch-1 checkpoint): status says
    interrupted; reproduce resumes that cell after epoch 1 and trains the other from scratch."""
    overrides = ["model=resnet20", "trainer.progress=lines"]
    interrupt_in_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        reproduce.reproduce("smoke", "full", [1, 2], tiny(tmp_path, *overrides), log=lambda line: None)
    monkeypatch.undo()
    first, second = _planned(tmp_path, *overrides, seeds=(1, 2))
    assert first.status.state == "interrupted" and first.status.detail == "checkpoint after epoch 1/2"
    assert second.status.state == "pending"
    assert first.images_left == 1 * 100 and second.images_left == 2 * 100  # epochs left x images
    assert reproduce.reproduce("smoke", "full", [1, 2], tiny(tmp_path, *overrides), log=lambda line: None) == []
    resumed = json.loads((first.status.run_dir / "record.json").read_text())
    fresh = json.loads((second.status.run_dir / "record.json").read_text())
    assert resumed["timing"]["resumed_after_epoch"] == 1 and fresh["timing"]["resumed_after_epoch"] is None


@pytest.mark.slow
def test_failed_and_diverged_cells_are_named_and_the_others_finish(tmp_path, capsys):
    """One cell's checkpoint is corrupt (it raises), one diverges (lr 1e30), one is fine."""
    sweep = ["model=resnet20", "optimizer.lr=0.05,1e30,0.02"]
    fine, diverging, broken = _planned(tmp_path, *sweep)
    broken.status.run_dir.mkdir(parents=True)
    (broken.status.run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exit_status:  # the command, in this process
        main(["reproduce", "smoke", "--seeds", "1", *tiny(tmp_path, *sweep)])
    assert exit_status.value.code == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors[0] == "prune-bench: error: 2 runs did not finish:"
    assert any(broken.status.name in line and "(failed: CheckpointError: checkpoint" in line for line in errors)
    assert any(diverging.status.name in line and "(diverged: non-finite loss at step" in line for line in errors)
    assert json.loads((fine.status.run_dir / "record.json").read_text())["status"] == "finished"
    assert "CheckpointError" in json.loads((broken.status.run_dir / "failed.json").read_text())["reason"]
    assert inspect_run(broken.status.run_dir).state == "failed"
    assert (tmp_path / "results" / "baselines.csv").is_file()  # the table is written all the same


@pytest.mark.slow
def test_dry_run_lists_states_and_cost_from_a_probe(tmp_path):
    assert _reproduce(tmp_path, [1], "model=resnet20", budget="full")[0] == []
    lines = []
    assert reproduce.reproduce("smoke", "full", [1, 2, 3], tiny(tmp_path, "model=resnet20"), dry_run=True,
                               log=lines.append) == []
    lines = "\n".join(lines).splitlines()
    pending = [line for line in lines if line.startswith("pending")]
    assert len(pending) == 2 and sum(line.startswith("finished") for line in lines) == 1
    assert all(re.search(r"2 epochs x 100 images, 2 evaluations: about \d+s$", line) for line in pending)
    assert "3 runs: 1 finished, 0 running, 0 interrupted, 0 failed, 0 diverged, 2 pending" in lines
    assert any(re.match(r"to train: 400 images; about \d+s for the runs left, one after another \(\d+s with the probe ", line)
               for line in lines)
    assert any(re.match(r"  resnet20 at batch 50 on cpu fp32: [\d.]+ s/step \(\d+ timed\)", line) for line in lines)
    assert len(list((tmp_path / "runs").glob("*/record.json"))) == 1  # nothing ran


def test_one_shot_cells_share_one_training_in_the_plan(tmp_path):
    """Two magnitude cells that differ only in the level share one dense training: it costs
    once, and once trained, the other cell is pruning only."""
    extra = ["model=resnet20", "pruner=magnitude", "pruner.sparsity_levels=[0.0]"]
    jobs = reproduce.compose_all([tiny(tmp_path, "+exp=smoke", *extra, f"pruner.sparsity={s}") for s in (0.3, 0.5)])
    first, second = plan.plan_jobs(jobs)
    shared = first.stages[0].directory
    assert shared == second.stages[0].directory and shared.parent.name == ".trained"
    assert (first.images_left, second.images_left) == (2 * 100, 0)
    run(jobs[0][1], log=lambda line: None)
    first, second = plan.plan_jobs(jobs)
    assert first.status.state == "finished" and second.status.state == "pending"
    assert second.images_left == 0 and "its shared stages are done" in second.status.detail


@pytest.mark.slow
def test_when_every_cell_fails_there_is_no_table_but_the_failures_are_named(tmp_path):
    failed, log, _ = _reproduce(tmp_path, [1], "model=resnet20", "optimizer.lr=1e30")
    assert len(failed) == 1 and "(diverged: non-finite loss at step" in failed[0]
    assert "no table: " in log and not (tmp_path / "results" / "baselines.csv").exists()
