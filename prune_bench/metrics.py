"""Parameter and MAC counts (dense and sparsity-aware), sparsity. The one conv + linear counter of
the project: every MAC figure of a record, and DPM's projection of what a pick would save, come
from `MacCounter`. (The published structured-pruning figures use Torch-Pruning's counter, which
also counts BN, ReLU and pooling; the structural hosts report that one beside this: pruning/dpm/hosts.py.)"""

from __future__ import annotations

import torch
import torch.nn as nn


class MacCounter:
    """MACs of the conv and linear layers of `model` for one image: each weight entry is used once
    per output position, so MACs(layer) = out x in/groups x kernel area x output positions. One
    forward pass (eval mode, no gradients) records each layer's positions; they do not depend on
    channel counts, so `layer_macs` gives a layer's MACs for any channel counts (DPM projects a
    removal with it before anything is removed)."""

    def __init__(self, model: nn.Module, input_size=(1, 3, 32, 32)):
        self.positions: dict[nn.Module, int] = {}
        layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

        def record(module, inputs, output):
            channels = output.shape[1] if isinstance(module, nn.Conv2d) else output.shape[-1]
            self.positions[module] = output.numel() // channels // input_size[0]

        handles = [layer.register_forward_hook(record) for layer in layers]
        parameter = next(model.parameters())
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                model(torch.zeros(input_size, device=parameter.device, dtype=parameter.dtype))
        finally:
            for handle in handles:
                handle.remove()
            model.train(was_training)

    @property
    def layers(self) -> list[nn.Module]:
        return list(self.positions)

    @staticmethod
    def channels(module: nn.Module) -> list[int]:
        """[out, in] of a conv or linear layer."""
        if isinstance(module, nn.Conv2d):
            return [module.out_channels, module.in_channels]
        return [module.out_features, module.in_features]

    def layer_macs(self, module: nn.Module, out_channels: int, in_channels: int) -> int:
        kernel = module.weight[0, 0].numel()  # kh * kw for a conv, 1 for a linear layer
        return out_channels * in_channels * kernel * self.positions[module]

    def total(self, sparse: bool = False) -> int:
        """All layers' MACs at their current shapes; with `sparse`, each layer's scaled to its
        non-zero weights."""
        if sparse:
            return sum(int(torch.count_nonzero(m.weight)) * self.positions[m] for m in self.positions)
        return sum(m.weight.numel() * self.positions[m] for m in self.positions)


def count_params_macs(model: nn.Module, input_size=(1, 3, 32, 32), sparse: bool = False) -> tuple[int, int]:
    """Parameters and multiply-accumulates of one forward pass of one image.

    MACs count convolutions and linear layers (the usual convention; BN, ReLU, pooling and
    additions are not counted). With `sparse=True` only non-zero parameters are counted and
    each conv/linear layer's MACs scale with its number of non-zero weights.
    """
    macs = MacCounter(model, input_size).total(sparse)
    if sparse:
        params = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    else:
        params = sum(p.numel() for p in model.parameters())
    return params, macs


def conv_linear_weights(model: nn.Module) -> dict[str, torch.nn.Parameter]:
    """The weights of every conv and linear layer, by parameter name, in model order."""
    return {
        f"{name}.weight": module.weight
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    }


def zero_fraction(tensors) -> float:
    """Fraction of exactly-zero entries over all `tensors` (one read from the device)."""
    tensors = list(tensors)
    total = sum(t.numel() for t in tensors)
    if not total:
        return 0.0
    nonzero = int(sum(torch.count_nonzero(t).to(tensors[0].device) for t in tensors))
    return (total - nonzero) / total


def sparsity_summary(model: nn.Module, prunable: dict[str, torch.Tensor] | None = None) -> dict:
    """Fraction of exactly-zero entries: over the prunable weights (default: all conv and
    linear weights), over all parameters, and per prunable tensor."""
    prunable = conv_linear_weights(model) if prunable is None else prunable
    with torch.no_grad():
        return {
            "prunable": zero_fraction(prunable.values()),
            "all": zero_fraction(model.parameters()),
            "per_layer": {name: zero_fraction([t]) for name, t in prunable.items()},
        }
