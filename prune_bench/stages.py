"""Runs with stages (DPM, PAPERS.md section 4): pretrain -> optional sparse stage -> fine-tune,
whose first epochs are the pruning phase. One checkpoint/resume story for all of them.

- pretrain: the dense model with the run's optimizer, scheduler and trainer.epochs. It is the
  training a one-shot pruner shares (runs/.trained/<model>_<optimizer>-<hash of the config
  without its pruner section>), trained once under a file lock, so every DPM variant of a seed
  (and any other pruner with the same training config) reuses it.
- sparse stage (pruner.sparse_learning): the host's regulariser on the gradients, from the
  pretrained weights, with pruner.sparse's lr, weight decay, scheduler and epochs; shared the
  same way by every run with the same pretraining, host and pruner.sparse section.
- fine-tune (pruner.finetune), in the run's own directory, with the DPM pruner's hooks: picks,
  decay, releases, removals (shapes change), then plain fine-tuning.

Every stage checkpoints after each epoch into its directory and resumes from there; a stage's
checkpoint carries the pruned architecture, so a resume rebuilds the slimmed shapes before the
weights load. The global RNG is seeded at each stage's start, so a stage computes the same
whether the earlier ones were trained in this process or loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .config import config_hash, run_identity
from .data import DeviceData, steps_per_epoch
from .experiment import CHECKPOINT, TRAINED, Trained, _load, _model_options, _to_device
from .experiment import train as train_dense
from .fileio import atomic_torch_save
from .models import build_model
from .optim import build_optimizer, build_scheduler
from .progress import Monitor, n_epochs
from .pruning import NoPruner, Pruner, TrainContext
from .pruning.hosts import SparseLearning, build_host
from .train import FitState, Runtime, fit, load_checkpoint, restore, save_checkpoint
from .workspace import Created


@dataclass
class Stage:
    """One stage of a run: what to train with, where, and under which identity."""

    name: str  # pretrain | sparse | finetune
    directory: Path
    stage_id: str  # checkpoints and shared results belong to this id
    optimizer: DictConfig
    scheduler: DictConfig
    trainer: DictConfig  # the run's trainer section with this stage's epochs
    seed: int  # data order and the global RNG at the stage's start
    shared: bool  # keep the final weights as trained.pt (reused by other runs)


@dataclass
class StageResult:
    model: torch.nn.Module
    state: FitState
    ctx: TrainContext | None
    resumed_after: int
    reused: bool


def stage_config(cfg, section) -> tuple[DictConfig, DictConfig, DictConfig]:
    """Optimizer, scheduler and trainer sections of a stage: the run's optimizer with the
    stage's lr and weight decay, the stage's scheduler, the run's trainer with its epochs."""
    optimizer = OmegaConf.merge(cfg.optimizer, {"lr": section.lr, "weight_decay": section.weight_decay})
    trainer = OmegaConf.merge(cfg.trainer, {"epochs": section.epochs})
    return optimizer, section.scheduler, trainer


def train_stage(stage: Stage, model: torch.nn.Module, hooks: Pruner, data: DeviceData, runtime: Runtime,
                augment: bool, log, monitor: Monitor | None = None) -> StageResult:
    """Train `model` (built, on the device, holding the stage's starting weights) through the
    stage, resuming from its checkpoint; a finished shared stage is loaded, not trained."""
    trained_path = stage.directory / TRAINED
    if stage.shared and trained_path.is_file():
        payload = _load(trained_path, stage.stage_id)
        model.load_state_dict(payload["model"])
        log(f"reusing the {stage.name} stage in {stage.directory}")
        return StageResult(model, FitState(**payload["state"]), None, 0, True)
    epochs = stage.trainer.epochs
    n_steps = steps_per_epoch(data.n_train, stage.trainer.batch_size)

    def rebuild(new_model):
        new_optimizer = build_optimizer(stage.optimizer, new_model.parameters())
        return new_optimizer, build_scheduler(stage.scheduler, new_optimizer, n_steps, epochs)

    checkpoint_path = stage.directory / CHECKPOINT
    payload = load_checkpoint(checkpoint_path, stage.stage_id) if checkpoint_path.is_file() else None
    if payload is not None and payload.get("architecture"):
        model = _to_device(hooks.restore_architecture(model, payload["architecture"]), runtime)
    optimizer, scheduler = rebuild(model)
    ctx = TrainContext(model, optimizer, data, n_steps, n_steps * epochs, stage.seed, runtime.device)
    torch.manual_seed(stage.seed)
    hooks.start(ctx)
    state = FitState()
    if payload is not None:
        state = restore(payload, model, optimizer, scheduler, hooks)
        log(f"resuming the {stage.name} stage in {stage.directory} after epoch {state.epoch} of {epochs}")
    resumed_after = state.epoch
    stage.directory.mkdir(parents=True, exist_ok=True)

    def checkpoint(model_now, optimizer_now, scheduler_now, state_now):
        if stage.trainer.checkpoint:
            save_checkpoint(checkpoint_path, model_now, optimizer_now, scheduler_now, hooks, state_now, stage.stage_id)

    log(f"{stage.name} stage in {stage.directory}: {n_epochs(epochs)} at lr {stage.optimizer.lr:g}")
    if monitor is not None:
        monitor.start(stage.directory, stage.name)
    model, state = fit(model, optimizer, scheduler, hooks, ctx, data, stage.trainer, stage.seed, augment,
                       runtime, state, checkpoint=checkpoint, rebuild=rebuild, log=log, monitor=monitor)
    if stage.shared:
        atomic_torch_save({"run_id": stage.stage_id, "model": model.state_dict(), "state": asdict(state)},
                          trained_path)
        checkpoint_path.unlink(missing_ok=True)
    return StageResult(model, state, ctx, resumed_after, False)


