"""The pruner contract (DESIGN.md): hooks the training loop calls, each optional."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn


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


class Pruner:
    """No-op hooks. Subclasses override what they need.

    plan(total_steps)     before anything is written: check the run's length suits the config
                          (raise ConfigError); the runner calls it right after building the pruner
    start(ctx)            before the first step (and again after a resume, before loading state)
    after_backward(step)  gradients are in .grad (FGGP and DPM read them here)
    after_step(step)      after optimizer.step(): keep masked weights at zero, prune events;
                          may return a new nn.Module (structural pruning)
    finish(evaluate)      after training: one-shot levels, fine-tuning; returns record metrics
    report()              target and achieved sparsity etc. for the record
    carry_optimizer_state(state)  after after_step handed back a model: the old optimizer's
                          state_dict re-shaped for it (entries of removed channels dropped)
    """

    name = "none"
    # False for pruners that only act after training (one-shot): the runner then trains the
    # dense model once per training config and shares it between their runs.
    acts_during_training = True
    finetune_epochs = 0  # > 0: after finish(), train this many epochs more, hooks still active
    # True for pruners whose run has stages (DPM: pretrain -> sparse stage -> fine-tune with
    # the pruning phase); stages.py runs them.
    staged = False

    def plan(self, total_steps: int) -> None:
        pass

    def start(self, ctx: TrainContext) -> None:
        self.ctx = ctx

    def after_backward(self, step: int) -> None:
        pass

    def after_step(self, step: int) -> nn.Module | None:
        return None

    def carry_optimizer_state(self, state: dict) -> dict:
        return state

    def finish(self, evaluate: Callable[[nn.Module], dict]) -> dict:
        return {}

    def report(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def architecture(self) -> dict | None:
        """For structural pruners: what a resume needs to rebuild the pruned shapes
        (e.g. per-layer channel counts), saved in every checkpoint."""
        return None

    def restore_architecture(self, model: nn.Module, architecture: dict) -> nn.Module:
        """Rebuild `model` with the shapes `architecture()` described, before weights load."""
        raise NotImplementedError(f"pruner '{self.name}' does not change shapes")


@dataclass
class NoPrunerSection:
    """conf/pruner/none.yaml: only its name."""

    name: str


class NoPruner(Pruner):
    name = "none"
