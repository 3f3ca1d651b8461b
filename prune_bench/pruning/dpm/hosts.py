"""Host pruners for DPM (PAPERS.md section 4): which channel groups exist, how they rank, and
the sparse stage's regulariser. DPM itself only decides what happens to a picked group.

- depgraph: DepGraph (Fang et al. 2023) through Torch-Pruning: groups from its dependency graph,
  importance = its group L2 magnitude (GroupMagnitudeImportance, p = 2), sparse learning = its
  GroupNormPruner.regularize (group-norm regularisation applied to the gradients).
- bnscale: the network-slimming / Gate Decorator family (Liu et al. 2017; You et al. 2019): the
  same groups, ranked by the BN scales |gamma| (Torch-Pruning's BNScaleImportance) or by Gate
  Decorator's Taylor score |dL/dgamma * gamma| accumulated since the last selection; sparse
  learning = an L1 penalty on the BN scales (Torch-Pruning's BNScalePruner.regularize).

A host is the interface below; OTOv2's zero-invariant groups would be a third implementation.
Scores are raw (higher = more important); the pruner normalises them per group over the
channels that are not being pruned and ranks them globally.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch_pruning as tp

from ...errors import ConfigError
from ..base import Pruner, TrainContext
from .groups import ChannelGroup, collect_groups

HOSTS_ALLOWED = ("depgraph", "bnscale")
CRITERIA = ("gamma", "taylor")


def classifier(model: nn.Module) -> nn.Module:
    """The output layer (the last linear layer): its outputs are never pruned, as in
    Torch-Pruning's CIFAR benchmark."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("pruner: dpm needs a model that ends in a linear classifier")
    return linears[-1]


def example_input(ctx: TrainContext) -> torch.Tensor:
    """One zero image shaped like the data: Torch-Pruning traces the model with it."""
    shape = tuple(ctx.data.train_images.shape[1:]) if ctx.data is not None else (3, 32, 32)
    return torch.zeros(1, *shape, device=ctx.device)


def _keeping_mode(model: nn.Module, build):
    """Torch-Pruning traces the model in eval mode and leaves it there; restore the mode."""
    was_training = model.training
    try:
        return build()
    finally:
        model.train(was_training)


