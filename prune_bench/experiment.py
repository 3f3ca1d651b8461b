"""One run, end to end: validate -> data -> identity -> (finished? print) -> build -> resume
-> fit -> pruner.finish -> evaluate -> record.json (atomic) -> one-line summary."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from . import __version__
from .config import resolve_device, run_identity, validate
from .data import data_label, load_data, steps_per_epoch
from .errors import PruneBenchError
from .fileio import atomic_torch_save, atomic_write_json, atomic_write_text
from .metrics import conv_linear_weights, count_params_macs, sparsity_summary
from .models import build_model
from .optim import build_optimizer, build_scheduler
from .pruning import TrainContext, build_pruner
from .train import FitState, Runtime, evaluate, fit, load_checkpoint, restore, save_checkpoint

RECORD = "record.json"
CHECKPOINT = "checkpoint.pt"


def run_label(cfg: DictConfig) -> str:
    return cfg.name or f"{cfg.model.name}_{cfg.optimizer.name}_{cfg.pruner.name}"


def run(cfg: DictConfig, log=print) -> dict:
    """Run (or resume, or just report) the experiment `cfg` describes. Returns its record."""
    validate(cfg)
    device = resolve_device(str(cfg.trainer.device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cfg.trainer.cudnn_benchmark)
    data = load_data(cfg.data, device)  # fails before any run directory exists
    data.info["label"] = data_label(data.info)
    run_id = run_identity(cfg, data.info)
    runs_dir = Path(os.path.expanduser(str(cfg.paths.runs_dir)))
    run_dir = runs_dir / f"{run_label(cfg)}-{run_id}"
    lock_dir = runs_dir / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"{run_dir.name}.lock")):  # one process per run at a time
        record_path = run_dir / RECORD
        if record_path.is_file():
            record = json.loads(record_path.read_text())
            log(f"already done: {summary(record)}")
            return record
        return _train_and_record(cfg, data, device, run_id, run_dir, log)


def _train_and_record(cfg, data, device, run_id: str, run_dir: Path, log) -> dict:
    started = time.perf_counter()
    runtime = Runtime.from_config(cfg.trainer, device)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only
    model = _to_device(build_model(cfg.model.name, data.num_classes, **_model_options(cfg.model)), runtime)
    n_steps = steps_per_epoch(data.n_train, cfg.trainer.batch_size)

    def rebuild(new_model):
        new_optimizer = build_optimizer(cfg.optimizer, new_model.parameters())
        return new_optimizer, build_scheduler(cfg.scheduler, new_optimizer, n_steps, cfg.trainer.epochs)

    optimizer, scheduler = rebuild(model)
    pruner = build_pruner(cfg.pruner)
    ctx = TrainContext(model, optimizer, data, n_steps, n_steps * cfg.trainer.epochs, cfg.seed, device)
    pruner.start(ctx)

    state = FitState()
    checkpoint_path = run_dir / CHECKPOINT
    if checkpoint_path.is_file():
        payload = load_checkpoint(checkpoint_path, run_id)
        if payload.get("architecture"):
            model = _to_device(pruner.restore_architecture(model, payload["architecture"]), runtime)
            optimizer, scheduler = rebuild(model)
            ctx.model, ctx.optimizer = model, optimizer
        state = restore(payload, model, optimizer, scheduler, pruner)
        log(f"resuming {run_dir} after epoch {state.epoch} of {cfg.trainer.epochs}")
    resumed_after = state.epoch

    def checkpoint(model_now, optimizer_now, scheduler_now, state_now):
        if cfg.trainer.checkpoint:
            save_checkpoint(checkpoint_path, model_now, optimizer_now, scheduler_now, pruner, state_now, run_id)

    log(f"run {run_dir}: {cfg.model.name} / {cfg.optimizer.name} / {cfg.pruner.name} on "
        f"{data.info['label']} ({data.n_train} train images), {cfg.trainer.epochs} epochs, "
        f"device {device}{' bf16' if runtime.bf16 else ''}")
    model, state = fit(
        model, optimizer, scheduler, pruner, ctx, data, cfg.trainer, cfg.seed, bool(cfg.data.augment),
        runtime, state, checkpoint=checkpoint, rebuild=rebuild, log=log,
    )

    metrics = _history_metrics(state)
    status = "finished"
    if state.diverged_step is not None:
        status = "diverged"
    else:
        def evaluate_model(candidate):
            return evaluate(candidate, data, runtime)

        metrics.update(pruner.finish(evaluate_model))
        if cfg.pruner.name != "none":  # the pruner may have changed the weights after training
            metrics.update(evaluate_model(ctx.model))
            model = ctx.model
    report = pruner.report()
    sparsity = _sparsity(model, pruner, report)
    params, macs = count_params_macs(model)
    nonzero_params, sparse_macs = count_params_macs(model, sparse=True)
    record = {
        "status": status,
        "run_id": run_id,
        "run_dir": str(run_dir),
        "name": run_label(cfg),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "data": data.info,
        "metrics": metrics,
        "diverged_step": state.diverged_step,
        "sparsity": sparsity,
        "pruner": report,
        "params": params,
        "params_nonzero": nonzero_params,
        "macs": macs,
        "macs_sparse": sparse_macs,
        "history": state.history,
        "timing": {
            "train_s": state.train_seconds,
            "wall_s_this_process": time.perf_counter() - started,
            "images_per_s": state.images_seen / state.train_seconds if state.train_seconds else None,
            "resumed_after_epoch": resumed_after or None,
        },
        "device": _device_info(device, runtime, cfg.trainer),
        "versions": _versions(),
        "git_sha": _git_sha(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if cfg.trainer.save_model and status == "finished":
        atomic_torch_save({"model": model.state_dict(), "architecture": pruner.architecture()},
                          run_dir / "model.pt")
    atomic_write_json(run_dir / RECORD, record)
    checkpoint_path.unlink(missing_ok=True)  # the record (and model.pt) supersede it
    log(summary(record))
    return record


def _to_device(model, runtime: Runtime):
    model = model.to(runtime.device)
    return model.to(memory_format=torch.channels_last) if runtime.channels_last else model


def _model_options(model_cfg) -> dict:
    return {k: v for k, v in OmegaConf.to_container(model_cfg, resolve=True).items() if k != "name"}


def _history_metrics(state: FitState) -> dict:
    evaluated = [h for h in state.history if "test_acc" in h]
    if not evaluated:
        return {}
    last = state.history[-1]
    return {
        "test_acc": evaluated[-1]["test_acc"],
        "test_loss": evaluated[-1]["test_loss"],
        "test_acc_trained": evaluated[-1]["test_acc"],  # before pruner.finish
        "best_test_acc": max(h["test_acc"] for h in evaluated),
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "epochs_run": state.epoch,
    }


def _sparsity(model, pruner, report: dict) -> dict:
    """Zero fractions (prunable set and all parameters) and the pruner's target, checked."""
    prunable = getattr(pruner, "prunable", None) or conv_linear_weights(model)
    summary_ = sparsity_summary(model, prunable)
    target = report.get("target")
    summary_["target"] = target
    if target is not None:
        n_total = sum(p.numel() for p in prunable.values())
        gap_weights = abs(summary_["prunable"] - target) * n_total
        if gap_weights > len(prunable) + 0.5:  # more than one weight per layer: not rounding
            raise PruneBenchError(
                f"pruner: achieved sparsity {summary_['prunable']:.6f} misses the target {target} by "
                f"{gap_weights:.0f} weights over {len(prunable)} tensors; no record was written"
            )
    return summary_


