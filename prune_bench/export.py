"""`prune-bench export RUN_DIR`: a finished run's model (slimmed shapes included) as files that
run without this project, each checked against the PyTorch model before it is kept.

Formats:
- onnx:        model.onnx (torch.onnx.export, the dynamo exporter; one self-contained file),
               checked with onnxruntime; needs the extra `prune-bench[export]`.
- pt2:         model.pt2 (torch.export.save); loads with torch alone:
               torch.export.load("model.pt2").module()(images).
- torchscript: model.torchscript.pt (torch.jit.trace); loads with torch alone:
               torch.jit.load(...). TorchScript is deprecated in current torch (trace and load
               warn), so it is not a default; it is the format C++ libtorch loads.
All three keep the batch dimension free (the input is [N, 3, 32, 32]).

Beside them, export.json: the input, the normalisation the model expects (the run's training
mean and std per channel, 0..255 units), the class names, each file with its check, and the run.

Every file is written into a hidden temporary folder inside the output folder and moved into
place only when all formats passed their check, export.json last; a failure removes the
temporary folder (and an output folder this command created).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from .data import load_arrays
from .engine.checkpoint import load_pruned_model, run_model_spec
from .engine.record import record_labels
from .errors import DataError, PruneBenchError, first_line
from .fileio import atomic_write_json
from .models import ModelSpec
from .pruning.dpm.shapes import layer_shapes

FILES = {"onnx": "model.onnx", "pt2": "model.pt2", "torchscript": "model.torchscript.pt"}
DEFAULT_FORMATS = ("onnx", "pt2")
MANIFEST = "export.json"
VERIFY_BATCH_SIZES = (1, 7)
EXAMPLE_BATCH_SIZE = 2  # the batch traced; 1 would be specialised by torch.export
# A format's logits may differ from PyTorch's (fp32, CPU) by at most this, times the largest
# |logit| when that is above 1: fp32 rounding in reordered convolution sums is about 1e-6 relative.
TOLERANCE = 1e-4
INSTALL_HINT = "pip install 'prune-bench[export]'"


def parse_formats(text: str) -> list[str]:
    """Comma-separated formats, checked against FILES; duplicates dropped, order kept."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FILES]
    if unknown or not names:
        what = f"unknown format {', '.join(repr(n) for n in unknown)}" if unknown else "no format given"
        raise PruneBenchError(f"--format: {what}; allowed: {', '.join(FILES)}")
    return list(dict.fromkeys(names))


def require_onnx() -> dict[str, str]:
    """The versions of onnx, onnxruntime and onnxscript (torch's ONNX exporter needs the last);
    a one-line error naming the extra when one is missing."""
    missing, versions = [], {}
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            module = __import__(name)
        except ImportError:
            missing.append(name)
            continue
        versions[name] = getattr(module, "__version__", "?")
    if missing:
        raise PruneBenchError(f"--format onnx: needs {', '.join(missing)} (not installed); {INSTALL_HINT}")
    return versions


# ----------------------------------------------------------------------------- the run


def finished_run(run_dir: Path) -> dict:
    """The record of a finished run that saved its model; one line naming what is missing else."""
    if not run_dir.exists():
        raise PruneBenchError(f"export: {run_dir} does not exist")
    if not run_dir.is_dir() or not (run_dir / "config.yaml").is_file():
        raise PruneBenchError(f"export: {run_dir} is not a run directory (no config.yaml); "
                              "give a folder under the runs folder (prune-bench status lists them)")
    record_path = run_dir / "record.json"
    if not record_path.is_file():
        raise PruneBenchError(f"export: the run in {run_dir} has not finished (no record.json); "
                              "prune-bench status shows its state")
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as error:
        raise PruneBenchError(f"export: {record_path} cannot be read ({type(error).__name__})") from None
    if record.get("status") != "finished":
        raise PruneBenchError(f"export: the run in {run_dir} did not finish ({record.get('status')}); no model to export")
    if not (run_dir / "model.pt").is_file():
        raise PruneBenchError(f"export: {run_dir} has no model.pt (the run had trainer.save_model=false); "
                              "run it again with trainer.save_model=true")
    return record


def load_run_model(run_dir: Path) -> tuple[nn.Module, dict]:
    """The run's model (slimmed shapes, eval, fp32, CPU) and its spec."""
    try:
        return load_pruned_model(run_dir), run_model_spec(run_dir).as_dict()
    except Exception as error:  # a truncated or foreign model.pt, shapes that do not fit the spec
        raise PruneBenchError(f"export: {run_dir / 'model.pt'} cannot be loaded ({first_line(error)})") from None


