"""Model registry: `build_model(name, num_classes)`; one builder per family, depth as a parameter,
and `custom`: any nn.Module class or factory named by import path (`model.target`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch.nn as nn

from ..errors import ConfigError, first_line
from ..targets import CUSTOM, check_arguments, resolve_callable
from .cifar_resnet import cifar_resnet
from .vgg import VGG
from .wrn import WideResNet


def custom_model(num_classes: int, target: str | None = None, kwargs: dict | None = None) -> nn.Module:
    """`model=custom`: the class or factory `target` names, called as target(num_classes=...,
    **kwargs); it must return an nn.Module."""
    kwargs = dict(kwargs or {})
    build = resolve_callable("model.target", target)
    check_arguments("model", build, target, kwargs, ("num_classes",))
    try:
        model = build(num_classes=num_classes, **kwargs)
    except Exception as error:
        arguments = ", ".join(f"{key}={value!r}" for key, value in {"num_classes": num_classes, **kwargs}.items())
        raise ConfigError(f"model.target: {target}({arguments}) failed ({first_line(error)})") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.target: {target} returned a {type(model).__name__}, not an nn.Module")
    return model


MODELS = {
    **{f"resnet{depth}": partial(cifar_resnet, depth) for depth in (20, 32, 44, 56, 110, 152)},
    "resnet50": partial(cifar_resnet, 50, block="bottleneck", shortcut="B"),
    "vgg16": partial(VGG, 16, batch_norm=False, classifier="mlp"),
    "vgg16_bn": partial(VGG, 16, batch_norm=True),
    "vgg16_bn_mlp": partial(VGG, 16, batch_norm=True, classifier="mlp_dropout_after"),
    "vgg19_bn": partial(VGG, 19, batch_norm=True, last_pool="avg"),
    "wrn28_10": partial(WideResNet, 28, 10),
    CUSTOM: custom_model,
}


# Config sections (keys and types; conf/model/<name>.yaml holds the values): the options a
# family's builder takes beside its name.
@dataclass
class PlainSection:
    name: str


@dataclass
class CifarResNetSection:
    name: str
    shortcut: str  # A | B


@dataclass
class CifarResNet152Section(CifarResNetSection):
    block: str  # basic | bottleneck


@dataclass
class DropoutSection:
    name: str
    dropout: float


@dataclass
class CustomSection:
    name: str
    target: str | None  # module:Name or module.Name
    kwargs: dict  # passed to the target beside num_classes


MODEL_SCHEMAS = {
    **{f"resnet{depth}": CifarResNetSection for depth in (20, 32, 44, 56, 110)},
    "resnet152": CifarResNet152Section,
    "resnet50": PlainSection,
    "vgg16": DropoutSection,
    "vgg16_bn": PlainSection,
    "vgg16_bn_mlp": DropoutSection,
    "vgg19_bn": PlainSection,
    "wrn28_10": DropoutSection,
    CUSTOM: CustomSection,
}


def build_model(name: str, num_classes: int = 10, **options) -> nn.Module:
    """Build a registered model. `options` are the family's keyword arguments
    (e.g. `shortcut="B"` or `block="bottleneck"` for the CIFAR ResNets)."""
    if name not in MODELS:
        raise ConfigError(f"model.name: unknown model '{name}'; allowed: {', '.join(MODELS)}")
    try:
        return MODELS[name](num_classes=num_classes, **options)
    except TypeError as error:
        raise ConfigError(f"model: bad option for '{name}': {error}") from None


@dataclass(frozen=True)
class ModelSpec:
    """What builds a model: its registry name, classes and the family's options."""

    name: str
    num_classes: int
    options: dict

    @classmethod
    def from_config(cls, model_cfg, num_classes: int) -> ModelSpec:
        """From a config's model section (`name` plus the family's options)."""
        options = {key: value for key, value in dict(model_cfg).items() if key != "name"}
        return cls(str(model_cfg["name"]), num_classes, options)

    def build(self) -> nn.Module:
        return build_model(self.name, self.num_classes, **self.options)

    def as_dict(self) -> dict:
        return {"name": self.name, "num_classes": self.num_classes, "options": dict(self.options)}


__all__ = ["MODELS", "MODEL_SCHEMAS", "ModelSpec", "build_model"]
