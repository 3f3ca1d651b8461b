"""Channel groups over Torch-Pruning's dependency groups (DepGraph, Fang et al. 2023).

A Torch-Pruning group couples every parameter slice that must go when one channel goes: a
conv's output filter and bias entry, the BN scale and shift after it, the input columns of the
layers that read it, and, through residual additions, all of these along a residual stream.
DPM decays and removes such a channel as one unit. A ChannelGroup holds the slices of one group
(named after its root, the first conv/linear Torch-Pruning lists), so a pruner can take the
per-channel L2 norm of their weights or gradients, rescale chosen channels, remove channels
(Torch-Pruning does the removal) and know which entries of which parameter a removal deletes.
The dependency graph and the removal come from Torch-Pruning; nothing here walks the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch_pruning as tp

from ...errors import ConfigError

# What each Torch-Pruning handler deletes: (parameter, dimension) of its target layer.
SLICED = {
    tp.prune_conv_out_channels: (("weight", 0), ("bias", 0)),
    tp.prune_conv_in_channels: (("weight", 1),),
    tp.prune_batchnorm_out_channels: (("weight", 0), ("bias", 0)),
    tp.prune_linear_out_channels: (("weight", 0), ("bias", 0)),
    tp.prune_linear_in_channels: (("weight", 1),),
}
OUT_HANDLERS = (tp.prune_conv_out_channels, tp.prune_linear_out_channels)
IN_HANDLERS = (tp.prune_conv_in_channels, tp.prune_linear_in_channels)


def classifier(model: nn.Module) -> nn.Module:
    """The output layer (the last linear layer): its outputs are never pruned, as in
    Torch-Pruning's CIFAR benchmark."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("pruner: dpm needs a model that ends in a linear classifier")
    return linears[-1]


def keeping_mode(model: nn.Module, build):
    """Torch-Pruning traces the model in eval mode and leaves it there: build, then restore the mode."""
    was_training = model.training
    try:
        return build()
    finally:
        model.train(was_training)


@dataclass
class Slice:
    """Entries of one parameter that belong to a group: positions `index` along `dim`, and the
    group channel (root index) each position belongs to."""

    module: nn.Module
    param: str  # "weight" | "bias"
    dim: int
    index: torch.Tensor
    root: torch.Tensor
    name: str  # the parameter's name in the model

    def tensor(self) -> torch.Tensor | None:
        return getattr(self.module, self.param)


@dataclass
class LayerChange:
    """How removing a group channel changes a layer's shape (for counting before anything is
    removed): `per_channel[c]` output (kind "out") or input (kind "in") channels of a conv or
    linear layer, or features of a BatchNorm (kind "bn"), go with channel c."""

    module: nn.Module
    kind: str  # "out" | "in" | "bn"
    per_channel: list[int]


def _has_parameters(module) -> bool:
    return isinstance(module, nn.Module) and any(True for _ in module.parameters(recurse=False))


