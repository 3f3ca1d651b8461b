"""The stage runner: each pruner's declared stages, their folders and identities (the runs folders
earlier versions wrote stay valid), resume of every stage kind after a crash, and a structural
change that keeps the run's compilation and memory format."""

import pytest
import torch
from omegaconf import OmegaConf

from conftest import Crash, crash_after_checkpoint, make_config
from prune_bench import layout
from prune_bench.data import Augment, load_data, steps_per_epoch
from prune_bench.engine import run as experiment
from prune_bench.engine.loop import FitState, Training, train_epoch
from prune_bench.engine.runtime import Runtime
from prune_bench.engine.stages import plan_stages
from prune_bench.identity import config_hash, run_identity
from prune_bench.models import ModelSpec
from prune_bench.optim import build_optimizer, build_scheduler
from prune_bench.pruning import TrainContext, build_pruner

INFO = {"dataset": "cifar10", "format": "synthetic", "n_train": 200, "n_test": 100}
DPM = ["pruner=dpm", "model.shortcut=B", "pruner.sparse.epochs=1", "pruner.finetune.epochs=2",
       "pruner.prune_epochs=1", "pruner.prune_steps=2", "pruner.sp_steps=2", "pruner.sr_cooldown=2",
       "pruner.speedup=1.3", "latency.batch_sizes=[1]", "latency.min_repeats=3", "latency.max_seconds=0.1"]


def quiet(line):
    pass


def names_and_kinds(stages):
    return [(stage.name, stage.kind, stage.shared) for stage in stages]


def test_each_pruner_declares_its_stages_with_the_folders_earlier_versions_wrote(tiny_overrides):
    runs = layout.runs_root(make_config(tiny_overrides))
    plain = make_config(tiny_overrides)
    (only,) = plan_stages(plain, INFO, build_pruner(plain.pruner))
    assert (only.name, only.kind, only.shared) == ("train", "train", False)
    assert only.directory == runs / f"resnet20_sgd_none-{run_identity(plain, INFO)}"

    gradual = make_config([*tiny_overrides, "pruner=gmp", "pruner.events=2"])
    assert names_and_kinds(plan_stages(gradual, INFO, build_pruner(gradual.pruner))) == [("train", "prune", False)]

    one_shot = make_config([*tiny_overrides, "pruner=magnitude", "pruner.finetune_epochs=3",
                            "pruner.finetune_lr_factor=0.5"])
    pretrain, prune = plan_stages(one_shot, INFO, build_pruner(one_shot.pruner))
    assert names_and_kinds([pretrain, prune]) == [("pretrain", "train", True), ("prune", "prune", False)]
    train_id = run_identity(one_shot, INFO, drop=("pruner",))  # the shared training of earlier versions
    assert pretrain.directory == runs / ".trained" / f"resnet20_sgd-{train_id}"
    assert prune.directory == layout.run_dir(one_shot, run_identity(one_shot, INFO))
    assert (prune.epochs, prune.optimizer.lr, prune.scheduler.name, prune.seed) == (3, 0.05, "constant", 2)
    other_level = make_config([*tiny_overrides, "pruner=magnitude", "pruner.sparsity=0.9"])
    assert plan_stages(other_level, INFO, build_pruner(other_level.pruner))[0].directory == pretrain.directory

    dpm = make_config([*tiny_overrides, *DPM])
    pretrain, sparse, finetune = plan_stages(dpm, INFO, build_pruner(dpm.pruner))
    assert names_and_kinds([pretrain, sparse, finetune]) == [
        ("pretrain", "train", True), ("sparse", "sparse", True), ("finetune", "prune", False)]
    assert pretrain.directory.name == f"resnet20_sgd-{run_identity(dpm, INFO, drop=('pruner',))}"
    legacy_sparse = config_hash({"pretrain": pretrain.identity, "host": "depgraph",
                                        "sparse": OmegaConf.to_container(dpm.pruner.sparse, resolve=True)})
    assert sparse.directory == runs / ".trained" / f"resnet20_depgraph-sparse-{legacy_sparse}"
    assert [stage.seed for stage in (pretrain, sparse, finetune)] == [1, 2, 3]
    assert (sparse.optimizer.lr, finetune.optimizer.lr, finetune.epochs) == (0.01, 0.01, 2)
    variant = make_config([*tiny_overrides, *DPM, "pruner.decay=none"])
    shared = plan_stages(variant, INFO, build_pruner(variant.pruner))
    assert [s.directory for s in shared[:2]] == [pretrain.directory, sparse.directory]  # a shared prefix
    assert shared[2].directory != finetune.directory


def test_a_pruning_schedule_that_does_not_fit_its_stage_is_refused_when_the_stages_are_planned(tiny_overrides):
    cfg = make_config([*tiny_overrides, *DPM, "pruner.sp_steps=50"])
    with pytest.raises(Exception, match="pruner.sp_steps: a group picked at the end of the pruning phase"):
        plan_stages(cfg, INFO, build_pruner(cfg.pruner))