def _summary(directory: Path, state: FitState, reused: bool) -> dict:
    evaluated = [h for h in state.history if "test_acc" in h]
    return {"dir": str(directory), "epochs": state.epoch, "reused": reused,
            "test_acc": evaluated[-1]["test_acc"] if evaluated else None, "train_s": state.train_seconds}


def shared_stages(cfg, data_info: dict, runs_dir: Path) -> list[tuple[Path, str, int]]:
    """(directory, identity, epochs) of the stages a run shares: the pretraining (the one-shot
    pruners' shared training), then the sparse stage when pruner.sparse_learning is on."""
    pretrain_id = run_identity(cfg, data_info, drop=("pruner",))
    stages = [(runs_dir / ".trained" / f"{cfg.model.name}_{cfg.optimizer.name}-{pretrain_id}", pretrain_id,
               int(cfg.trainer.epochs))]
    if cfg.pruner.sparse_learning:
        sparse_id = config_hash({"pretrain": pretrain_id, "host": cfg.pruner.host,
                                 "sparse": OmegaConf.to_container(cfg.pruner.sparse, resolve=True)})
        stages.append((runs_dir / ".trained" / f"{cfg.model.name}_{cfg.pruner.host}-sparse-{sparse_id}", sparse_id,
                       int(cfg.pruner.sparse.epochs)))
    return stages


def run_stages(cfg, data: DeviceData, runtime: Runtime, pruner: Pruner, run_dir: Path, run_id: str,
               created: Created, log, monitor: Monitor | None = None) -> Trained:
    """pretrain (shared) -> sparse stage (shared, if pruner.sparse_learning) -> fine-tune with
    the pruning phase (this run). Returns what experiment.py records. The fine-tune stage's
    schedule is checked first, before anything trains."""
    runs_dir = run_dir.parent
    pruner.plan_stage(steps_per_epoch(data.n_train, cfg.trainer.batch_size))
    augment = bool(cfg.data.augment)
    options = _model_options(cfg.model)
    pruner.model_spec = {"name": cfg.model.name, "num_classes": data.num_classes, "options": options}

    def fresh_model(weights: dict, runtime: Runtime) -> torch.nn.Module:
        model = _to_device(build_model(cfg.model.name, data.num_classes, **options), runtime)
        model.load_state_dict(weights)
        return model

    (pretrain_dir, pretrain_id, _), *sparse_stage = shared_stages(cfg, data.info, runs_dir)
    with created.lock(runs_dir / ".locks", f"trained-{pretrain_id}"):  # concurrent variants train it once
        created.folder(pretrain_dir)
        if monitor is not None:
            monitor.start(pretrain_dir, "pretrain")
        pretrained = train_dense(cfg, data, runtime, NoPruner(), pretrain_dir, pretrain_id, log, shared=True,
                                 monitor=monitor)
    pruner.stage_info = {"pretrain": _summary(pretrain_dir, pretrained.state, pretrained.reused)}
    weights = pretrained.model.state_dict()

    if sparse_stage:
        sparse_cfg = cfg.pruner.sparse
        sparse_dir, sparse_id, _ = sparse_stage[0]
        optimizer_cfg, scheduler_cfg, trainer_cfg = stage_config(cfg, sparse_cfg)
        stage = Stage("sparse", sparse_dir, sparse_id, optimizer_cfg, scheduler_cfg, trainer_cfg, cfg.seed + 1, True)
        importance = cfg.pruner.importance
        host = build_host(cfg.pruner.host, importance.group_reduction, importance.criterion)
        hooks = SparseLearning(host, float(sparse_cfg.reg))
        with created.lock(runs_dir / ".locks", f"sparse-{sparse_id}"):
            created.folder(sparse_dir)
            sparse = train_stage(stage, fresh_model(weights, runtime), hooks, data, runtime, augment, log, monitor)
        pruner.stage_info["sparse"] = _summary(sparse_dir, sparse.state, sparse.reused)
        weights = sparse.model.state_dict()

    optimizer_cfg, scheduler_cfg, trainer_cfg = stage_config(cfg, cfg.pruner.finetune)
    stage = Stage("finetune", run_dir, run_id, optimizer_cfg, scheduler_cfg, trainer_cfg, cfg.seed + 2, False)
    if runtime.device.type == "cpu" and runtime.channels_last:
        # torch 2.13 on CPU (oneDNN): the backward pass of a 1x1 stride-2 convolution in
        # channels_last with fewer than 16 input channels crashes (SIGSEGV) with 2 or more
        # threads, and slimmed ResNets have such shortcuts: the stage runs in the default format.
        runtime = replace(runtime, channels_last=False)
        log("fine-tune stage on CPU in the default memory format (channels_last crashes torch's slimmed convolutions)")
    # the record's device section holds the run's setting; this is what the fine-tune stage used
    pruner.stage_info["finetune"] = {"channels_last": runtime.channels_last}
    result = train_stage(stage, fresh_model(weights, runtime), pruner, data, runtime, augment, log, monitor)
    return Trained(result.model, result.state, result.ctx, result.resumed_after)

