"""TinyNet: a small CIFAR network, as an example of a model prune-bench does not ship."""

from __future__ import annotations

import torch
import torch.nn as nn


def block(channels_in: int, channels_out: int) -> nn.Sequential:
    """3x3 conv, BN, ReLU, then half the resolution."""
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class TinyNet(nn.Module):
    """Three conv blocks of width, 2 x width and 4 x width channels (32 -> 4 pixels), global
    average pooling and a linear classifier."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 4 * width))
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images).mean(dim=(2, 3)))
