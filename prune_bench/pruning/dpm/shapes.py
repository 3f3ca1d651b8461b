"""The shapes of a slimmed model: per-layer channel counts (saved in checkpoints and model.pt),
and rebuilding those shapes on a freshly built model (Torch-Pruning's per-layer channel removal)
before its weights load."""

from __future__ import annotations

import torch.nn as nn
import torch_pruning as tp


def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """[in, out] channels of every conv and linear layer, [features] of every BatchNorm."""
    shapes = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            shapes[name] = [module.in_channels, module.out_channels]
        elif isinstance(module, nn.Linear):
            shapes[name] = [module.in_features, module.out_features]
        elif isinstance(module, nn.BatchNorm2d):
            shapes[name] = [module.num_features]
    return shapes


def restore_shapes(model: nn.Module, shapes: dict[str, list[int]]) -> nn.Module:
    """Shrink the layers of a freshly built `model` to `shapes` (trailing channels go; the
    weights are loaded afterwards). Uses Torch-Pruning's per-layer removal functions."""
    current = layer_shapes(model)
    unknown = set(shapes) - set(current)
    if unknown:
        raise ValueError(f"the architecture names layers this model lacks: {sorted(unknown)[:3]}")
    for name, module in model.named_modules():
        if name not in shapes or shapes[name] == current[name]:
            continue
        want, have = shapes[name], current[name]
        if isinstance(module, nn.BatchNorm2d):
            tp.prune_batchnorm_out_channels(module, list(range(want[0], have[0])))
            continue
        prune_in, prune_out = ((tp.prune_conv_in_channels, tp.prune_conv_out_channels)
                               if isinstance(module, nn.Conv2d) else
                               (tp.prune_linear_in_channels, tp.prune_linear_out_channels))
        if want[0] != have[0]:
            prune_in(module, list(range(want[0], have[0])))
        if want[1] != have[1]:
            prune_out(module, list(range(want[1], have[1])))
    return model
