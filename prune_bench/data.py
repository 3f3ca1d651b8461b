"""CIFAR data: every source decodes once to uint8 arrays (cached per content under the user's
cache folder, never beside the source: datacache.py), then the whole split lives on the
training device and batches are made there: a seeded permutation per epoch, random crop with
4-pixel zero padding and horizontal flip as one batched gather, and normalisation. No
DataLoader workers, no PIL in the loop.

Sources (`data.source`):
- official:  the python-version tarball (cifar-10-python.tar.gz / cifar-100-python.tar.gz),
             downloaded into `data.root` and checked against its published MD5 when missing;
- extracted: the folder inside it (cifar-10-batches-py / cifar-100-python);
- folder:    an image-folder tree `train/<class>/*`, `test/<class>/*`, or a .tar(.gz) of one
             (classes in sorted order, which is the CIFAR label order);
- synthetic: seeded random images with class-dependent patterns (smoke runs and tests);
- auto:      `data.path` if given (kind detected), else the official files under `data.root`.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from . import datacache
from .errors import DataError
from .fileio import atomic_write_bytes

OFFICIAL = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "archive": "cifar-10-python.tar.gz",
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "labels": "labels",
        "meta": "batches.meta",
        "names": "label_names",
        "num_classes": 10,
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "archive": "cifar-100-python.tar.gz",
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "labels": "fine_labels",
        "meta": "meta",
        "names": "fine_label_names",
        "num_classes": 100,
    },
}
SOURCES = ("auto", "official", "extracted", "folder", "synthetic")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class Arrays:
    """Decoded data on the host: images uint8 [N, 32, 32, 3], labels int64 [N]."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    image_format: str  # "official", "jpeg", "png", ..., "synthetic"

    def channel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std of the training images, in 0..255 units."""
        if not hasattr(self, "_stats"):
            total = np.zeros(3)
            squares = np.zeros(3)
            for chunk in np.array_split(self.train_images, max(1, len(self.train_images) // 5000)):
                flat = chunk.reshape(-1, 3).astype(np.float64)
                total += flat.sum(axis=0)
                squares += np.square(flat).sum(axis=0)
            count = self.train_images.size // 3
            mean = total / count
            self._stats = (mean, np.sqrt(squares / count - mean**2))
        return self._stats


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


# ----------------------------------------------------------------------------- decoding


def _reason(error: Exception) -> str:
    """An exception's text on one line, whole. tarfile reports a line per compression it
    tried when none fits: that is said in words instead."""
    if isinstance(error, tarfile.ReadError) and "could not be opened successfully" in str(error):
        return "not a tar file, plain or compressed with gzip, bzip2 or xz"
    return " ".join(str(error).split()) or type(error).__name__


class _CifarUnpickler(pickle.Unpickler):
    """The official batches are pickled dicts of numpy arrays and lists; refuse anything else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 carry byte buffers
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch")
        return super().find_class(module, name)


def _unpickle(raw: bytes, what: str) -> dict:
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as error:
        raise DataError(f"data: {what} is not a readable CIFAR batch ({_reason(error)})") from None
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _official_split(read, spec: dict, split: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in spec[split]:
        batch = _unpickle(read(name), f"{where}/{name}")
        try:
            data = np.asarray(batch["data"], dtype=np.uint8)
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch[spec["labels"]], dtype=np.int64))
        except (KeyError, ValueError) as error:
            raise DataError(f"data: {where}/{name} has the wrong layout ({_reason(error)})") from None
    return np.concatenate(images), np.concatenate(labels)


def _official_arrays(read, spec: dict, where: str) -> Arrays:
    train_images, train_labels = _official_split(read, spec, "train", where)
    test_images, test_labels = _official_split(read, spec, "test", where)
    meta = _unpickle(read(spec["meta"]), f"{where}/{spec['meta']}")
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[spec["names"]]]
    return Arrays(train_images, train_labels, test_images, test_labels, classes, "official")


def decode_extracted(folder: Path, spec: dict) -> Arrays:
    def read(name):
        path = folder / name
        if not path.is_file():
            raise DataError(f"data.path: {folder} has no '{name}' (expected an extracted {spec['folder']} folder)")
        return path.read_bytes()

    return _official_arrays(read, spec, str(folder))


