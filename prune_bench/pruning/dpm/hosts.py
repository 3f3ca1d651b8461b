"""Host pruners for DPM: which channel groups exist, how they rank, how the host's paper counts
params and FLOPs, and what the sparse stage regularises. DPM itself (pruner.py) decides what
happens to a picked group. Method notes: docs/methods/dpm2024.md.

- depgraph: DepGraph (Fang et al. 2023) through Torch-Pruning: groups from its dependency graph,
  importance = its group L2 magnitude (GroupMagnitudeImportance, p = 2), sparse learning = its
  GroupNormPruner.regularize (group-norm regularisation applied to the gradients).
- bnscale: the network-slimming / Gate Decorator family (Liu et al. 2017; You et al. 2019): the
  same groups, ranked by the BN scales |gamma| (Torch-Pruning's BNScaleImportance) or by Gate
  Decorator's Taylor score |dL/dgamma * gamma| accumulated since the last selection; sparse
  learning = an L1 penalty on the BN scales (Torch-Pruning's BNScalePruner.regularize).
- otov2: OTOv2 (Chen et al. 2023): zero-invariant groups (zig.py) over the same Torch-Pruning
  groups, trained by its own optimizer, DHSPG (dhspg.py), which picks the groups to zero itself.

Scores are raw (higher = more important); the pruner normalises them per group over the
channels that are not being pruned and ranks them globally. A group a host cannot score is an
error naming it, never left out.

Counting (`count`): DepGraph's and the BN-scale benchmarks' figures (the speed-ups 2.11x, 2.13x
and the FLOPs % of DPM's table) come from Torch-Pruning's counter, `count_ops_and_params`, which
counts conv and linear multiply-accumulates with their bias additions, BN (2 per element), and
ReLU and pooling modules (1 per element). OTOv2 counts FLOPs as conv + linear MACs and params as
the model's parameters (its `compute_flops`, `compute_num_params`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch_pruning as tp

from ...errors import ConfigError
from ...metrics import count_params_macs
from ..base import Pruner, TrainContext
from .dhspg import DHSPG
from .groups import ChannelGroup, classifier, collect_groups, keeping_mode
from .zig import ZIGSet, build_zigs

HOSTS_ALLOWED = ("depgraph", "bnscale", "otov2")
CRITERIA = ("gamma", "taylor")


def example_input(ctx: TrainContext) -> torch.Tensor:
    """One zero image shaped like the data: Torch-Pruning traces the model with it."""
    shape = tuple(ctx.data.train_images.shape[1:]) if ctx.data is not None else (3, 32, 32)
    return torch.zeros(1, *shape, device=ctx.device)


@dataclass(frozen=True)
class Count:
    """A model's params and FLOPs the way one paper counted them."""

    params: int
    ops: int
    counter: str  # which counter


TORCH_PRUNING_COUNTER = "Torch-Pruning's counter"  # count_ops_and_params: conv/linear MACs with bias, BN, ReLU, pooling
CONV_LINEAR_COUNTER = "conv + linear MACs"  # and every parameter: OTOv2's compute_flops and compute_num_params