def _device_info(device: torch.device, runtime: Runtime, trainer) -> dict:
    info = {
        "type": device.type,
        "name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "bf16": runtime.bf16,
        "channels_last": runtime.channels_last,
        "compile": bool(trainer.compile),
        "cpu_threads": torch.get_num_threads(),
    }
    return info


def _versions() -> dict:
    import hydra
    import numpy

    return {
        "prune_bench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "hydra": hydra.__version__,
        "numpy": numpy.__version__,
    }


def _git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "") if sha else None


def summary(record: dict) -> str:
    """One line: what ran, how well, how big, how fast, where the record is."""
    config, metrics = record["config"], record.get("metrics", {})
    head = (f"{record['status']} {config['model']['name']} / {config['optimizer']['name']} / "
            f"{config['pruner']['name']} on {record['data'].get('label', record['data'].get('dataset'))} "
            f"seed {config['seed']}")
    if record["status"] == "diverged":
        result = f"non-finite loss at step {record['diverged_step']}"
    else:
        result = f"test {metrics.get('test_acc', float('nan')):.2f}%"
        if metrics.get("test_acc_trained") is not None and metrics["test_acc_trained"] != metrics.get("test_acc"):
            result += f" (trained {metrics['test_acc_trained']:.2f}%)"
        result += f" best {metrics.get('best_test_acc', float('nan')):.2f}%"
    sparsity = record["sparsity"]
    size = f"{record['params'] / 1e6:.2f}M params, {record['macs'] / 1e6:.1f}M MACs"
    if sparsity.get("prunable"):
        size += f", sparsity {100 * sparsity['prunable']:.2f}% (all params {100 * sparsity['all']:.2f}%)"
    timing = record["timing"]
    speed = f"{timing['train_s']:.0f}s training"
    if timing.get("images_per_s"):
        speed += f", {timing['images_per_s']:.0f} img/s"
    return f"{head}: {result} | {size} | {speed} | {Path(record['run_dir']) / RECORD}"
