"""CIFAR sources -> decoded uint8 arrays, read once per content through the cache (cache.py).

Sources (`data.source`):
- official:  the python-version tarball (cifar-10-python.tar.gz / cifar-100-python.tar.gz),
             downloaded into `data.root` and checked against its published MD5 when missing;
- extracted: the folder inside it (cifar-10-batches-py / cifar-100-python);
- folder:    an image-folder tree `train/<class>/*`, `test/<class>/*`, or a .tar(.gz) of one
             (classes in sorted order, which is the CIFAR label order);
- synthetic: seeded random images with class-dependent patterns (smoke runs and tests);
- auto:      `data.path` if given (kind detected), else the official files under `data.root`.

The data flows one way: locate the source, take its content digest (an archive's sha256, a
folder's digest over its files), then ask the cache for the arrays of that content, which
decodes the source only when it has none.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..fileio import atomic_write_bytes
from . import cache

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


def _official_split(read_member, spec: dict, split: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in spec[split]:
        batch = _unpickle(read_member(name), f"{where}/{name}")
        try:
            data = np.asarray(batch["data"], dtype=np.uint8)
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch[spec["labels"]], dtype=np.int64))
        except (KeyError, ValueError) as error:
            raise DataError(f"data: {where}/{name} has the wrong layout ({_reason(error)})") from None
    return np.concatenate(images), np.concatenate(labels)


def _official_arrays(read_member, spec: dict, where: str) -> Arrays:
    train_images, train_labels = _official_split(read_member, spec, "train", where)
    test_images, test_labels = _official_split(read_member, spec, "test", where)
    meta = _unpickle(read_member(spec["meta"]), f"{where}/{spec['meta']}")
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[spec["names"]]]
    return Arrays(train_images, train_labels, test_images, test_labels, classes, "official")


def decode_extracted(folder: Path, spec: dict) -> Arrays:
    def read_member(name):
        path = folder / name
        if not path.is_file():
            raise DataError(f"data.path: {folder} has no '{name}' (expected an extracted {spec['folder']} folder)")
        return path.read_bytes()

    return _official_arrays(read_member, spec, str(folder))


def decode_official_tarball(archive: Path, spec: dict) -> Arrays:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

            def read_member(name):
                if name not in members:
                    raise DataError(f"data.path: {archive} has no '{spec['folder']}/{name}'")
                return tar.extractfile(members[name]).read()

            return _official_arrays(read_member, spec, str(archive))
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"data.path: {archive} is not a readable tarball ({_reason(error)})") from None


def _decode_image(raw: bytes, where: str) -> np.ndarray:
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


# The shipped data= options (conf/data/) that need no download, per dataset, for the hint when
# the official archive is missing (tests/test_cli_errors.py checks they exist as named).
NO_DOWNLOAD_OPTIONS = {
    "cifar10": ["data=cifar10_jpeg (the JPEG copy, at $PRUNE_BENCH_CIFAR10_JPEG)", "data=synthetic"],
    "cifar100": ["data=synthetic"],
}
DATA_ROOT_VARIABLE = "PRUNE_BENCH_DATA"  # conf/paths/default.yaml: paths.data_root


def _missing_archive(name: str, spec: dict, archive: Path, why: str) -> DataError:
    """The archive is not there and was not downloaded (`why`): what to use instead."""
    options = NO_DOWNLOAD_OPTIONS.get(name, ["data=synthetic"])
    use = options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"
    return DataError(
        f"data: {archive} not found and {why}; use {use}, or put {spec['archive']} in {archive.parent} "
        f"(paths.data_root, ${DATA_ROOT_VARIABLE}), or set data.path to a copy (the tarball, its extracted "
        f"{spec['folder']} folder or an image-folder tree)"
    )


def _download(name: str, spec: dict, target: Path) -> None:
    print(f"downloading {spec['url']} -> {target}", flush=True)
    try:
        with urllib.request.urlopen(spec["url"], timeout=60) as response:
            raw = response.read()
    except (urllib.error.URLError, OSError) as error:
        cause = error.reason if isinstance(error, urllib.error.URLError) else error  # not "<urlopen error ...>"
        raise _missing_archive(name, spec, target, f"its download failed ({_reason(cause)})") from None
    if hashlib.md5(raw).hexdigest() != spec["md5"]:
        raise DataError(f"data: checksum mismatch for the download of {spec['url']}; nothing was saved")
    atomic_write_bytes(target, raw)  # makes data.root only now: a failed download leaves nothing


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
                raise _missing_archive(cfg.name, spec, archive, "data.download=false")
            _download(cfg.name, spec, archive)
        return "official", archive
    raise DataError(f"data.source={cfg.source}: set data.path to the {cfg.source} data")


# ----------------------------------------------------------------------------- content and cache


def _cache_fields(arrays: Arrays) -> dict[str, np.ndarray]:
    mean, std = arrays.channel_stats()
    return {"train_images": arrays.train_images, "train_labels": arrays.train_labels,
            "test_images": arrays.test_images, "test_labels": arrays.test_labels,
            "classes": np.array(arrays.classes), "image_format": np.array(arrays.image_format),
            "mean": mean, "std": std}


def _from_cache_fields(saved: dict[str, np.ndarray]) -> Arrays:
    arrays = Arrays(saved["train_images"], saved["train_labels"], saved["test_images"], saved["test_labels"],
                    [str(c) for c in saved["classes"]], str(saved["image_format"]))
    arrays._stats = (saved["mean"], saved["std"])
    return arrays


def _cache_dir(cfg) -> Path:
    """data.cache_dir ($PRUNE_BENCH_CACHE) if set, else <data.root>/cache."""
    folder = cfg.get("cache_dir") or Path(os.path.expanduser(str(cfg.root))) / "cache"
    return Path(os.path.expanduser(str(folder)))


def decode(kind: str, path: Path, spec: dict) -> Arrays:
    if kind == "official":
        return decode_official_tarball(path, spec)
    if kind == "extracted":
        return decode_extracted(path, spec)
    if kind == "folder":
        return decode_image_folder(path) if path.is_dir() else decode_image_tarball(path)
    raise DataError(f"data.source: '{kind}' is not allowed; use one of {', '.join(SOURCES)}")


CHUNK = 1 << 20


def file_digests(path: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
    """{algorithm: hex digest} of a file's bytes, read once."""
    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def folder_digest(folder: Path) -> str:
    """sha256 over every file under `folder`: its path relative to the folder, size and bytes,
    in sorted order (so the same tree anywhere has the same digest)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


def content_digest(cfg, kind: str, path: Path, spec: dict, info: dict) -> str:
    """The sha256 of what the source holds (an archive's bytes; a folder's files), checked
    against data.sha256 when set and, for the official archive, against its published MD5."""
    if not path.is_file():
        return folder_digest(path)
    check_md5 = kind == "official" and path.name == spec["archive"] and not cfg.get("sha256")
    digests = file_digests(path, ("sha256", "md5") if check_md5 else ("sha256",))
    content = digests["sha256"]
    if cfg.get("sha256"):
        if content != cfg.sha256:
            raise DataError(f"data.sha256: checksum mismatch for {path} (expected {cfg.sha256}, got {content})")
        info["sha256"] = content
    if check_md5 and digests["md5"] != spec["md5"]:
        raise DataError(f"data: checksum mismatch for {path} (not the official {spec['archive']}); "
                        "delete it or point data.path elsewhere")
    return content


def load_arrays(cfg) -> tuple[Arrays, dict]:
    """The configured data, decoded (or read from the cache). Returns the arrays and a description."""
    if cfg.name not in OFFICIAL:
        raise DataError(f"data.name: unknown dataset '{cfg.name}'; allowed: {', '.join(OFFICIAL)}")
    spec = OFFICIAL[cfg.name]
    if cfg.source == "synthetic":
        syn = cfg.synthetic
        arrays = synthetic_arrays(spec["num_classes"], syn.train_size, syn.test_size, syn.seed)
        return arrays, {"dataset": cfg.name, "source": "synthetic", "format": "synthetic"}
    kind, path = _locate(cfg)
    info = {"dataset": cfg.name, "source": kind, "path": str(path)}
    content = content_digest(cfg, kind, path, spec, info)
    cache_dir = _cache_dir(cfg)

    def decode_once() -> dict[str, np.ndarray]:
        print(f"decoding {path} (once for this content)", flush=True)
        return _cache_fields(decode(kind, path, spec))

    saved = cache.fetch(cache_dir, content, cfg.name, kind, decode_once)
    arrays = _from_cache_fields(saved)
    if len(arrays.classes) != spec["num_classes"]:
        raise DataError(f"data: {path} has {len(arrays.classes)} classes, {cfg.name} has {spec['num_classes']}")
    info["format"] = arrays.image_format
    return arrays, info
