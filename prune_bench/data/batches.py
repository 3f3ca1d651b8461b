"""The data on the training device and its batches: both splits live there as uint8 NCHW; an
epoch is a seeded permutation, random crop with 4-pixel zero padding and horizontal flip as one
batched gather, and normalisation. No DataLoader workers, no PIL in the loop."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .sources import OFFICIAL, load_arrays


@dataclass
class DeviceData:
    """Both splits on the training device as uint8 NCHW, plus normalisation constants."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: torch.Tensor  # [1, 3, 1, 1], in 0..255 units
    std: torch.Tensor
    num_classes: int
    classes: list[str]
    info: dict = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return self.train_labels.numel()


def per_class_subset(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """Indices of the first `per_class` examples of each class (deterministic, balanced)."""
    if not per_class:
        return np.arange(len(labels))
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    return np.sort(keep)


FULL_SPLITS = {"cifar10": (50000, 10000), "cifar100": (50000, 10000)}


def data_label(info: dict) -> str:
    """A short name for tables: dataset, format, and each split's size when it is a subset
    (`-n5000` training images, `-test1000` test images). Synthetic data has no full split."""
    label = f"{info['dataset']}-{info['format']}"
    if info["format"] == "synthetic":
        return label
    full_train, full_test = FULL_SPLITS.get(info["dataset"], (None, None))
    if info.get("n_train") and info["n_train"] != full_train:
        label += f"-n{info['n_train']}"
    if info.get("n_test") and info["n_test"] != full_test:
        label += f"-test{info['n_test']}"
    return label


def load_data(cfg, device: torch.device) -> DeviceData:
    """Decode once (sources.py), subset, and move both splits to `device` as uint8 NCHW.
    `info` describes the data, its table label included."""
    arrays, info = load_arrays(cfg)
    mean, std = arrays.channel_stats()  # of the full training split, before any subset
    train_keep = per_class_subset(arrays.train_labels, cfg.get("train_per_class"))
    test_keep = per_class_subset(arrays.test_labels, cfg.get("test_per_class"))

    def to_device(images, labels, keep):
        x = torch.from_numpy(np.ascontiguousarray(images[keep].transpose(0, 3, 1, 2))).to(device)
        return x, torch.from_numpy(labels[keep]).to(device)

    train_x, train_y = to_device(arrays.train_images, arrays.train_labels, train_keep)
    test_x, test_y = to_device(arrays.test_images, arrays.test_labels, test_keep)
    info.update(n_train=len(train_keep), n_test=len(test_keep))
    info["label"] = data_label(info)
    return DeviceData(
        train_x, train_y, test_x, test_y,
        mean=torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1),
        std=torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1),
        num_classes=OFFICIAL[cfg.name]["num_classes"], classes=arrays.classes, info=info,
    )


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """A generator for one epoch's order and augmentation: resuming at an epoch needs no RNG state."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + epoch)
    return generator


def crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding by `pad`, and a random horizontal flip, as one gather."""
    batch, channels, height, width = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (batch, 1), generator=generator, device=device)
    dx = torch.randint(0, 2 * pad + 1, (batch, 1), generator=generator, device=device)
    flip = torch.rand(batch, 1, generator=generator, device=device) < 0.5
    rows = dy + torch.arange(height, device=device)
    cols = dx + torch.where(flip, torch.arange(width - 1, -1, -1, device=device), torch.arange(width, device=device))
    return padded[
        torch.arange(batch, device=device)[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def normalise(images: torch.Tensor, data: DeviceData, channels_last: bool = False) -> torch.Tensor:
    x = (images.float() - data.mean) / data.std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@dataclass(frozen=True)
class Augment:
    """How training batches are augmented: random crop (zero pad 4) + flip, and mixup."""

    crop_flip: bool = True
    mixup_alpha: float = 0.0  # > 0: mix each batch with a permutation of itself, weight ~ Beta(alpha, alpha)

    @classmethod
    def from_config(cls, data_cfg) -> Augment:
        return cls(bool(data_cfg.augment), float(data_cfg.get("mixup_alpha", 0.0)))


def train_batches(data: DeviceData, batch_size: int, seed: int, epoch: int, augment: Augment = Augment(),
                  channels_last: bool = False):
    """Yields (images, targets) for one epoch: seeded order, augmentation on the device.
    Targets are the labels, or with mixup the mixed one-hot labels (the loss takes either)."""
    device = data.train_images.device
    generator = epoch_generator(seed, epoch, device)
    # mixup's weights: numpy's Beta draw, seeded per epoch like the order (torch has no seeded Beta)
    mixing = np.random.default_rng(seed * 1_000_003 + epoch) if augment.mixup_alpha > 0 else None
    order = torch.randperm(data.n_train, generator=generator, device=device)
    for start in range(0, data.n_train, batch_size):
        index = order[start : start + batch_size]
        images = data.train_images[index]
        if augment.crop_flip:
            images = crop_flip(images, generator)
        images, labels = normalise(images, data, channels_last), data.train_labels[index]
        if mixing is None:
            yield images, labels
            continue
        # mixup (Zhang et al. 2018), as OTOv2's CIFAR tutorials apply it: one weight per batch,
        # the normalised images and their one-hot labels mixed with a permutation of the batch
        weight = float(mixing.beta(augment.mixup_alpha, augment.mixup_alpha))
        partner = torch.randperm(labels.numel(), generator=generator, device=device)
        one_hot = torch.nn.functional.one_hot(labels, data.num_classes).float()
        mixed = weight * images + (1 - weight) * images[partner]
        if channels_last:
            mixed = mixed.contiguous(memory_format=torch.channels_last)
        yield mixed, weight * one_hot + (1 - weight) * one_hot[partner]


def test_batches(data: DeviceData, batch_size: int, channels_last: bool = False):
    for start in range(0, data.test_labels.numel(), batch_size):
        images = data.test_images[start : start + batch_size]
        yield normalise(images, data, channels_last), data.test_labels[start : start + batch_size]


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return -(-n_train // batch_size)
