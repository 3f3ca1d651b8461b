"""The shapes of a slimmed model: per-layer channel counts (saved in checkpoints and model.pt),
rebuilding those shapes on a freshly built model (Torch-Pruning's per-layer channel removal),
loading a finished run's model.pt in one call, and MAC counts for any channel counts."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch_pruning as tp
from omegaconf import OmegaConf

from ..data import OFFICIAL
from ..models import build_model

SHAPED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


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


def model_pt_path(path) -> Path:
    """A run directory's model.pt, or `path` itself when it names the file."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def model_spec(path, payload: dict | None = None) -> dict:
    """{"name", "num_classes", "options"} of a finished run's model: from model.pt's architecture
    (structural pruners save it there), else from the run's config.yaml. `path`: the run
    directory or its model.pt; `payload`: model.pt already loaded."""
    path = model_pt_path(path)
    if payload is None:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    architecture = payload.get("architecture")
    if architecture:
        return architecture["model"]
    config = OmegaConf.to_container(OmegaConf.load(path.parent / "config.yaml"), resolve=True)
    options = {k: v for k, v in config["model"].items() if k != "name"}
    classes = OFFICIAL[config["data"]["name"]]["num_classes"]
    return {"name": config["model"]["name"], "num_classes": classes, "options": options}


def load_pruned_model(path, map_location="cpu") -> nn.Module:
    """The model of a finished run, in its slimmed shapes, weights loaded, in eval mode.
    `path` is a run directory or its model.pt. Structural pruners save the model spec and the
    per-layer shapes in model.pt; for other runs the spec comes from the run's config.yaml."""
    path = model_pt_path(path)
    payload = torch.load(path, map_location=map_location, weights_only=True)
    spec = model_spec(path, payload)
    model = build_model(spec["name"], spec["num_classes"], **spec["options"])
    architecture = payload.get("architecture")
    if architecture:
        restore_shapes(model, architecture["layers"])
    model.load_state_dict(payload["model"])
    return model.to(map_location).eval()


class MacCounter:
    """MACs of the conv and linear layers for any channel counts, exactly as
    prune_bench.metrics.count_params_macs counts them (weight entries x output positions):
    MACs(layer) = out x in x (kernel area x output positions). The per-layer factor in
    parentheses does not depend on channel counts; one forward pass records it."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor):
        self.unit: dict[nn.Module, int] = {}

        def record(module, inputs, output):
            channels = output.shape[1] if isinstance(module, nn.Conv2d) else output.shape[-1]
            positions = output.numel() // channels // example_input.shape[0]
            kernel = module.weight[0, 0].numel()  # kh * kw for a conv, 1 for a linear layer
            self.unit[module] = kernel * positions

        layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        handles = [layer.register_forward_hook(record) for layer in layers]
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                model(example_input)
        finally:
            for handle in handles:
                handle.remove()
            model.train(was_training)

    @staticmethod
    def channels(module: nn.Module) -> list[int]:
        """[out, in] of a conv or linear layer."""
        if isinstance(module, nn.Conv2d):
            return [module.out_channels, module.in_channels]
        return [module.out_features, module.in_features]

    def layer_macs(self, module: nn.Module, out_channels: int, in_channels: int) -> int:
        return out_channels * in_channels * self.unit[module]

    def total(self) -> int:
        return sum(self.layer_macs(m, *self.channels(m)) for m in self.unit)
