"""Wide ResNet (Zagoruyko & Komodakis 2016) as in gRDA's CIFAR code: pre-activation wide
basic blocks, convs with bias, dropout between the two convs (0 by default).
WRN-28-10 with 10 classes has 36,489,290 parameters."""

from __future__ import annotations

import math

import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError


class WideBasic(nn.Module):
    def __init__(self, in_channels: int, width: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=True)
        if stride == 1 and in_channels == width:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Conv2d(in_channels, width, 1, stride=stride, bias=True)

    def forward(self, x):
        out = self.dropout(self.conv1(F.relu(self.bn1(x))))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int = 28, widen: int = 10, num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ConfigError(f"model: a Wide ResNet needs depth 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=True)
        stages = []
        in_channels = 16
        for index, width in enumerate(widths):
            blocks = []
            for block_index in range(n):
                stride = 2 if index > 0 and block_index == 0 else 1
                blocks.append(WideBasic(in_channels, width, stride, dropout))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(in_channels)
        self.fc = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight, gain=math.sqrt(2))
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.stages(self.conv1(x))
        x = F.relu(self.bn(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
