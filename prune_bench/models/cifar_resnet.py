"""CIFAR ResNets.

Two families, one builder each:
- He et al. 2016, Sec. 4.2: 6n+2 layers of basic blocks, widths 16/32/64, 3x3 stem
  (resnet20/32/44/56/110/152). Shortcut "A" (the paper's CIFAR choice: stride-2 subsampling
  plus zero-padded channels, parameter-free) or "B" (1x1 conv + BN projection).
- Bottleneck ResNets with a CIFAR stem (3x3 conv, no max-pool): the ImageNet stage layouts
  (resnet50 = [3, 4, 6, 3], widths 64..512, expansion 4), or He et al.'s 9n+2 CIFAR bottleneck
  (widths 16/32/64) for depths that fit it.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError

# ImageNet-style bottleneck stage layouts (He et al. 2016, Table 1).
BOTTLENECK_STAGES = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by the stride, then zero-pad the new channels (no parameters)."""

    def __init__(self, extra_channels: int, stride: int):
        super().__init__()
        self.pad_before = extra_channels // 2
        self.pad_after = extra_channels - self.pad_before
        self.stride = stride

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        # The inner ReLU is a module, the one after the addition a function: Torch-Pruning's
        # CIFAR ResNet (the DepGraph and DPM baseline) is built so, and its op counter, which
        # gives the papers' FLOPs, counts ReLU modules only (ResNet-56: 127.12M).
        self.relu = nn.ReLU()
        if stride == 1 and in_channels == width:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ZeroPadShortcut(width - in_channels, stride)
        else:
            self.shortcut = projection(in_channels, width, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: str):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()  # as in BasicBlock
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:  # channel counts change by 4x inside a stage: always a projection
            self.shortcut = projection(in_channels, out_channels, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block, stage_blocks, stage_widths, stem_width, num_classes, shortcut="A"):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU()
        stages = []
        in_channels = stem_width
        for index, (n_blocks, width) in enumerate(zip(stage_blocks, stage_widths)):
            blocks = []
            for block_index in range(n_blocks):
                stride = 2 if index > 0 and block_index == 0 else 1
                blocks.append(block(in_channels, width, stride, shortcut))
                in_channels = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.stages(x)
        return self.fc(self.pool(x).flatten(1))


def cifar_resnet(depth: int, num_classes: int = 10, block: str = "basic", shortcut: str = "A"):
    """One builder for every CIFAR ResNet; `depth` picks the stage layout."""
    if shortcut not in ("A", "B"):
        raise ConfigError(f"model.shortcut: '{shortcut}' is not allowed; use A or B")
    if block == "basic":
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ConfigError(f"model: a basic-block CIFAR ResNet needs depth 6n+2, got {depth}")
        n = (depth - 2) // 6
        return ResNet(BasicBlock, [n, n, n], [16, 32, 64], 16, num_classes, shortcut)
    if block == "bottleneck":
        if depth in BOTTLENECK_STAGES:
            return ResNet(
                Bottleneck, BOTTLENECK_STAGES[depth], [64, 128, 256, 512], 64, num_classes, shortcut
            )
        if (depth - 2) % 9 == 0 and depth >= 11:
            n = (depth - 2) // 9
            return ResNet(Bottleneck, [n, n, n], [16, 32, 64], 16, num_classes, shortcut)
        raise ConfigError(
            f"model: a bottleneck ResNet needs depth in {sorted(BOTTLENECK_STAGES)} or 9n+2, got {depth}"
        )
    raise ConfigError(f"model.block: '{block}' is not allowed; use basic or bottleneck")