class Host:
    """What DPM needs from a host pruner.

    groups            name -> the channel group (sq_norms, scale_, layer_changes, kept_entries, remove)
    attach(model, example, optimizer)  build the groups (at the stage's start and after a resume)
    refresh()         collect the groups again after channels were removed
    raw_scores()      per group, one importance per channel
    observe()         after backward: accumulate gradient-based scores
    reset_scores()    after a selection event
    removed(kept)     channels were removed; `kept` lists the surviving entries per parameter
    sparse_regularizer(model, example, reg)  the sparse stage's penalty (an object with regularize(model))
    count(model, example)  params and FLOPs as the host's paper counted them
    selects_itself    True: the host's optimizer picks the groups to zero (optimizer(...) builds it)
    """

    name = "host"
    default_normalizer = "max"
    selects_itself = False
    groups: dict[str, ChannelGroup]

    def attach(self, model: nn.Module, example_input: torch.Tensor, optimizer=None) -> None:
        raise NotImplementedError

    def refresh(self) -> None:
        raise NotImplementedError

    def raw_scores(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def observe(self) -> None:
        pass

    def reset_scores(self) -> None:
        pass

    def removed(self, kept: dict[str, list[tuple[int, torch.Tensor]]]) -> None:
        pass

    def sparse_regularizer(self, model: nn.Module, example_input: torch.Tensor, reg: float):
        raise ConfigError(f"pruner.sparse_learning: the {self.name} host has no sparse stage; set it to false")

    def count(self, model: nn.Module, example_input: torch.Tensor) -> Count:
        ops, params = tp.utils.count_ops_and_params(model, example_input)
        return Count(int(params), int(ops), TORCH_PRUNING_COUNTER)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def checked_scores(scores: dict[str, torch.Tensor | None], host: str) -> dict[str, torch.Tensor]:
    """Every group's scores, or an error naming the first group the host could not score."""
    for name, score in scores.items():
        if score is None:
            raise ConfigError(f"pruner.host: {host} cannot score the channel group of {name} (no layer it ranks "
                              "by); use pruner.host=depgraph for this model")
    return scores


class TorchPruningHost(Host):
    """Groups from Torch-Pruning's dependency graph, the classifier's outputs ignored."""

    def __init__(self, group_reduction: str = "mean"):
        self.group_reduction = group_reduction

    def attach(self, model: nn.Module, example_input: torch.Tensor, optimizer=None) -> None:
        self.model = model
        self.graph = keeping_mode(model, lambda: tp.DependencyGraph().build_dependency(model, example_inputs=example_input))
        self.ignored = [classifier(model)]
        self.refresh()
        self.raw_scores()  # a group that cannot be scored is an error before any step

    def refresh(self) -> None:
        self.groups = collect_groups(self.graph, self.model, self.ignored)


class DepGraphHost(TorchPruningHost):
    name = "depgraph"
    default_normalizer = "max"  # Torch-Pruning's CIFAR benchmark (group_sl): normalizer="max"

    def raw_scores(self) -> dict[str, torch.Tensor]:
        importance = tp.importance.GroupMagnitudeImportance(p=2, group_reduction=self.group_reduction, normalizer=None)
        return checked_scores({name: importance(group.tp_group) for name, group in self.groups.items()}, self.name)

    def sparse_regularizer(self, model, example_input, reg):
        importance = tp.importance.GroupMagnitudeImportance(p=2, normalizer="max")  # the benchmark's group_sl
        return keeping_mode(model, lambda: tp.pruner.GroupNormPruner(
            model, example_input, importance=importance, reg=reg, global_pruning=True,
            ignored_layers=[classifier(model)]))


class BNScaleHost(TorchPruningHost):
    name = "bnscale"
    default_normalizer = "none"  # network slimming and Gate Decorator threshold raw scores globally

    def __init__(self, group_reduction: str = "mean", criterion: str = "gamma"):
        super().__init__(group_reduction)
        self.criterion = criterion
        self.taylor: dict[str, torch.Tensor] = {}

    def attach(self, model, example_input, optimizer=None) -> None:
        if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
            raise ConfigError("pruner.host: bnscale needs BatchNorm layers; this model has none (use depgraph)")
        super().attach(model, example_input, optimizer)

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

    def raw_scores(self) -> dict[str, torch.Tensor]:
        if self.criterion == "gamma":
            importance = tp.importance.BNScaleImportance(group_reduction=self.group_reduction, normalizer=None)
            scores = {name: importance(group.tp_group) for name, group in self.groups.items()}
        else:
            scores = {name: self._taylor_scores(group) for name, group in self.groups.items()}
        return checked_scores(scores, self.name)

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
        return keeping_mode(model, lambda: tp.pruner.BNScalePruner(
            model, example_input, importance=tp.importance.BNScaleImportance(), reg=reg,
            global_pruning=True, ignored_layers=[classifier(model)]))

    def state_dict(self) -> dict:
        return {"taylor": {name: t.detach().cpu().clone() for name, t in self.taylor.items()}}

    def load_state_dict(self, state: dict) -> None:
        device = next(self.model.parameters()).device
        self.taylor = {name: t.to(device) for name, t in state.get("taylor", {}).items()}


class OTOv2Host(Host):
    """OTOv2's zero-invariant groups, trained by DHSPG. The groups are the ZIGs of Torch-Pruning's
    dependency groups (one per channel, the classifier's outputs kept); DHSPG partitions them,
    drives the redundant ones to zero and picks each group to zero when the half-space
    condition holds (with DPM's SP it hands the group over instead: projection="defer"). Its
    scores are DHSPG's partition scores."""

    name = "otov2"
    selects_itself = True

    def optimizer(self, model: nn.Module, example_input: torch.Tensor, optimizer_cfg, section: dict,
                  defer: bool, seed: int) -> DHSPG:
        """DHSPG over the model's ZIGs: the stage optimizer's lr, momentum, Nesterov and weight
        decay, and the pruner's otov2 section (target group sparsity, tolerance, lambda, epsilon,
        when to partition)."""
        zigs = build_zigs(model, example_input)
        return DHSPG(model.parameters(), zigs, lr=float(optimizer_cfg.lr), variant=section["variant"],
                     momentum=float(optimizer_cfg.get("momentum", 0.0)),
                     nesterov=bool(optimizer_cfg.get("nesterov", False)),
                     weight_decay=float(optimizer_cfg.weight_decay),
                     target_group_sparsity=section["target_group_sparsity"],
                     tolerance_group_sparsity=section["tolerance_group_sparsity"],
                     partition_step=section["partition_step"], lmbda=section["lmbda"],
                     lmbda_amplify=section["lmbda_amplify"], hat_lmbda_coeff=section["hat_lmbda_coeff"],
                     epsilon=section["epsilon"], seed=seed, projection="defer" if defer else "zero")

    def attach(self, model: nn.Module, example_input: torch.Tensor, optimizer=None) -> None:
        if not isinstance(optimizer, DHSPG):
            raise ConfigError("pruner.host: otov2 trains with its own optimizer (DHSPG); the stage has another")
        self.model, self.dhspg = model, optimizer
        self.zigs: ZIGSet = optimizer.zigs
        self.groups = self.zigs.groups

    def refresh(self) -> None:
        self.groups = self.zigs.groups

    def raw_scores(self) -> dict[str, torch.Tensor]:
        scores = self.dhspg.partition_scores()
        if scores is None:
            raise ConfigError("pruner.otov2: DHSPG has not partitioned the groups yet; nothing to rank")
        return {name: scores[list(self.zigs.ids(name))] for name in self.groups}

    def selected(self) -> list[tuple[str, int]]:
        """The (group, channel) DHSPG's projection took in the last step."""
        return [self.zigs.locate(zig) for zig in self.dhspg.last_selected()]

    def zero_groups(self) -> list[tuple[str, int]]:
        return [self.zigs.locate(zig) for zig in self.dhspg.zero_groups()]

    def ids(self, picks) -> list[int]:
        return [self.zigs.ids(group)[channel] for group, channel in picks]

    def hold_zero(self, picks) -> None:
        """SP decayed these groups to zero: DHSPG keeps them there."""
        self.dhspg.mark_zero(self.ids(picks))

    def release(self, picks, costs: dict[str, list[int]] | None = None) -> list[tuple[str, int] | None]:
        """SR: these groups go back to the groups DHSPG trains normally; DHSPG names a
        replacement for each (None: none left), which its projection picks in turn. With
        `costs` (per group, per channel) the replacement is the best-scored of the candidates
        whose cost is closest to the released group's."""
        per_zig = None
        if costs is not None:
            per_zig = torch.zeros(len(self.zigs), dtype=torch.float64)
            for name in self.groups:
                per_zig[list(self.zigs.ids(name))] = torch.tensor(costs[name], dtype=torch.float64)
        return [None if zig is None else self.zigs.locate(zig)
                for zig in self.dhspg.release(self.ids(picks), per_zig)]

    def count(self, model: nn.Module, example_input: torch.Tensor) -> Count:
        params, macs = count_params_macs(model, tuple(example_input.shape))
        return Count(params, macs, CONV_LINEAR_COUNTER)


def build_host(name: str, group_reduction: str, criterion: str) -> Host:
    if name == "depgraph":
        return DepGraphHost(group_reduction)
    if name == "bnscale":
        return BNScaleHost(group_reduction, criterion)
    if name == "otov2":
        return OTOv2Host()
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
