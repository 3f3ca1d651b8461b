"""Components that live outside prune-bench, for the tests of `<section>=custom <section>.target=...`
(tests/ is on the path of the test session; subprocesses get it through PYTHONPATH)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from prune_bench.pruning import MaskSet, Pruner, select_prunable

NOT_CALLABLE = 42


class SmallNet(nn.Module):
    """conv-BN-ReLU twice, global pooling, a linear classifier: every built-in pruner's kind of layer."""

    def __init__(self, num_classes: int, width: int = 8, depth: int = 2):
        super().__init__()
        layers, channels = [], 3
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, images):
        return self.head(self.features(images).mean(dim=(2, 3)))


def small_net(num_classes: int, width: int = 8) -> nn.Module:
    """A factory, not a class."""
    return SmallNet(num_classes, width)


class FlatHead(nn.Module):
    """A linear layer sized for 16x16 images: its forward fails on a CIFAR batch."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.head = nn.Linear(3 * 16 * 16, num_classes)

    def forward(self, images):
        return self.head(images.flatten(1))


class FiveLogits(SmallNet):
    """Gives 5 logits whatever num_classes says."""

    def __init__(self, num_classes: int):
        super().__init__(5)


class ConvOnly(nn.Module):
    """No linear layer and no BatchNorm: a conv whose channels are the classes, averaged."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)

    def forward(self, images):
        return self.conv(images).mean(dim=(2, 3))


def warmup_constant(steps_per_epoch: int, epochs: int, warmup_epochs: int = 1):
    """lr factor: linear from 1/n to 1 over the first warmup_epochs, then 1."""
    warmup = max(1, warmup_epochs * steps_per_epoch)
    return lambda step: min(1.0, (step + 1) / warmup)


@dataclass
class HalfSection:
    sparsity: float
    layers: list[str]


class HalfOfEachLayer(Pruner):
    """Prunes the first floor(sparsity x n) weights (in memory order) of every layer of the kinds
    `layers` before the first step, and holds them at zero."""

    schema = HalfSection

    @staticmethod
    def check(section) -> list[str]:
        return [] if list(section.layers) else ["pruner.layers: must name at least one of conv, linear"]

    def __init__(self, section):
        self.sparsity, self.layers = float(section.sparsity), tuple(section.layers)

    def start(self, ctx) -> None:
        super().start(ctx)
        self.prunable = select_prunable(ctx.model, self.layers)
        masks = {}
        for name, weight in self.prunable.items():
            mask = torch.ones(weight.numel(), dtype=torch.bool)
            mask[:math.floor(self.sparsity * weight.numel())] = False
            masks[name] = mask.view(weight.shape)
        self.masks = MaskSet(self.prunable, masks)
        self.masks.apply_()

    def after_step(self, step: int) -> None:
        self.masks.apply_()

    def report(self) -> dict:
        return {"target": self.sparsity, "achieved": self.masks.sparsity()}

    def state_dict(self) -> dict:
        return {"masks": self.masks.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.masks.load_state_dict(state["masks"])


class NotAPruner:
    def __init__(self, section):
        pass


class ScaledNet(SmallNet):
    """A channel scale held as a bare parameter (no module), multiplied after the features."""

    def __init__(self, num_classes: int):
        super().__init__(num_classes)
        self.scale = nn.Parameter(torch.ones(1, 8, 1, 1))

    def forward(self, images):
        return self.head((self.features(images) * self.scale).mean(dim=(2, 3)))


class RefusesWide(SmallNet):
    """Raises in its constructor for a width above 16."""

    def __init__(self, num_classes: int, width: int = 8):
        if width > 16:
            raise ValueError(f"width {width} is too wide")
        super().__init__(num_classes, width)
