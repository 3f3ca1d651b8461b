"""DPM on the OTOv2 host end to end on tiny synthetic data: DHSPG trains the prune stage and
picks the groups, SP decays them, SR releases some, the zero groups are removed at the stage's
end to exactly the target group sparsity, and a run killed mid-stage resumes bitwise."""

from pathlib import Path

import pytest
import torch

from conftest import TINY_DPM, Crash, crash_after_checkpoint, make_config
from prune_bench.engine import run as experiment
from prune_bench.engine.checkpoint import load_pruned_model
from prune_bench.metrics import count_params_macs
from prune_bench.models import build_model
from prune_bench.pruning.dpm.zig import build_zigs

pytestmark = pytest.mark.usefixtures("one_thread")

OTOV2 = [*TINY_DPM, "pruner.host=otov2", "pruner.sparse_learning=false", "pruner.finetune.epochs=4",
         "pruner.finetune.lr=0.1", "pruner.otov2.target_group_sparsity=0.3", "pruner.otov2.lmbda=1.0",
         "pruner.otov2.epsilon=0.99", "pruner.sp_steps=3", "pruner.decay=sp+sr",
         # SR by construction: every decaying group qualifies (C_rate >= -1 always, C_len >= 0), so
         # groups are released at each step while DHSPG has a replacement for them
         "pruner.sr_rate_baseline=zero", "pruner.T_rate=-1.0", "pruner.T_len=-1.0"]


def quiet(line):
    pass


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted run, on one thread like the tests (a module fixture is set up before
    the function-scoped one_thread, and another thread count sums in another order)."""
    runs = tmp_path_factory.mktemp("otov2") / "runs"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return experiment.run(make_config([*OTOV2, f"paths.runs_dir={runs}"]), log=quiet)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_dhspg_picks_sp_decays_sr_releases_and_the_target_group_sparsity_is_removed(whole):
    report = whole["pruner"]
    assert whole["status"] == "finished" and report["host"] == "otov2" and report["counter"] == "conv + linear MACs"
    counts = report["groups"]
    events = report["event_log"]
    releases = [e for e in events if e["event"] == "release"]
    assert counts["released"] > 0 and releases  # SR acted
    for event in releases:  # DHSPG named a replacement for each, and what each would remove is logged
        assert len(event["replaced_by"]) == len(event["channels"]) == len(event["macs"]) == len(event["replacement_macs"])
        assert all(m > 0 for m in event["macs"] + event["replacement_macs"])
    zeroed = sum(len(e["channels"]) for e in events if e["event"] == "zero")
    removed = sum(len(e["channels"]) for e in events if e["event"] == "remove")
    assert removed == counts["removed"] == zeroed  # every group SP took to zero, and only those, went
    assert counts["picked"] == counts["removed"] + counts["released"] and report["pending"] == 0
    stages = whole["stages"]
    assert list(stages) == ["pretrain", "prune"] and stages["pretrain"]["kind"] == "train"
    slimmed = load_pruned_model(whole["run_dir"])
    params, macs = count_params_macs(slimmed)
    assert (report["params"], report["ops"]) == (params, macs) == (whole["params"], whole["macs"])
    assert report["flops_pct"] == pytest.approx(100 * macs / report["ops_original"])


def test_the_zero_groups_reach_exactly_the_target_count(whole):
    # ResNet-20 (shortcut B): the ZIG count is the channels of every Torch-Pruning group but the
    # classifier's outputs; ceil(0.3 x that) must be removed
    n = len(build_zigs(build_model("resnet20", shortcut="B"), torch.zeros(1, 3, 32, 32)))
    assert whole["pruner"]["groups"]["removed"] == -(-3 * n // 10)


@pytest.mark.slow
def test_a_prune_stage_killed_mid_way_resumes_bitwise(whole, tmp_path, monkeypatch):
    cut = make_config([*OTOV2, f"paths.runs_dir={tmp_path / 'runs'}"])
    crash_after_checkpoint(monkeypatch, lambda training, state, path: training.hooks.name == "dpm" and state.epoch == 2)
    with pytest.raises(Crash):
        experiment.run(cut, log=quiet)
    monkeypatch.undo()
    resumed = experiment.run(cut, log=quiet)
    assert resumed["pruner"]["event_log"] == whole["pruner"]["event_log"]
    assert resumed["metrics"]["test_acc"] == whole["metrics"]["test_acc"]
    load = lambda record: torch.load(Path(record["run_dir"]) / "model.pt", weights_only=True)["model"]  # noqa: E731
    for key, tensor in load(whole).items():
        assert torch.equal(tensor, load(resumed)[key]), key
