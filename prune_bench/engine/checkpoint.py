"""What a stage saves and loads: its checkpoint after every epoch (model, optimizer, scheduler,
hooks, RNG, progress, and the pruned shapes), the output of a finished shared stage, a run's
final model.pt, and a finished run's model rebuilt in its slimmed shapes in one call. Every file
names the identity it belongs to and loads with weights_only=True."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import OmegaConf

from ..data import OFFICIAL
from ..errors import CheckpointError
from ..fileio import atomic_torch_save
from ..layout import CONFIG, MODEL
from ..models import ModelSpec
from ..pruning.dpm.shapes import restore_shapes
from .loop import FitState, Training

CHECKPOINT_FORMAT = 1


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


def load_pruned_model(path, map_location="cpu") -> nn.Module:
    """The model of a finished run, in its slimmed shapes, weights loaded, in eval mode.
    `path` is a run directory or its model.pt. Structural pruners save the model spec and the
    per-layer shapes in model.pt; for other runs the spec comes from the run's config.yaml."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    payload = torch.load(path, map_location=map_location, weights_only=True)
    architecture = payload.get("architecture")
    if architecture:
        spec = ModelSpec(**architecture["model"])
    else:
        config = OmegaConf.to_container(OmegaConf.load(path.parent / CONFIG), resolve=True)
        spec = ModelSpec.from_config(config["model"], OFFICIAL[config["data"]["name"]]["num_classes"])
    model = spec.build()
    if architecture:
        restore_shapes(model, architecture["layers"])
    model.load_state_dict(payload["model"])
    return model.to(map_location).eval()
