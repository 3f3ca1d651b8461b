"""What the training-step benchmarks time on: synthetic images on the device (data.DeviceData),
a seeded model in channels_last, endless seeded batches through the project's own batching
(data.train_batches), and the runtime a run uses on the device."""

from __future__ import annotations

import torch

from prune_bench.data import DeviceData, synthetic_arrays, train_batches
from prune_bench.engine.runtime import Runtime
from prune_bench.models import build_model


def synthetic_device_data(n: int, device: torch.device) -> DeviceData:
    arrays = synthetic_arrays(10, n, 100, seed=0)
    mean, std = arrays.channel_stats()

    def tensor(images):
        return torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device)

    return DeviceData(
        tensor(arrays.train_images), torch.from_numpy(arrays.train_labels).to(device),
        tensor(arrays.test_images), torch.from_numpy(arrays.test_labels).to(device),
        torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1),
        torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1),
        10, arrays.classes,
    )


def runtime_for(device: torch.device) -> Runtime:
    return Runtime(device, bf16=device.type == "cuda", channels_last=True, eval_batch_size=1000,
                   progress="none")


def data_and_model(args, n_images: int = 2048) -> tuple[DeviceData, torch.nn.Module]:
    """Synthetic data on the device and a seeded `args.model` in channels_last."""
    data = synthetic_device_data(n_images, args.device)
    torch.manual_seed(0)
    return data, build_model(args.model).to(args.device, memory_format=torch.channels_last)


def endless_batches(data: DeviceData, batch_size: int):
    epoch = 0
    while True:
        yield from train_batches(data, batch_size, seed=0, epoch=epoch, channels_last=True)
        epoch += 1
