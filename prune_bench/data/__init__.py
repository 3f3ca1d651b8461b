"""CIFAR data: sources (decoding, content-keyed cache) -> the device (batches)."""

from .batches import (
    Augment,
    DeviceData,
    crop_flip,
    data_label,
    epoch_generator,
    load_data,
    normalise,
    per_class_subset,
    steps_per_epoch,
    test_batches,
    train_batches,
)
from .sources import OFFICIAL, SOURCES, Arrays, load_arrays, synthetic_arrays

__all__ = [
    "OFFICIAL", "SOURCES", "Arrays", "Augment", "DeviceData", "crop_flip", "data_label", "epoch_generator", "load_arrays",
    "load_data", "normalise", "per_class_subset", "steps_per_epoch", "synthetic_arrays", "test_batches",
    "train_batches",
]