def data_description(run_dir: Path) -> dict:
    """Mean and std per channel (0..255 units) of the run's full training split, its class names
    and image shape, read from the run's data as the run read it (load_arrays; never downloads)."""
    config = OmegaConf.load(run_dir / "config.yaml")
    data_cfg = OmegaConf.merge(config.data, {"download": False})
    try:
        arrays, info = load_arrays(data_cfg)
    except DataError as error:
        raise PruneBenchError(f"export: the normalisation (the training data's mean and std) needs the run's data, "
                              f"not readable here: {error}") from None
    mean, std = arrays.channel_stats()
    height, width, channels = arrays.train_images.shape[1:]
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "classes": list(arrays.classes),
            "image_shape": [int(channels), int(height), int(width)], "dataset": info.get("dataset"),
            "source": info.get("source")}


# ----------------------------------------------------------------------------- formats


@contextlib.contextmanager
def quiet_exporters():
    """torch's exporters warn about things that do not concern the user (torchvision ops not
    registered, deprecations inside torch); keep stderr to this command's own lines."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> dict:
    import onnx  # noqa: PLC0415 (optional extra: imported only when this format is asked for)

    with quiet_exporters():
        torch.onnx.export(model, (example,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                          verbose=False)
    graph = onnx.load(str(path))
    opset = next((entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx")), None)
    batch_dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    return {"opset": opset, "batch_dim": batch_dim.dim_param or batch_dim.dim_value}


def run_onnx(path: Path):
    import onnxruntime  # noqa: PLC0415 (optional extra)

    onnxruntime.disable_telemetry_events()  # a check on the user's machine reports nothing anywhere
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forward(images: np.ndarray) -> np.ndarray:
        return session.run(["logits"], {"images": images})[0]

    return forward, "onnxruntime CPUExecutionProvider"


def write_pt2(model: nn.Module, example: torch.Tensor, path: Path) -> dict:
    with quiet_exporters():
        program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, str(path))
    return {"load": f"torch.export.load('{path.name}').module()"}


def run_torch_module(module):
    def forward(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(images)).numpy()

    return forward


def load_pt2(path: Path):
    with quiet_exporters():
        return run_torch_module(torch.export.load(str(path)).module()), "torch.export.load, eager CPU"


def write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> dict:
    with quiet_exporters(), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(path))
    return {"load": f"torch.jit.load('{path.name}')"}


def load_torchscript(path: Path):
    with quiet_exporters():
        return run_torch_module(torch.jit.load(str(path), map_location="cpu")), "torch.jit.load, CPU"


WRITERS = {"onnx": (write_onnx, run_onnx), "pt2": (write_pt2, load_pt2),
           "torchscript": (write_torchscript, load_torchscript)}


def verification_inputs(mean: list[float], std: list[float], image_shape: list[int]) -> dict[int, np.ndarray]:
    """Seeded random images (uniform 0..255 pixels) normalised as the model expects, per batch size."""
    generator = np.random.default_rng(0)
    mean_array = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std_array = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return {n: ((generator.integers(0, 256, size=(n, *image_shape)).astype(np.float32) - mean_array) / std_array)
            for n in VERIFY_BATCH_SIZES}


def verify(forward, model: nn.Module, inputs: dict[int, np.ndarray], name: str, how: str) -> dict:
    """The largest |logit difference| between `forward` (the written file, loaded back) and the
    PyTorch model over the verification batches; an error above the tolerance."""
    worst, largest = 0.0, 0.0
    for images in inputs.values():
        with torch.no_grad():
            expected = model(torch.from_numpy(images)).numpy()
        got = np.asarray(forward(images))
        if got.shape != expected.shape:
            raise PruneBenchError(f"export: {name}: logits of shape {list(got.shape)} for a batch of {len(images)}, "
                                  f"expected {list(expected.shape)}; nothing was written")
        worst = max(worst, float(np.abs(got - expected).max()))
        largest = max(largest, float(np.abs(expected).max()))
    tolerance = TOLERANCE * max(1.0, largest)
    if not worst <= tolerance:
        raise PruneBenchError(f"export: {name}: logits differ from PyTorch's by {worst:.3g} (tolerance {tolerance:.3g}); "
                              "nothing was written")
    return {"against": "PyTorch eager fp32 on CPU", "runtime": how, "batch_sizes": list(inputs),
            "max_abs_diff": worst, "tolerance": tolerance, "max_abs_logit": largest}


# ----------------------------------------------------------------------------- export


def _folders_to_create(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    return missing


def export_run(run_dir: Path | str, out_dir: Path | str | None = None,
               formats: list[str] | tuple[str, ...] = DEFAULT_FORMATS) -> dict:
    """Export a finished run's model in `formats` into `out_dir` (default RUN_DIR/export), each
    file checked against the PyTorch model at batch sizes 1 and 7; returns the manifest
    (also written as export.json). Raises PruneBenchError, leaving nothing behind, on failure."""
    run_dir = Path(run_dir).expanduser()
    record = finished_run(run_dir)
    out_dir = Path(out_dir).expanduser() if out_dir is not None else run_dir / "export"
    model, spec = load_run_model(run_dir)
    data = data_description(run_dir)

    def describe(written: dict, versions: dict) -> dict:
        return build_manifest(run_dir, record, spec, model, data, written, versions)

    return export_model(model, out_dir, formats, data["image_shape"], data["mean"], data["std"], describe)


def export_model(model: nn.Module, out_dir: Path | str, formats: list[str] | tuple[str, ...] = DEFAULT_FORMATS,
                 image_shape=(3, 32, 32), mean=None, std=None, describe=None) -> dict:
    """Export any model (one slimmed with prune_bench.pruning.dpm.slim, say) in `formats` into
    `out_dir`, each file loaded back and checked against the PyTorch model at batch sizes 1 and 7
    on inputs normalised with `mean`/`std` (0..255 units; default: none). Returns the manifest
    (`describe(written, versions)`'s, or the formats and the input shape), also written as
    export.json. Raises PruneBenchError, leaving nothing behind, on failure."""
    formats = parse_formats(",".join(formats))
    versions = {"torch": torch.__version__}
    if "onnx" in formats:
        versions.update(require_onnx())
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise PruneBenchError(f"--out: {out_dir} is a file, not a folder")
    image_shape = list(image_shape)
    mean = [0.0] * image_shape[0] if mean is None else mean
    std = [1.0] * image_shape[0] if std is None else std
    model = model.cpu().float().eval()
    inputs = verification_inputs(mean, std, image_shape)
    example = torch.from_numpy(inputs[max(VERIFY_BATCH_SIZES)][:EXAMPLE_BATCH_SIZE].copy())

    created = _folders_to_create(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", suffix=".tmp", dir=out_dir))
    except OSError as error:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise PruneBenchError(f"--out: cannot write in {out_dir} ({error.strerror or type(error).__name__}); "
                              "use a writable folder") from None
    try:
        written = {}
        for name in formats:
            write, load = WRITERS[name]
            path = staging / FILES[name]
            try:
                details = write(model, example, path)
            except PruneBenchError:
                raise
            except Exception as error:
                raise PruneBenchError(f"export: {name}: the exporter failed ({first_line(error)}); "
                                      "nothing was written") from None
            forward, how = load(path)
            written[name] = {"file": FILES[name], "bytes": path.stat().st_size, **details,
                             "verified": verify(forward, model, inputs, name, how)}
        manifest = (describe(written, versions) if describe is not None else
                    {"input": {"shape": ["batch", *image_shape], "dtype": "float32"}, "formats": written,
                     "versions": versions})
        atomic_write_json(staging / MANIFEST, manifest)
        for name in formats:  # the model files first, the manifest last: a manifest means a whole export
            os.replace(staging / FILES[name], out_dir / FILES[name])
        os.replace(staging / MANIFEST, out_dir / MANIFEST)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return manifest


def build_manifest(run_dir: Path, record: dict, spec: dict, model: nn.Module, data: dict, written: dict,
                   versions: dict) -> dict:
    with torch.random.fork_rng(devices=[]):  # building the unpruned model draws initial weights
        unpruned = ModelSpec(**spec).build()
    slimmed = layer_shapes(model) != layer_shapes(unpruned)
    return {
        "input": {
            "name": "images", "shape": ["batch", *data["image_shape"]], "dtype": "float32", "layout": "NCHW",
            "channels": "RGB",
            "normalisation": {
                "mean": data["mean"], "std": data["std"], "units": "0..255",
                "formula": "images = (pixels - mean) / std per channel, pixels as float in 0..255",
                "of": f"the training split of {data['dataset']} ({data['source']})",
            },
        },
        "output": {"name": "logits", "shape": ["batch", spec["num_classes"]],
                   "meaning": "unnormalised class scores in the order of `classes` (softmax gives probabilities)"},
        "classes": data["classes"],
        "model": {**spec, "label": record_labels(record)["model"], "slimmed": slimmed, "params": sum(p.numel() for p in model.parameters()),
                  "macs": record.get("macs")},
        "formats": written,
        "source_run": {
            "run_dir": str(run_dir.resolve()), "run_id": record.get("run_id"), "name": record.get("name"),
            "pruner": (record.get("config") or {}).get("pruner", {}).get("name"),
            "test_acc": (record.get("metrics") or {}).get("test_acc"), "created": record.get("created"),
            "git_sha": record.get("git_sha"),
        },
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions,
    }
