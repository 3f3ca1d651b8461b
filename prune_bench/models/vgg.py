"""VGG for CIFAR (Simonyan & Zisserman 2015 layer configurations) in the three variants the
papers use:
- vgg16: no BN, gRDA's classifier Dropout-Linear(512,512)-ReLU-Dropout-Linear(512,512)-ReLU-Linear
  (Chao et al. 2020, authors' code; docs/methods/grda2020.md).
- vgg16_bn: BN after every conv, one Linear(512, classes).
- vgg19_bn: configuration E with BN, conv bias, the last max-pool replaced by AvgPool(2), one
  Linear(512, classes) (FGGP's CIFAR VGG-19).
- vgg16_bn_mlp: BN after every conv and OTOv2's CIFAR head Linear(512,512)-ReLU-Dropout-
  Linear(512,512)-ReLU-Dropout-Linear (the authors' tutorial model; 15,253,578 parameters).
"""

from __future__ import annotations

import torch.nn as nn

from ..errors import ConfigError

POOL = "M"
LAYERS = {
    11: [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    13: [64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    16: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL],
    19: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL,
         512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL],
}


class VGG(nn.Module):
    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        batch_norm: bool = True,
        classifier: str = "linear",
        last_pool: str = "max",
        dropout: float = 0.5,
    ):
        super().__init__()
        if depth not in LAYERS:
            raise ConfigError(f"model: VGG depth must be one of {sorted(LAYERS)}, got {depth}")
        if classifier not in ("linear", "mlp", "mlp_dropout_after"):
            raise ConfigError(f"model.classifier: '{classifier}' is not allowed; use linear, mlp or mlp_dropout_after")
        if last_pool not in ("max", "avg"):
            raise ConfigError(f"model.last_pool: '{last_pool}' is not allowed; use max or avg")
        layers: list[nn.Module] = []
        in_channels = 3
        spec = LAYERS[depth]
        for index, item in enumerate(spec):
            if item == POOL:
                is_last = index == len(spec) - 1
                layers.append(nn.AvgPool2d(2) if is_last and last_pool == "avg" else nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(in_channels, item, 3, padding=1, bias=True))
            if batch_norm:
                layers.append(nn.BatchNorm2d(item))
            layers.append(nn.ReLU(inplace=True))
            in_channels = item
        self.features = nn.Sequential(*layers)
        if classifier == "linear":
            self.classifier = nn.Linear(512, num_classes)
        elif classifier == "mlp_dropout_after":  # OTOv2's: dropout after each ReLU
            self.classifier = nn.Sequential(
                nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(512, num_classes),
            )
        else:
            self.classifier = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(512, 512),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(512, 512),
                nn.ReLU(inplace=True),
                nn.Linear(512, num_classes),
            )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))