class Host:
    """What DPM needs from a host pruner."""

    name = "host"
    default_normalizer = "max"
    groups: dict[str, ChannelGroup]

    def attach(self, model: nn.Module, example_input: torch.Tensor) -> None:
        """Build the groups of `model` (at the start, and after a resume)."""
        raise NotImplementedError

    def refresh(self) -> None:
        """Collect the groups again after channels were removed."""
        raise NotImplementedError

    def raw_scores(self) -> dict[str, torch.Tensor | None]:
        """Per group, one importance per channel (None: the group cannot be ranked)."""
        raise NotImplementedError

    def observe(self) -> None:
        """After backward: accumulate gradient-based scores (no-op for weight-based ones)."""

    def reset_scores(self) -> None:
        """After a selection event: start accumulating afresh."""

    def removed(self, kept: dict[str, list[tuple[int, torch.Tensor]]]) -> None:
        """Channels were removed; `kept` lists the surviving entries per parameter."""

    def sparse_regularizer(self, model: nn.Module, example_input: torch.Tensor, reg: float):
        """An object whose regularize(model) adds the sparse stage's penalty to the gradients."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class TorchPruningHost(Host):
    """Groups from Torch-Pruning's dependency graph, the classifier's outputs ignored."""

    def __init__(self, group_reduction: str = "mean"):
        self.group_reduction = group_reduction

    def attach(self, model: nn.Module, example_input: torch.Tensor) -> None:
        self.model = model
        self.graph = _keeping_mode(model, lambda: tp.DependencyGraph().build_dependency(model, example_inputs=example_input))
        self.ignored = [classifier(model)]
        self.refresh()

    def refresh(self) -> None:
        self.groups = collect_groups(self.graph, self.model, self.ignored)


class DepGraphHost(TorchPruningHost):
    name = "depgraph"
    default_normalizer = "max"  # Torch-Pruning's CIFAR benchmark (group_sl): normalizer="max"

    def raw_scores(self) -> dict[str, torch.Tensor | None]:
        importance = tp.importance.GroupMagnitudeImportance(p=2, group_reduction=self.group_reduction, normalizer=None)
        return {name: importance(group.tp_group) for name, group in self.groups.items()}

    def sparse_regularizer(self, model, example_input, reg):
        importance = tp.importance.GroupMagnitudeImportance(p=2, normalizer="max")  # the benchmark's group_sl
        return _keeping_mode(model, lambda: tp.pruner.GroupNormPruner(
            model, example_input, importance=importance, reg=reg, global_pruning=True,
            ignored_layers=[classifier(model)]))


class BNScaleHost(TorchPruningHost):
    name = "bnscale"
    default_normalizer = "none"  # network slimming and Gate Decorator threshold raw scores globally

    def __init__(self, group_reduction: str = "mean", criterion: str = "gamma"):
        super().__init__(group_reduction)
        self.criterion = criterion
        self.taylor: dict[str, torch.Tensor] = {}

    def attach(self, model, example_input) -> None:
        if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
            raise ConfigError("pruner.host: bnscale needs BatchNorm layers; this model has none (use depgraph)")
        super().attach(model, example_input)

    def _bn_weights(self) -> dict[str, nn.Parameter]:
        return {f"{name}.weight": m.weight for name, m in self.model.named_modules()
                if isinstance(m, nn.BatchNorm2d) and m.affine}

    @torch.no_grad()
    def observe(self) -> None:
        if self.criterion != "taylor":
            return
        # Gate Decorator (You et al. 2019): the Taylor score of a gate is |dL/dphi * phi|,
        # accumulated over the batches; the gate here is the BN scale.
        for name, weight in self._bn_weights().items():
            if weight.grad is None:
                continue
            score = (weight.grad * weight).abs().float()
            self.taylor[name] = self.taylor[name] + score if name in self.taylor else score

    def reset_scores(self) -> None:
        self.taylor = {}

    def removed(self, kept) -> None:
        for name, entries in kept.items():
            if name in self.taylor:
                for dim, keep in entries:
                    self.taylor[name] = self.taylor[name].index_select(dim, keep.to(self.taylor[name].device))

    def raw_scores(self) -> dict[str, torch.Tensor | None]:
        if self.criterion == "gamma":
            importance = tp.importance.BNScaleImportance(group_reduction=self.group_reduction, normalizer=None)
            return {name: importance(group.tp_group) for name, group in self.groups.items()}
        return {name: self._taylor_scores(group) for name, group in self.groups.items()}

    def _taylor_scores(self, group: ChannelGroup) -> torch.Tensor | None:
        """The group's BN Taylor scores reduced over its BN layers (group_reduction)."""
        per_layer = []
        for piece in group.slices:
            if isinstance(piece.module, nn.BatchNorm2d) and piece.param == "weight":
                accumulated = self.taylor.get(piece.name)
                if accumulated is None:
                    accumulated = torch.zeros_like(piece.module.weight, dtype=torch.float32)
                layer = torch.zeros(group.size, dtype=torch.float32, device=accumulated.device)
                per_layer.append(layer.index_add_(0, piece.root, accumulated.index_select(0, piece.index)))
        if not per_layer:
            return None
        stacked = torch.stack(per_layer)
        if self.group_reduction == "sum":
            return stacked.sum(0)
        if self.group_reduction == "max":
            return stacked.max(0).values
        return stacked.mean(0)

    def sparse_regularizer(self, model, example_input, reg):
        return _keeping_mode(model, lambda: tp.pruner.BNScalePruner(
            model, example_input, importance=tp.importance.BNScaleImportance(), reg=reg,
            global_pruning=True, ignored_layers=[classifier(model)]))

    def state_dict(self) -> dict:
        return {"taylor": {name: t.detach().cpu().clone() for name, t in self.taylor.items()}}

    def load_state_dict(self, state: dict) -> None:
        device = next(self.model.parameters()).device
        self.taylor = {name: t.to(device) for name, t in state.get("taylor", {}).items()}


def build_host(name: str, group_reduction: str, criterion: str) -> Host:
    if name == "depgraph":
        return DepGraphHost(group_reduction)
    if name == "bnscale":
        return BNScaleHost(group_reduction, criterion)
    raise ConfigError(f"pruner.host: '{name}' is not allowed; use one of {', '.join(HOSTS_ALLOWED)}")


class SparseLearning(Pruner):
    """The hooks of the sparse stage: after backward, the host's penalty is added to the
    gradients (Torch-Pruning's regularize, as in its benchmark's training loop)."""

    name = "dpm-sparse"

    def __init__(self, host: Host, reg: float):
        self.host, self.reg = host, reg

    def start(self, ctx: TrainContext) -> None:
        self.ctx = ctx
        self.regularizer = self.host.sparse_regularizer(ctx.model, example_input(ctx), self.reg)

    def after_backward(self, step: int) -> None:
        self.regularizer.regularize(self.ctx.model)