def decode_official_tarball(archive: Path, spec: dict) -> Arrays:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

            def read(name):
                if name not in members:
                    raise DataError(f"data.path: {archive} has no '{spec['folder']}/{name}'")
                return tar.extractfile(members[name]).read()

            return _official_arrays(read, spec, str(archive))
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"data.path: {archive} is not a readable tarball ({_reason(error)})") from None


def _decode_image(raw: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"data: {where} is not a readable image ({_reason(error)})") from None
    if array.shape != (32, 32, 3):
        raise DataError(f"data: {where} is {array.shape[1]}x{array.shape[0]}, expected 32x32")
    return array


def _arrays_from_files(files: dict[tuple[str, str], list[tuple[str, bytes]]], where: str) -> Arrays:
    """files: (split, class) -> [(file name, raw bytes)]."""
    splits = {"train": {}, "test": {}}
    for (split, label), items in files.items():
        splits[split][label] = sorted(items)
    if not splits["train"] or not splits["test"]:
        raise DataError(f"data.path: {where} needs train/<class>/* and test/<class>/* images")
    classes = sorted(splits["train"])
    if sorted(splits["test"]) != classes:
        raise DataError(f"data.path: {where} has different class folders under train/ and test/")
    arrays, suffixes = {}, set()
    for split, by_class in splits.items():
        images, labels = [], []
        for index, label in enumerate(classes):
            for name, raw in by_class[label]:
                images.append(_decode_image(raw, f"{where}:{split}/{label}/{name}"))
                labels.append(index)
                suffixes.add(Path(name).suffix.lower().lstrip("."))
        arrays[split] = (np.stack(images), np.asarray(labels, dtype=np.int64))
    image_format = "jpeg" if suffixes <= {"jpg", "jpeg"} else "+".join(sorted(suffixes))
    return Arrays(*arrays["train"], *arrays["test"], classes, image_format)


