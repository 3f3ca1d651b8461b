"""DPM runs end to end on tiny synthetic data: the record, shared stages, resume mid-decay
(bitwise), SIGKILL, model.pt reloading, the dpm2024 table and experiments."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch_pruning as tp
from omegaconf import OmegaConf

from conftest import (
    TINY_DPM,
    Crash,
    cli_error_lines,
    crash_after_checkpoint,
    make_config,
    run_cli,
    tiny_dpm_config,
)
from prune_bench.config.validate import validate
from prune_bench.data import load_data
from prune_bench.engine import run as experiment
from prune_bench.engine.checkpoint import load_pruned_model
from prune_bench.engine.loop import evaluate
from prune_bench.engine.runtime import Runtime
from prune_bench.models import build_model
from prune_bench.pruning.dpm.shapes import layer_shapes
from prune_bench.report.specs import load_table_spec
from prune_bench.report.tables import build_table, collect_records, write_plot
from prune_bench.scale.status import scan

pytestmark = pytest.mark.usefixtures("one_thread")

# ResNet-20 (shortcut B) on 100 images, 4 steps an epoch: pretrain 1 epoch, sparse stage 2,
# fine-tune 3 whose first 2 are the pruning phase: events after steps 2, 4, 6 and 8, each pick
# decays over 2 steps, so the checkpoints after fine-tune epochs 1 and 2 (steps 4 and 8) hold
# removed channels and picks still decaying.


def quiet(message):
    pass


def config(runs: Path, *extra):
    return tiny_dpm_config(runs, *extra)


@pytest.fixture
def finished(tiny_dpm_run):
    """One uninterrupted sp+sr run (its runs folder holds the shared stages)."""
    return tiny_dpm_run


def weights(record):
    return torch.load(Path(record["run_dir"]) / "model.pt", weights_only=True)["model"]


@pytest.mark.slow
def test_a_dpm_run_reaches_its_speedup_and_records_it(finished):
    _, record, _ = finished
    report = record["pruner"]
    assert record["status"] == "finished" and report["method"] == "dpm"
    assert "reconstruction" in report and "not public" in report["reconstruction"]
    assert report["speedup_target"] == 1.6 and report["speedup_achieved"] >= 1.6
    assert report["counter"] == "Torch-Pruning's counter"
    slimmed = load_pruned_model(record["run_dir"])
    ops, params = tp.utils.count_ops_and_params(slimmed, torch.zeros(1, 3, 32, 32))
    assert (report["ops"], report["params"]) == (ops, params) and params == record["params"]  # the slimmed model
    assert report["flops_pct"] == pytest.approx(100 * ops / report["ops_original"])
    assert report["params_pct"] == pytest.approx(100 * params / report["params_original"])
    assert report["params_original"] == 272_474  # ResNet-20, shortcut B
    conv_linear = report["conv_linear"]
    assert conv_linear["macs_original"] == 40_813_184 and conv_linear["macs"] == record["macs"]
    selects = [e for e in report["event_log"] if e["event"] == "select"]
    final_target = report["ops_original"] / 1.6  # the last event's: the speed-up, by the paper's counter
    assert selects[-1]["ops"] <= final_target < selects[-1]["ops_before_last_pick"]
    counts = report["groups"]
    assert counts["picked"] == counts["removed"] + counts["released"] and report["pending"] == 0
    events = {e["event"] for e in report["event_log"]}
    assert {"pick", "remove"} <= events
    assert all({"step", "group", "channels"} <= set(e) for e in report["event_log"] if e["event"] != "select")
    latency = record["latency"]
    assert set(latency) == {"1", "4"}
    for batch, entry in latency.items():
        assert entry["dense"]["batch_size"] == entry["slimmed"]["batch_size"] == int(batch)
        assert entry["speedup"] == pytest.approx(entry["dense"]["median_ms"] / entry["slimmed"]["median_ms"])
        assert entry["dense"]["repeats"] >= 3 and entry["dense"]["threads"] >= 1
    assert report["channels"]["stages.0.0.conv1"][1] < 16 or report["channels"]["conv1"][1] < 16
    stages = record["stages"]
    assert stages["pretrain"]["epochs"] == 1 and stages["sparse"]["epochs"] == 2
    assert stages["finetune"]["channels_last"] is False  # on CPU (torch 2.13 oneDNN crash)
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3]  # the run's own stage


def test_model_pt_reloads_in_one_call_and_evaluates_to_the_recorded_accuracy(finished):
    _, record, _ = finished
    model = load_pruned_model(record["run_dir"])
    shapes = layer_shapes(model)
    assert {name: shape for name, shape in shapes.items() if len(shape) == 2} == record["pruner"]["channels"]
    cfg = config(Path(record["run_dir"]).parent)
    data = load_data(cfg.data, torch.device("cpu"))
    runtime = Runtime(torch.device("cpu"), False, False, 50, "none")
    assert evaluate(model, data, runtime)["test_acc"] == record["metrics"]["test_acc"]


@pytest.mark.slow
def test_variants_share_the_pretrained_and_the_sparse_model(finished):
    runs, record, first_lines = finished
    assert any(line.startswith("pretrain stage in") for line in first_lines)
    lines = []
    other = experiment.run(config(runs, "pruner.decay=none"), log=lines.append)
    assert any("reusing the pretrain stage" in line for line in lines)
    assert any("reusing the sparse stage" in line for line in lines)
    assert other["stages"]["pretrain"]["dir"] == record["stages"]["pretrain"]["dir"]
    assert other["stages"]["sparse"]["dir"] == record["stages"]["sparse"]["dir"]
    assert other["pruner"]["groups"]["released"] == 0 and other["pruner"]["speedup_achieved"] >= 1.6
    without = experiment.run(config(runs, "pruner.decay=none", "pruner.sparse_learning=false"), log=lines.append)
    assert "sparse" not in without["stages"]
    assert len(list((runs / ".trained").iterdir())) == 2  # one pretrained, one sparse model


@pytest.mark.slow
def test_resume_after_crashes_mid_sparse_stage_and_mid_decay_is_bitwise_equal(finished, tmp_path, monkeypatch):
    _, whole, _ = finished
    runs = tmp_path / "runs"
    crashes = {("sparse", 1), ("finetune", 2)}
    seen = {}

    def crash_when(training, state, path):
        hooks = training.hooks.name
        stage = "finetune" if hooks == "dpm" else "sparse" if hooks == "dpm-sparse" else "pretrain"
        if (stage, state.epoch) not in crashes:
            return False
        crashes.discard((stage, state.epoch))
        seen[stage] = torch.load(path, weights_only=True)
        return True

    crash_after_checkpoint(monkeypatch, crash_when)
    for _ in range(2):
        with pytest.raises(Crash):
            experiment.run(config(runs), log=quiet)
    checkpoint = seen["finetune"]
    assert checkpoint["pruner"]["pending"], "the checkpoint is taken mid-decay"
    assert checkpoint["pruner"]["counts"]["removed"] > 0, "... after removals"
    assert checkpoint["architecture"]["layers"] != layer_shapes(build_model("resnet20", shortcut="B"))
    lines = []
    resumed = experiment.run(config(runs), log=lines.append)
    assert any("resuming the finetune stage" in line and "after epoch 2 of 3" in line for line in lines)
    assert resumed["metrics"]["test_acc"] == whole["metrics"]["test_acc"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in whole["history"]]
    assert resumed["pruner"]["event_log"] == whole["pruner"]["event_log"]
    for name, tensor in weights(whole).items():
        assert torch.equal(tensor, weights(resumed)[name]), name


@pytest.mark.slow
def test_sigkill_during_the_pruning_phase_then_rerun_matches(finished, tmp_path):
    source_runs, whole, _ = finished
    runs = tmp_path / "runs"
    shutil.copytree(source_runs / ".trained", runs / ".trained")  # the shared stages, as a sweep would have them
    args = ["run", *TINY_DPM, f"paths.runs_dir={runs}", f"paths.data_root={source_runs.parent / 'data'}"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "prune_bench.cli", *args], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while not list(runs.glob("resnet20*/checkpoint.pt")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # during fine-tune epoch 2: channels removed, picks decaying
    process.wait()
    assert not list(runs.glob("*/record.json"))
    (interrupted,) = scan(runs)  # what `prune-bench status` reads
    assert interrupted.state == "interrupted", interrupted
    assert interrupted.detail.startswith("checkpoint after epoch ") and interrupted.detail.endswith("/3 (finetune stage)")
    resumed = subprocess.run([sys.executable, "-m", "prune_bench.cli", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=240)  # one thread, as the reference run
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the finetune stage" in resumed.stdout
    record = json.loads(next(runs.glob("resnet20*/record.json")).read_text())
    assert record["metrics"]["test_acc"] == whole["metrics"]["test_acc"]
    for name, tensor in weights(whole).items():
        assert torch.equal(tensor, weights(record)[name]), name


@pytest.mark.slow
def test_a_two_thread_cpu_run_of_slimmed_shortcuts_does_not_crash(finished, tmp_path):
    """torch 2.13's oneDNN backward of a 1x1 stride-2 conv in channels_last with < 16 input
    channels segfaults with 2+ threads; the fine-tune stage on CPU avoids channels_last."""
    source_runs, _, _ = finished
    runs = tmp_path / "runs"
    shutil.copytree(source_runs / ".trained", runs / ".trained")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-m", "prune_bench.cli", "run", *TINY_DPM, "pruner.speedup=2.5",
                             f"paths.runs_dir={runs}", f"paths.data_root={source_runs.parent / 'data'}"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "default memory format" in result.stdout
    record = json.loads(next(runs.glob("resnet20*/record.json")).read_text())
    assert min(shape[0] for name, shape in record["pruner"]["channels"].items() if name.endswith("shortcut.0")) < 16


def test_the_dpm2024_table_keeps_reduced_budgets_apart_from_the_paper(finished, tmp_path):
    runs, record, _ = finished
    spec = load_table_spec("dpm2024")
    table = build_table("dpm2024", spec, collect_records(runs))
    ours = table[table["n"] > 0]
    assert len(ours) >= 1 and all(setting.startswith("other") for setting in ours["setting"])
    assert ours["acc_paper"].isna().all()  # a reduced budget never sits beside the paper
    row = ours[(ours["decay"] == "sp+sr") & (ours["sl"] == "True")].iloc[0]
    assert row["flops_pct"] == pytest.approx(record["pruner"]["flops_pct"])
    paper = table[(table["n"] == 0) & (table["model"] == "resnet56") & (table["host"] == "depgraph")]
    assert set(paper["decay"]) == {"none", "sp", "sp+sr"} and paper["acc_paper"].notna().all()
    # a record of the full recipe (the experiment's config on the official data) joins the paper's row
    full = json.loads(json.dumps(record))
    full["config"] = OmegaConf.to_container(make_config(["+exp=dpm2024_resnet56_depgraph", "pruner.decay=sp+sr"]),
                                            resolve=True)
    full["data"]["label"] = "cifar10-official"
    joined = build_table("dpm2024", spec, [full])
    hit = joined[joined["n"] == 1].iloc[0]
    assert hit["setting"] == "paper" and hit["acc_paper"] == 94.13 and hit["flops_pct_paper"] == 45.80
    assert write_plot("dpm2024", runs, tmp_path).is_file()


@pytest.mark.parametrize("name", ["dpm2024_resnet56_depgraph", "dpm2024_resnet56_depgraph_nosl",
                                  "dpm2024_resnet56_bnscale", "dpm2024_vgg16_bn_bnscale", "dpm2024_quick"])
def test_the_dpm2024_experiments_compose_and_validate(name):
    cfg = make_config([f"+exp={name}", "pruner.decay=sp"])
    validate(cfg)
    assert cfg.pruner.name == "dpm" and cfg.pruner.decay == "sp"
    if cfg.model.name.startswith("resnet"):
        assert cfg.model.shortcut == "B"
    if name.startswith("dpm2024_resnet56"):  # Torch-Pruning's ResNet-56 benchmark (docs/methods/dpm2024.md)
        assert (cfg.trainer.epochs, list(cfg.scheduler.milestones), cfg.optimizer.lr) == (200, [120, 150, 180], 0.1)
        assert (cfg.pruner.finetune.epochs, cfg.pruner.finetune.lr, cfg.pruner.finetune.weight_decay) == (100, 0.01, 5e-4)
        assert list(cfg.pruner.finetune.scheduler.milestones) == [60, 80] and cfg.pruner.speedup == 2.11
        if cfg.pruner.sparse_learning and cfg.pruner.host == "depgraph":
            assert (cfg.pruner.sparse.epochs, cfg.pruner.sparse.weight_decay, cfg.pruner.sparse.reg) == (100, 0.0, 5e-4)


@pytest.mark.slow
def test_shortcut_a_is_refused_with_one_line(tmp_path):
    assert cli_error_lines(["run", *TINY_DPM, "model.shortcut=A", f"paths.runs_dir={tmp_path / 'runs'}"], tmp_path) == [
        "prune-bench: error: model.shortcut: 'A' (zero-pad) leaves the residual channels unprunable by "
        "Torch-Pruning; pruner=dpm needs model.shortcut=B"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_fine_tune_stage_too_short_for_the_decay_is_one_line_before_anything_trains(tmp_path):
    args = ["run", *TINY_DPM, "pruner.sp_steps=20", f"paths.runs_dir={tmp_path / 'runs'}"]
    assert cli_error_lines(args, tmp_path) == [
        "prune-bench: error: pruner.sp_steps: a group picked at the end of the pruning phase (step 8) needs 20 "
        "more steps, but the fine-tune stage has 12 in all"]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))
    sweep = run_cli(["run", "-m", *TINY_DPM, "pruner.sp_steps=2,20", f"paths.runs_dir={tmp_path / 'runs'}"],
                    cwd=tmp_path)  # a sweep checks every job before the first trains
    assert sweep.returncode == 2 and "epoch" not in sweep.stdout
    lines = sweep.stderr.strip().splitlines()
    assert len(lines) == 1 and "pruner.sp_steps=20 " in lines[0] and "pruner.sp_steps=2 " not in lines[0]
    assert lines[0].endswith("] pruner.sp_steps: a group picked at the end of the pruning phase (step 8) needs 20 "
                             "more steps, but the fine-tune stage has 12 in all")


def test_the_plan_counts_the_shared_stages_once_and_every_fine_tune(finished, tmp_path):
    from prune_bench.scale.plan import plan_jobs

    runs, _, _ = finished
    fresh = tmp_path / "runs"
    planned = plan_jobs([([f"pruner.decay={decay}"], config(fresh, f"pruner.decay={decay}")) for decay in ("none", "sp")])
    # 100 images: pretrain 1 epoch and sparse stage 2 once, then 3 fine-tune epochs per run
    assert [job.images_left for job in planned] == [(1 + 2 + 3) * 100, 3 * 100]
    assert plan_jobs([(["pruner.decay=sp"], config(runs, "pruner.decay=sp"))])[0].images_left == 3 * 100
    assert plan_jobs([([], config(runs))])[0].images_left == 0  # finished