class ChannelGroup:
    """The slices of one Torch-Pruning group. Channels are numbered by the root layer's current
    output channels; the numbering changes when channels are removed (collect the groups again)."""

    def __init__(self, name: str, tp_group, module_names: dict[nn.Module, str]):
        self.name = name
        self.tp_group = tp_group
        root = tp_group[0].dep
        self.root_module, self.root_handler = root.target.module, root.handler
        self.size = len(tp_group[0].idxs)
        self.slices: list[Slice] = []
        self.layer_changes: list[LayerChange] = []
        for item in tp_group:
            module, handler = item.dep.target.module, item.dep.handler
            if handler not in SLICED:
                if _has_parameters(module) or isinstance(module, nn.Parameter):  # a bare parameter too
                    raise ConfigError(f"pruner: layer {module_names.get(module)} ({type(module).__name__}) "
                                      f"is coupled to channels of {name} but dpm supports only conv, linear and BatchNorm layers")
                continue
            if isinstance(module, nn.Conv2d) and module.groups != 1:
                raise ConfigError(f"pruner: grouped convolution {module_names[module]} is not supported by dpm")
            device = module.weight.device
            index = torch.as_tensor(item.idxs, dtype=torch.long, device=device)
            root_index = torch.as_tensor(item.root_idxs, dtype=torch.long, device=device)
            for param, dim in SLICED[handler]:
                if getattr(module, param) is not None:
                    self.slices.append(Slice(module, param, dim, index, root_index,
                                             f"{module_names[module]}.{param}"))
            kind = ("out" if handler in OUT_HANDLERS else "in" if handler in IN_HANDLERS else
                    "bn" if handler == tp.prune_batchnorm_out_channels else None)
            if kind is not None:
                counts = torch.bincount(root_index.cpu(), minlength=self.size).tolist()
                self.layer_changes.append(LayerChange(module, kind, counts))

    @torch.no_grad()
    def sq_norms(self, of: str = "weight") -> torch.Tensor:
        """Per channel: the squared L2 norm of all its slices (of the weights, or of their
        gradients with of="grad"), float32."""
        total = None
        for piece in self.slices:
            tensor = piece.tensor()
            if of == "grad":
                tensor = tensor.grad
            if tensor is None:
                continue
            other_dims = [d for d in range(tensor.dim()) if d != piece.dim]
            per_position = tensor.float().pow(2).sum(other_dims) if other_dims else tensor.float().pow(2)
            if total is None:
                total = torch.zeros(self.size, dtype=torch.float32, device=tensor.device)
            total.index_add_(0, piece.root, per_position.index_select(0, piece.index))
        return total

    @torch.no_grad()
    def scale_(self, factors: torch.Tensor) -> None:
        """Multiply every slice of channel c by factors[c] (1 leaves a channel bitwise unchanged)."""
        for piece in self.slices:
            tensor = piece.tensor()
            full = torch.ones(tensor.shape[piece.dim], dtype=tensor.dtype, device=tensor.device)
            full[piece.index] = factors.to(tensor.dtype)[piece.root]
            shape = [1] * tensor.dim()
            shape[piece.dim] = -1
            tensor.mul_(full.view(shape))

    def kept_entries(self, channels: list[int]) -> dict[str, list[tuple[int, torch.Tensor]]]:
        """For each parameter a removal of `channels` shrinks: (dim, positions kept along dim)."""
        removed_roots = torch.as_tensor(channels, dtype=torch.long)
        kept: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for piece in self.slices:
            length = piece.tensor().shape[piece.dim]
            removed = piece.index[torch.isin(piece.root, removed_roots.to(piece.root.device))]
            keep = torch.ones(length, dtype=torch.bool)
            keep[removed.cpu()] = False
            kept.setdefault(piece.name, []).append((piece.dim, keep.nonzero().flatten()))
        return kept

    def remove(self, channels: list[int]) -> None:
        """Remove `channels` from every coupled layer (Torch-Pruning's group.prune)."""
        graph = self.tp_group._DG
        graph.get_pruning_group(self.root_module, self.root_handler, sorted(channels)).prune()


def collect_groups(graph, model: nn.Module, ignored_layers: list[nn.Module]) -> dict[str, ChannelGroup]:
    """Every prunable channel group of `model` (conv and linear roots; the layers in
    `ignored_layers` keep their outputs), by root layer name, in Torch-Pruning's order."""
    names = {**{module: name for name, module in model.named_modules()},
             **{param: name for name, param in model.named_parameters()}}  # Torch-Pruning's unwrapped parameters
    groups = {}
    for tp_group in graph.get_all_groups(ignored_layers=ignored_layers, root_module_types=[nn.Conv2d, nn.Linear]):
        group = ChannelGroup(names[tp_group[0].dep.target.module], tp_group, names)
        groups[group.name] = group
    return groups


def slice_optimizer_state(state: dict, param_names: list[str], kept: dict[str, list[tuple[int, torch.Tensor]]]) -> dict:
    """An optimizer state_dict re-shaped after channels were removed: every per-entry state
    tensor (momentum, Adam moments) of a shrunk parameter keeps the entries of the surviving
    channels. `param_names` are the parameter names in the optimizer's order (model.parameters())."""
    order = [index for group in state["param_groups"] for index in group["params"]]
    if len(order) != len(param_names):
        raise ValueError(f"the optimizer holds {len(order)} parameters, the model {len(param_names)}")
    new_state = {}
    for index, value in state["state"].items():
        name = param_names[order.index(index)]
        if name in kept:
            value = dict(value)
            for key, entry in value.items():
                if isinstance(entry, torch.Tensor) and entry.dim() > 0:
                    for dim, keep in kept[name]:
                        entry = entry.index_select(dim, keep.to(entry.device))
                    value[key] = entry
        new_state[index] = value
    return {**state, "state": new_state}  # other entries (e.g. StochGradAdam's generator) carry over
