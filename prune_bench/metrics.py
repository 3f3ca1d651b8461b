"""Accuracy, parameter and MAC counts (dense and sparsity-aware), sparsity."""

from __future__ import annotations

import torch
import torch.nn as nn


def count_params_macs(
    model: nn.Module, input_size=(1, 3, 32, 32), sparse: bool = False
) -> tuple[int, int]:
    """Parameters and multiply-accumulates of one forward pass of one image.

    MACs count convolutions and linear layers (the usual convention; BN, ReLU, pooling and
    additions are not counted). With `sparse=True` only non-zero parameters are counted and
    each conv/linear layer's MACs scale with its number of non-zero weights.
    """
    macs = 0

    def count(module, inputs, output):
        nonlocal macs
        weight = module.weight
        kept = int(torch.count_nonzero(weight)) if sparse else weight.numel()
        # Each weight is used once per output position (batch x spatial for a conv).
        channels = output.shape[1] if isinstance(module, nn.Conv2d) else output.shape[-1]
        macs += kept * (output.numel() // channels)

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [layer.register_forward_hook(count) for layer in layers]
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
    macs //= input_size[0]
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
