"""What a stage saves and loads: its checkpoint after every epoch (model, optimizer, scheduler,
hooks, RNG, progress, and the pruned shapes), the output of a finished shared stage, a run's
final model.pt, and a finished run's model rebuilt in its slimmed shapes in one call. Every file
names the identity it belongs to and loads with weights_only=True."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import OmegaConf

from ..data import OFFICIAL
from ..errors import CheckpointError
from ..fileio import atomic_write
from ..layout import CONFIG, MODEL, RECORD
from ..models import ModelSpec
from ..pruning.dpm.shapes import restore_shapes
from .loop import FitState, Training

CHECKPOINT_FORMAT = 1


def atomic_torch_save(obj, path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle))


def save_checkpoint(path: Path, training: Training, state: FitState, identity: str,
                    architecture: dict | None) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "run_id": identity,
        "model": training.model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(),
        "pruner": training.hooks.state_dict(),
        "architecture": architecture,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "state": asdict(state),
    }
    atomic_torch_save(payload, path)


def _read(path: Path, identity: str, what: str, again: str) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{what} {path} cannot be read ({type(error).__name__}); delete it to {again}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{what} {path} has an unknown format; delete it to {again}")
    if payload.get("run_id") != identity:
        raise CheckpointError(f"{what} {path} belongs to {payload.get('run_id')}, not {identity}; delete it to {again}")
    return payload


def load_checkpoint(path: Path, identity: str) -> dict:
    payload = _read(path, identity, "checkpoint", "start the run again")
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has an unknown format; delete it to start the run again")
    return payload


def restore(payload: dict, training: Training) -> FitState:
    """Load a checkpoint into a stage's training (whose model already has the saved shapes)."""
    training.model.load_state_dict(payload["model"])
    training.optimizer.load_state_dict(payload["optimizer"])
    training.scheduler.load_state_dict(payload["scheduler"])
    training.hooks.load_state_dict(payload["pruner"])
    torch.set_rng_state(payload["rng"]["torch"])
    if payload["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
    return FitState(**payload["state"])


def save_stage_output(path: Path, model: nn.Module, state: FitState, identity: str,
                      architecture: dict | None) -> None:
    """A finished shared stage: what the stages after it start from."""
    payload = {"run_id": identity, "model": model.state_dict(), "state": asdict(state)}
    if architecture:
        payload["architecture"] = architecture
    atomic_torch_save(payload, path)


def load_stage_output(path: Path, identity: str) -> dict:
    return _read(path, identity, "stage output", "train that stage again")


def save_model(run_dir: Path, model: nn.Module, architecture: dict | None) -> None:
    atomic_torch_save({"model": model.state_dict(), "architecture": architecture}, Path(run_dir) / MODEL)


def model_file(path) -> Path:
    """A run folder's model.pt, or `path` itself when it names the file."""
    path = Path(path)
    return path / MODEL if path.is_dir() else path


def run_model_spec(path, payload: dict | None = None) -> ModelSpec:
    """What builds a finished run's unpruned model: model.pt's architecture (structural pruners
    save it there), else the run's config.yaml. `path`: the run folder or its model.pt; `payload`:
    model.pt already loaded."""
    path = model_file(path)
    if payload is None:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    architecture = payload.get("architecture")
    if architecture:
        return ModelSpec(**architecture["model"])
    config = OmegaConf.to_container(OmegaConf.load(path.parent / CONFIG), resolve=True)
    return ModelSpec.from_config(config["model"], OFFICIAL[config["data"]["name"]]["num_classes"])


def load_pruned_model(path, map_location="cpu") -> nn.Module:
    """The model of a finished run, in its slimmed shapes, weights loaded, in eval mode.
    `path` is a run directory or its model.pt. Structural pruners save the model spec and the
    per-layer shapes in model.pt; for other runs the spec comes from the run's config.yaml."""
    path = model_file(path)
    payload = torch.load(path, map_location=map_location, weights_only=True)
    model = run_model_spec(path, payload).build()
    if payload.get("architecture"):
        restore_shapes(model, payload["architecture"]["layers"])
    model.load_state_dict(payload["model"])
    return model.to(map_location).eval()


@dataclass
class ModelPair:
    """A dense model and its slimmed version, with how to run them (a source for latency.compare_latency)."""

    label: str
    dense: nn.Module
    slimmed: nn.Module
    image_shape: tuple[int, ...] = (3, 32, 32)
    bf16: bool = False  # trained in bf16 autocast (applies on CUDA)
    channels_last: bool = False  # trained in channels_last (applies on CUDA)


def model_pair_from_run(run_dir: Path | str, device: torch.device | str = "cpu") -> ModelPair:
    """A finished run's slimmed model (load_pruned_model) and a freshly initialised dense model
    of the same spec, both on `device` in eval mode, with the precision and memory format the run
    trained in (its record). The dense weights are random (seeded): a dense convolution's time
    does not depend on its weights."""
    run_dir = Path(run_dir)
    device = torch.device(device)
    slimmed = load_pruned_model(run_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dense = run_model_spec(run_dir).build().eval()
    record_path = run_dir / RECORD
    trained = (json.loads(record_path.read_text()).get("device") or {}) if record_path.is_file() else {}
    return ModelPair(label=run_dir.name, dense=dense.to(device), slimmed=slimmed.to(device),
                     bf16=bool(trained.get("bf16")), channels_last=bool(trained.get("channels_last")))