def whole_and_killed_then_resumed(overrides, tmp_path, monkeypatch, crash_when):
    """The run uninterrupted; the same run crashed after the checkpoint `crash_when` picks, then
    run again: (whole record, resumed record, the resumed run's lines)."""
    whole = experiment.run(make_config([*overrides, f"paths.runs_dir={tmp_path / 'whole'}"]), log=quiet)
    crash_after_checkpoint(monkeypatch, crash_when)
    cut = make_config([*overrides, f"paths.runs_dir={tmp_path / 'cut'}"])
    with pytest.raises(Crash):
        experiment.run(cut, log=quiet)
    monkeypatch.undo()
    lines = []
    resumed = experiment.run(cut, log=lines.append)
    return whole, resumed, lines


@pytest.mark.slow
@pytest.mark.parametrize("crash_in", ["pretrain", "prune"])
def test_one_shot_pretraining_and_fine_tuning_resume_bitwise(tiny_overrides, tmp_path, monkeypatch, one_thread,
                                                            crash_in):
    """A one-shot run has a shared training stage and its own pruning stage with fine-tuning:
    killed in either, it resumes there and ends where an uninterrupted run ends; the mask holds."""
    overrides = [*tiny_overrides, "pruner=magnitude", "pruner.sparsity=0.6", "pruner.sparsity_levels=[0.3]",
                 "pruner.finetune_epochs=2", "data.synthetic.train_size=100"]
    hooks = "none" if crash_in == "pretrain" else "magnitude"
    whole, resumed, lines = whole_and_killed_then_resumed(
        overrides, tmp_path, monkeypatch, lambda training, state, path: training.hooks.name == hooks and state.epoch == 1)
    stage = "pretrain" if crash_in == "pretrain" else "prune"
    assert any(line.startswith(f"resuming the {stage} stage") and "after epoch 1 of 2" in line for line in lines)
    assert resumed["metrics"] == whole["metrics"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in whole["history"]]
    assert abs(resumed["sparsity"]["prunable"] - 0.6) * resumed["pruner"]["n_prunable"] < 1  # the mask held
    weights = {name: torch.load(f"{record['run_dir']}/model.pt", weights_only=True)["model"]
               for name, record in (("whole", whole), ("resumed", resumed))}
    for key, tensor in weights["whole"].items():
        assert torch.equal(tensor, weights["resumed"][key]), key


@pytest.mark.slow
def test_a_sparse_stage_killed_mid_way_resumes_bitwise(tiny_overrides, tmp_path, monkeypatch, one_thread):
    overrides = [*tiny_overrides, *DPM, "pruner.sparse.epochs=2", "trainer.epochs=1", "data.synthetic.train_size=100"]
    whole, resumed, lines = whole_and_killed_then_resumed(
        overrides, tmp_path, monkeypatch, lambda training, state, path: training.hooks.name == "dpm-sparse")
    assert any(line.startswith("resuming the sparse stage") for line in lines)
    assert resumed["metrics"]["test_acc"] == whole["metrics"]["test_acc"]
    assert resumed["stages"]["sparse"]["test_acc"] == whole["stages"]["sparse"]["test_acc"]


@pytest.mark.slow
def test_a_model_a_structural_pruner_hands_back_keeps_compilation_and_memory_format(one_thread):
    """Training.replace: the slimmed model is placed in channels_last and compiled again (the eager
    backend runs torch.compile's machinery without code generation), and training goes on."""
    cfg = make_config(["data=synthetic", *DPM, "pruner.decay=none", "pruner.finetune.epochs=1",
                       "pruner.prune_steps=1", "pruner.speedup=1.5"])
    torch.manual_seed(0)
    spec = ModelSpec("resnet20", 10, {"shortcut": "B"})
    runtime = Runtime(torch.device("cpu"), bf16=False, channels_last=True, eval_batch_size=50, progress="none",
                      compile=True, compile_backend="eager")
    data = synthetic_data(64)
    n_steps = steps_per_epoch(data.n_train, 16)
    trainer = OmegaConf.merge(cfg.trainer, {"epochs": 1, "batch_size": 16})
    pruner = build_pruner(cfg.pruner)

    def build(model):
        optimizer = build_optimizer(cfg.optimizer, model.parameters())
        return optimizer, build_scheduler(OmegaConf.create({"name": "constant"}), optimizer, n_steps, 1)

    model = runtime.place(spec.build())
    ctx = TrainContext(model, None, data, n_steps, n_steps, 0, runtime.device, spec)
    training = Training(model, build, pruner, ctx, runtime)
    pruner.start(ctx)
    first = training.model
    entry = train_epoch(training, data, trainer, 0, Augment(), FitState())  # the event at the stage's last step slims
    assert entry is not None and pruner.report()["groups"]["removed"] > 0
    slimmed = training.model
    assert sum(p.numel() for p in slimmed.parameters()) < sum(p.numel() for p in spec.build().parameters())
    assert training.forward is not slimmed  # compiled, and computing with the slimmed model's parameters:
    assert [id(p) for p in training.forward.parameters()] == [id(p) for p in slimmed.parameters()]
    conv = slimmed.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert ctx.model is slimmed and ctx.optimizer is training.optimizer
    assert first is slimmed  # Torch-Pruning slims in place; what the loop re-applies is format and compilation
    assert train_epoch(training, data, trainer, 0, Augment(), FitState(epoch=1)) is not None  # and it trains on


def synthetic_data(n):
    cfg = make_config(["data=synthetic", f"data.synthetic.train_size={n}", "data.synthetic.test_size=20"])
    return load_data(cfg.data, torch.device("cpu"))
