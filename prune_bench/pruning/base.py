"""The pruner contract: which stages a run of this pruner has, and the hooks the training loop
calls in them (each optional)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..models import ModelSpec
from ..targets import label


@dataclass
class TrainContext:
    """What a pruner may look at. The loop keeps `model` and `optimizer` current (a structural
    pruner may replace the model; the loop then rebuilds the optimizer and scheduler)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: object  # prune_bench.data.DeviceData
    steps_per_epoch: int
    total_steps: int
    seed: int
    device: torch.device
    model_spec: ModelSpec | None = None  # what builds the unpruned model (structural pruners)


@dataclass
class StageSpec:
    """One stage of a run, as a pruner declares it. The runner (engine/stages.py) gives it a folder
    and an identity: the last stage trains in the run's own folder under the run's identity; every
    stage before it is shared by the runs whose stages begin alike, in runs/.trained/<shared_as>-<id>,
    where the first stage's id hashes the run's config less its pruner section and a later one's
    the stage before it (its name and id) plus `key`."""

    name: str  # pretrain | sparse | prune | finetune | train: what logs and status call it
    kind: str  # train (dense) | sparse (a regulariser on the gradients) | prune (the pruner acts)
    optimizer: DictConfig
    scheduler: DictConfig
    trainer: DictConfig  # the run's trainer section with this stage's epochs (and eval_every)
    seed: int  # data order and the global RNG at the stage's start
    hooks: Callable[[], Pruner]  # the hooks the loop calls in this stage
    shared_as: str | None = None  # the folder label of a shared stage; None for the last stage
    key: dict | None = None  # what a shared stage after the first adds to its identity


class Pruner:
    """No-op hooks. Subclasses override what they need.

    stages(cfg)           the run's stages (default: one stage, the run's training, with these hooks)
    plan(steps_per_epoch, epochs)  before anything is written: check that the stage this pruner
                          acts in suits the config (raise ConfigError)
    start(ctx)            before the stage's first step (and again after a resume, before loading state)
    begin(evaluate)       once, when the stage starts afresh (not on a resume): one-shot pruning
                          acts here; returns record metrics (kept in the pruner's state)
    after_backward(step)  gradients are in .grad (FGGP and DPM read them here)
    after_step(step)      after optimizer.step(): keep masked weights at zero, prune events;
                          may return a new nn.Module (structural pruning)
    carry_optimizer_state(state)  after after_step handed back a model: the old optimizer's
                          state_dict re-shaped for it (entries of removed channels dropped), or
                          None to start the new optimizer afresh
    optimizer(model, ctx, optimizer_cfg)  the stage's optimizer when the method is one (DHSPG)
    finish(evaluate)      after the stage's last epoch; returns record metrics
    report()              target and achieved sparsity etc. for the record
    """

    name = "none"
    stage_kind = "prune"  # the kind of the run's own stage when the pruner declares no others
    changes_shapes = False  # True: after_step may hand back a model with other shapes

    def stages(self, cfg: DictConfig) -> list[StageSpec]:
        return [StageSpec("train", self.stage_kind, cfg.optimizer, cfg.scheduler, cfg.trainer, cfg.seed,
                          lambda: self)]

    def plan(self, steps_per_epoch: int, epochs: int) -> None:
        pass

    def start(self, ctx: TrainContext) -> None:
        self.ctx = ctx

    def begin(self, evaluate: Callable[[nn.Module], dict]) -> dict:
        return {}

    def after_backward(self, step: int) -> None:
        pass

    def after_step(self, step: int) -> nn.Module | None:
        return None

    def carry_optimizer_state(self, state: dict) -> dict | None:
        return state

    def optimizer(self, model: nn.Module, ctx: TrainContext, optimizer_cfg) -> torch.optim.Optimizer | None:
        """A pruner whose method is an optimizer (OTOv2's DHSPG) builds it here; None: the
        stage's optimizer from the registry."""
        return None

    def finish(self, evaluate: Callable[[nn.Module], dict]) -> dict:
        return {}

    def report(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass



def pretrain_stage(cfg: DictConfig) -> StageSpec:
    """The dense training a pruner that acts on a trained model starts from: the run's optimizer,
    scheduler, trainer and seed, shared by every run with that training (train once, prune many)."""
    return StageSpec("pretrain", "train", cfg.optimizer, cfg.scheduler, cfg.trainer, cfg.seed, NoPruner,
                     shared_as=f"{label(cfg.model)}_{label(cfg.optimizer)}")


def stage_sections(cfg: DictConfig, name: str, **trainer) -> tuple[DictConfig, DictConfig, DictConfig]:
    """Optimizer, scheduler and trainer of a stage from the section `pruner.<name>`, which holds
    lr, weight_decay, scheduler and epochs: the run's optimizer with the section's lr and weight
    decay, its scheduler, the run's trainer with its epochs (and any `trainer` keys given). An
    optimizer that takes no weight decay (a custom one with optimizer.weight_decay null) gets
    none here either, and a section that asks for one is a ConfigError naming its key."""
    section = cfg.pruner[name]
    decay = {"weight_decay": section.weight_decay}
    if cfg.optimizer.get("weight_decay", 0.0) is None:
        if section.weight_decay:
            raise ConfigError(f"pruner.{name}.weight_decay: {section.weight_decay}, but optimizer.weight_decay is "
                              f"null ({label(cfg.optimizer)} is given none); set pruner.{name}.weight_decay=0")
        decay = {}
    optimizer = OmegaConf.merge(cfg.optimizer, {"lr": section.lr, **decay})
    return optimizer, section.scheduler, OmegaConf.merge(cfg.trainer, {"epochs": section.epochs, **trainer})


@dataclass
class NoPrunerSection:
    """conf/pruner/none.yaml: only its name."""

    name: str


class NoPruner(Pruner):
    name = "none"
    stage_kind = "train"
