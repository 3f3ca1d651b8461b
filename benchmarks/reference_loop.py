"""The loop of the usual published CIFAR training script, for the gpu benchmark (gpu.py) to compare
the project's loop with on the same device: a per-image PIL Dataset, DataLoader workers, fp32 eager
NCHW. It is a reference to measure against, never a path the project trains on."""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image, ImageOps

from prune_bench.models import build_model

from .timing import synchronize


class PerImageCifar(torch.utils.data.Dataset):
    """uint8 HWC images and int labels, a PIL image per item through `transform`: the dataset of
    the usual published CIFAR script."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class PilTransform:
    """RandomCrop(32, padding=4) + RandomHorizontalFlip (when `augment`), ToTensor, Normalize,
    on one PIL image with PIL and numpy: torchvision's transforms where torchvision is absent."""

    def __init__(self, mean, std, augment: bool, pad: int = 4):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.augment, self.pad = augment, pad

    def __call__(self, image):
        if self.augment:
            width, height = image.size
            padded = ImageOps.expand(image, border=self.pad, fill=0)
            top, left = (int(v) for v in torch.randint(0, 2 * self.pad + 1, (2,)))
            image = padded.crop((left, top, left + width, top + height))
            if torch.rand(()) < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0)
        return (x - self.mean) / self.std


def reference_transforms(mean, std) -> tuple[object, object, str]:
    """(train transform, test transform, which library): torchvision's if installed (imported
    here only: the project never needs it), else the same per-image transforms in PIL + numpy."""
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    try:
        import torchvision
        import torchvision.transforms as T
    except ImportError:
        return PilTransform(mean, std, True), PilTransform(mean, std, False), "PIL + numpy (torchvision not installed)"
    train = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    test = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    return train, test, f"torchvision {torchvision.__version__}"


def time_reference(model_name: str, arrays, args) -> dict:
    """The loop of the usual published CIFAR script: a per-image PIL Dataset, DataLoader(batch,
    shuffle, workers, pin_memory), fp32 eager NCHW, .to(device, non_blocking=True) per batch,
    SGD momentum 0.9. (No per-step .item(), which many such scripts add: if anything this
    reference is faster than theirs.) Training images/s over `--epoch-steps` steps after the first
    batch arrives; the workers' start and a full test pass are timed as they come per epoch."""
    device = args.device
    mean, std = (stat / 255.0 for stat in arrays.channel_stats())
    train_transform, test_transform, library = reference_transforms(mean, std)
    pin = device.type == "cuda"
    train_set = PerImageCifar(arrays.train_images, arrays.train_labels, train_transform)
    test_set = PerImageCifar(arrays.test_images, arrays.test_labels, test_transform)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                               num_workers=args.workers, pin_memory=pin)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=100, shuffle=False,
                                              num_workers=args.workers, pin_memory=pin)
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=len(arrays.classes)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    criterion = torch.nn.CrossEntropyLoss()

    def train(n_steps: int) -> tuple[float, float]:
        """Seconds until the first batch arrives (the workers' start), then for n_steps steps."""
        model.train()
        started = time.perf_counter()
        batches = iter(train_loader)
        inputs, targets = next(batches)
        first = time.perf_counter()
        for step in range(n_steps):
            if step:
                inputs, targets = next(batches)
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
        synchronize(device)
        del batches  # its workers stop, as at an epoch's end
        return first - started, time.perf_counter() - first

    def test() -> float:
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=device)
        started = time.perf_counter()
        with torch.no_grad():
            for inputs, targets in test_loader:
                inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                correct += (model(inputs).argmax(1) == targets).sum()
        correct.item()
        return time.perf_counter() - started

    n_steps = min(args.epoch_steps, len(train_loader))
    train(min(n_steps, max(3, n_steps // 10)))  # warm-up: cuDNN autotuning, allocator
    startup_s, train_s = train(n_steps)
    test_s = test()
    return {
        "library": library, "workers": args.workers, "startup_s": startup_s, "train_s": train_s,
        "test_s": test_s, "steps": n_steps, "images_per_s": n_steps * args.batch_size / train_s,
        "epoch_s": startup_s + train_s / n_steps * len(train_loader) + test_s,
    }