def _split_and_class(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """(split, class) for a path .../train|test/<class>/<file>, else None."""
    if len(parts) >= 3 and parts[-3] in ("train", "test"):
        return parts[-3], parts[-2]
    return None


def decode_image_folder(folder: Path) -> Arrays:
    files: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    for split in ("train", "test"):
        for path in sorted((folder / split).glob("*/*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                files.setdefault((split, path.parent.name), []).append((path.name, path.read_bytes()))
    return _arrays_from_files(files, str(folder))


def decode_image_tarball(archive: Path) -> Arrays:
    files: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = Path(member.name).parts
                key = _split_and_class(parts)
                if member.isfile() and key and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                    files.setdefault(key, []).append((parts[-1], tar.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"data.path: {archive} is not a readable tarball ({_reason(error)})") from None
    return _arrays_from_files(files, str(archive))


def synthetic_arrays(num_classes: int, train_size: int, test_size: int, seed: int) -> Arrays:
    """Random images whose class is a fixed low-frequency colour pattern plus noise:
    learnable in a few epochs, so smoke runs show the loop works."""
    generator = np.random.default_rng(seed)
    patterns = generator.uniform(40, 215, size=(num_classes, 4, 4, 3))
    patterns = patterns.repeat(8, axis=1).repeat(8, axis=2)  # 4x4 blocks -> 32x32

    def draw(n):
        labels = np.arange(n, dtype=np.int64) % num_classes
        generator.shuffle(labels)
        noise = generator.normal(0, 40, size=(n, 32, 32, 3))
        images = np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8)
        return images, labels

    classes = [f"class{i}" for i in range(num_classes)]
    return Arrays(*draw(train_size), *draw(test_size), classes, "synthetic")


# ----------------------------------------------------------------------------- locating


def _detect_kind(path: Path) -> str:
    if path.is_dir():
        if (path / "train").is_dir() and (path / "test").is_dir():
            return "folder"
        if any((path / name).is_file() for name in ("data_batch_1", "train", "meta", "batches.meta")):
            return "extracted"
        raise DataError(f"data.path: {path} is neither an image-folder tree (train/, test/) nor an extracted CIFAR folder")
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if Path(member.name).name in ("batches.meta", "meta"):
                    return "official"
                if _split_and_class(Path(member.name).parts):
                    return "folder"
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"data.path: {path} is not a readable tarball or folder ({_reason(error)})") from None
    raise DataError(f"data.path: {path} holds neither CIFAR batches nor train/<class>/ images")


def _download(spec: dict, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {spec['url']} -> {target}", flush=True)
    try:
        with urllib.request.urlopen(spec["url"], timeout=60) as response:
            raw = response.read()
    except (urllib.error.URLError, OSError) as error:
        raise DataError(
            f"data: cannot download {spec['url']} ({_reason(error)}); put {spec['archive']} in {target.parent} "
            f"or set data.path=/path/to/{spec['archive']} (an extracted {spec['folder']} folder or an "
            "image-folder tree also works)"
        ) from None
    if hashlib.md5(raw).hexdigest() != spec["md5"]:
        raise DataError(f"data: checksum mismatch for the download of {spec['url']}; nothing was saved")
    atomic_write_bytes(target, raw)


def _path_variable(cfg) -> str | None:
    """The environment variable data.path is read from (`${oc.env:NAME,default}`), if any."""
    raw = OmegaConf.to_container(cfg, resolve=False).get("path") if isinstance(cfg, DictConfig) else None
    found = re.search(r"\$\{oc\.env:(\w+)", str(raw or ""))
    return found.group(1) if found else None


def _configured_path(cfg) -> Path:
    """data.path, checked: an empty value or a missing file says where the value came from
    (an environment variable, its default) and, if relative, what it was resolved against."""
    variable = _path_variable(cfg)
    if str(cfg.path) == "":
        if variable:
            raise DataError(f"data.path: empty (from ${variable}, which is set but empty); set it to the data's "
                            "path, or unset it for the default")
        raise DataError("data.path: empty; set it to the data's path, or to null for the files under data.root")
    path = Path(os.path.expanduser(str(cfg.path)))
    if path.exists():
        return path
    notes = [f"relative to the current folder {os.getcwd()}"] if not path.is_absolute() else []
    if variable:
        notes.append(f"from ${variable}" if variable in os.environ else f"the default of ${variable}")
    hint = f"; set ${variable} or data.path to where the data is" if variable else ""
    raise DataError(f"data.path: {path} does not exist" + (f" ({'; '.join(notes)})" if notes else "") + hint)


def _locate(cfg) -> tuple[str, Path]:
    """(kind, path) for a configured real-data source; downloads when allowed and needed."""
    spec = OFFICIAL[cfg.name]
    if cfg.path is not None:
        path = _configured_path(cfg)
        kind = _detect_kind(path) if cfg.source == "auto" else cfg.source
        return kind, path
    root = Path(os.path.expanduser(str(cfg.root)))
    folder, archive = root / spec["folder"], root / spec["archive"]
    if cfg.source in ("auto", "extracted") and folder.is_dir():
        return "extracted", folder
    if cfg.source in ("auto", "official"):
        if not archive.is_file():
            if not cfg.download:
                raise DataError(
                    f"data: {archive} not found and data.download=false; set data.path to a local "
                    f"{spec['archive']}, an extracted {spec['folder']} folder or an image-folder tree"
                )
            _download(spec, archive)
        return "official", archive
    raise DataError(f"data.source={cfg.source}: set data.path to the {cfg.source} data")


# ----------------------------------------------------------------------------- caching


def _cached_arrays(arrays: Arrays) -> dict[str, np.ndarray]:
    mean, std = arrays.channel_stats()
    return {"train_images": arrays.train_images, "train_labels": arrays.train_labels,
            "test_images": arrays.test_images, "test_labels": arrays.test_labels,
            "classes": np.array(arrays.classes), "image_format": np.array(arrays.image_format),
            "mean": mean, "std": std}


def _from_cache(saved: dict[str, np.ndarray]) -> Arrays:
    arrays = Arrays(saved["train_images"], saved["train_labels"], saved["test_images"], saved["test_labels"],
                    [str(c) for c in saved["classes"]], str(saved["image_format"]))
    arrays._stats = (saved["mean"], saved["std"])
    return arrays


def _cache_dir(cfg) -> Path:
    """data.cache_dir ($PRUNE_BENCH_CACHE) if set, else <data.root>/cache."""
    folder = cfg.get("cache_dir") or Path(os.path.expanduser(str(cfg.root))) / "cache"
    return Path(os.path.expanduser(str(folder)))


def _decode(kind: str, path: Path, spec: dict) -> Arrays:
    if kind == "official":
        return decode_official_tarball(path, spec)
    if kind == "extracted":
        return decode_extracted(path, spec)
    if kind == "folder":
        return decode_image_folder(path) if path.is_dir() else decode_image_tarball(path)
    raise DataError(f"data.source: '{kind}' is not allowed; use one of {', '.join(SOURCES)}")


def load_arrays(cfg) -> tuple[Arrays, dict]:
    """Decode (or read from the cache, datacache.py) the configured data. Returns the arrays
    and a description."""
    if cfg.name not in OFFICIAL:
        raise DataError(f"data.name: unknown dataset '{cfg.name}'; allowed: {', '.join(OFFICIAL)}")
    spec = OFFICIAL[cfg.name]
    if cfg.source == "synthetic":
        syn = cfg.synthetic
        arrays = synthetic_arrays(spec["num_classes"], syn.train_size, syn.test_size, syn.seed)
        return arrays, {"dataset": cfg.name, "source": "synthetic", "format": "synthetic"}
    kind, path = _locate(cfg)
    info = {"dataset": cfg.name, "source": kind, "path": str(path)}
    if path.is_file():
        check_md5 = kind == "official" and path.name == spec["archive"] and not cfg.get("sha256")
        digests = datacache.file_digests(path, ("sha256", "md5") if check_md5 else ("sha256",))
        content = digests["sha256"]
        if cfg.get("sha256"):
            if content != cfg.sha256:
                raise DataError(f"data.sha256: checksum mismatch for {path} (expected {cfg.sha256}, got {content})")
            info["sha256"] = content
        if check_md5 and digests["md5"] != spec["md5"]:
            raise DataError(f"data: checksum mismatch for {path} (not the official {spec['archive']}); delete it or point data.path elsewhere")
    else:
        content = datacache.folder_digest(path)
    cache = datacache.cache_path(_cache_dir(cfg), content, cfg.name, kind)
    key = datacache.cache_key(content, cfg.name, kind)
    saved = datacache.read(cache, key)
    if saved is not None:
        arrays = _from_cache(saved)
    else:
        print(f"decoding {path} (once for this content)", flush=True)
        started = time.perf_counter()
        arrays = _decode(kind, path, spec)
        seconds = time.perf_counter() - started
        failed = datacache.write(cache, key, _cached_arrays(arrays))
        if failed:
            print(f"decoded in {seconds:.1f} s; warning: could not write the data cache {cache} ({failed}); "
                  "continuing without it (set data.cache_dir or $PRUNE_BENCH_CACHE to a writable folder)")
        else:
            print(f"decoded in {seconds:.1f} s; cached at {cache}", flush=True)
    if len(arrays.classes) != spec["num_classes"]:
        raise DataError(f"data: {path} has {len(arrays.classes)} classes, {cfg.name} has {spec['num_classes']}")
    info["format"] = arrays.image_format
    return arrays, info


def per_class_subset(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """Indices of the first `per_class` examples of each class (deterministic, balanced)."""
    if not per_class:
        return np.arange(len(labels))
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    return np.sort(keep)


def load_data(cfg, device: torch.device) -> DeviceData:
    """Decode once, subset, and move both splits to `device` as uint8 NCHW."""
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
    return DeviceData(
        train_x, train_y, test_x, test_y,
        mean=torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1),
        std=torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1),
        num_classes=OFFICIAL[cfg.name]["num_classes"], classes=arrays.classes, info=info,
    )


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


# ----------------------------------------------------------------------------- batches


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


def train_batches(data: DeviceData, batch_size: int, seed: int, epoch: int, augment: bool = True,
                  channels_last: bool = False):
    """Yields (images, labels) for one epoch: seeded order, augmentation on the device."""
    generator = epoch_generator(seed, epoch, data.train_images.device)
    order = torch.randperm(data.n_train, generator=generator, device=data.train_images.device)
    for start in range(0, data.n_train, batch_size):
        index = order[start : start + batch_size]
        images = data.train_images[index]
        if augment:
            images = crop_flip(images, generator)
        yield normalise(images, data, channels_last), data.train_labels[index]


def test_batches(data: DeviceData, batch_size: int, channels_last: bool = False):
    for start in range(0, data.test_labels.numel(), batch_size):
        images = data.test_images[start : start + batch_size]
        yield normalise(images, data, channels_last), data.test_labels[start : start + batch_size]


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return -(-n_train // batch_size)
