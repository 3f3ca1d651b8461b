"""One run, end to end: validate -> data -> identity -> (finished? print) -> build -> resume
-> fit -> pruner.finish -> (fine-tune) -> evaluate -> record.json (atomic) -> one-line summary.

Pruners that act only after training (one-shot) share the trained dense model: it lives in
runs/.trained/<hash of the config without its pruner section>, trained once under a file lock,
so a sweep over pruning levels trains once and prunes many times, even with concurrent jobs.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from . import __version__
from .config import resolve_device, run_identity, validate
from .data import DeviceData, data_label, load_data, steps_per_epoch
from .errors import CheckpointError, PruneBenchError
from .fileio import atomic_torch_save, atomic_write_json, atomic_write_text
from .loggers import Sinks
from .metrics import conv_linear_weights, count_params_macs, sparsity_summary
from .models import build_model
from .optim import build_optimizer, build_scheduler
from .progress import Monitor, n_epochs, note_failure
from .pruning import NoPruner, Pruner, TrainContext, build_pruner
from .train import (
    FitState,
    Runtime,
    configure_cuda_kernels,
    evaluate,
    fit,
    load_checkpoint,
    restore,
    save_checkpoint,
)
from .workspace import Created, unwritable

RECORD = "record.json"
CHECKPOINT = "checkpoint.pt"
TRAINED = "trained.pt"  # a finished shared training: final weights and its FitState


@dataclass
class Trained:
    model: torch.nn.Module
    state: FitState
    ctx: TrainContext
    resumed_after: int  # epochs already done when this process started (0: from scratch)
    shared_dir: Path | None = None  # where a shared dense training lives
    reused: bool = False  # the shared training was already finished


def run_label(cfg: DictConfig) -> str:
    """The directory prefix says what ran (an experiment's name may no longer, after overrides)."""
    return f"{cfg.model.name}_{cfg.optimizer.name}_{cfg.pruner.name}"


def run(cfg: DictConfig, log=print) -> dict:
    """Run (or resume, or just report) the experiment `cfg` describes. Returns its record.
    Bad input or an interruption before the run has a checkpoint or a record removes what it
    created (workspace.py); any other exception leaves its reason in the run's failed.json."""
    validate(cfg)
    device = resolve_device(str(cfg.trainer.device))
    if device.type == "cuda":
        configure_cuda_kernels(cfg.trainer)
    data = load_data(cfg.data, device)  # fails before any run directory exists
    data.info["label"] = data_label(data.info)
    run_id = run_identity(cfg, data.info)
    runs_dir = Path(os.path.expanduser(str(cfg.paths.runs_dir)))
    run_dir = runs_dir / f"{run_label(cfg)}-{run_id}"
    if (run_dir / RECORD).is_file():  # finished: nothing to write, so a read-only runs folder will do
        return _already_done(run_dir / RECORD, log)
    created = Created()
    try:
        # one process per run at a time; an exception leaves its reason in failed.json (progress.py)
        with created.lock(runs_dir / ".locks", run_dir.name), note_failure(run_dir):
            if (run_dir / RECORD).is_file():
                return _already_done(run_dir / RECORD, log)
            return _run_locked(cfg, data, device, run_id, runs_dir, run_dir, created, log)
    except BaseException as error:
        problem = unwritable(error, runs_dir) if isinstance(error, OSError) else None
        # Bad input (a one-line error) or an interruption before anything was worth keeping
        # leaves nothing behind; a crash keeps its folder, whose failed.json says why.
        if problem or isinstance(error, (PruneBenchError, KeyboardInterrupt, SystemExit)):
            created.remove_unfinished()
        if problem:
            raise problem from None
        raise


def _already_done(record_path: Path, log) -> dict:
    record = json.loads(record_path.read_text())
    log(f"already done: {summary(record)}")
    return record


def _run_locked(cfg, data: DeviceData, device, run_id: str, runs_dir: Path, run_dir: Path,
                  created: Created, log) -> dict:
    started = time.perf_counter()
    runtime = Runtime.from_config(cfg.trainer, device)
    pruner = build_pruner(cfg.pruner)
    pruner.plan(steps_per_epoch(data.n_train, cfg.trainer.batch_size) * cfg.trainer.epochs)
    created.folder(run_dir)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    # progress.json for `prune-bench status`, progress lines, metric loggers (progress.py, loggers.py)
    monitor = Monitor(run_dir, runtime.progress == "lines", log,
                      Sinks(cfg.get("logger"), run_dir, run_id, OmegaConf.to_container(cfg, resolve=True)))
    try:
        if pruner.staged:  # pretrain -> sparse stage -> fine-tune with pruning (DPM): stages.py
            from .stages import run_stages

            trained = run_stages(cfg, data, runtime, pruner, run_dir, run_id, created, log, monitor)
        elif pruner.acts_during_training:
            monitor.start(run_dir)
            trained = train(cfg, data, runtime, pruner, run_dir, run_id, log, monitor=monitor)
        else:
            train_id = run_identity(cfg, data.info, drop=("pruner",))
            shared_dir = runs_dir / ".trained" / f"{cfg.model.name}_{cfg.optimizer.name}-{train_id}"
            monitor.start(shared_dir)
            with created.lock(runs_dir / ".locks", f"trained-{train_id}"):  # concurrent sweep jobs train it once
                created.folder(shared_dir)
                trained = train(cfg, data, runtime, NoPruner(), shared_dir, train_id, log, shared=True,
                                monitor=monitor)
            pruner.start(trained.ctx)
        record = _finish_and_record(cfg, data, runtime, pruner, trained, run_id, run_dir, started, log)
        monitor.finish(record)
        return record
    finally:
        monitor.close()


def _model_options(model_cfg) -> dict:
    return {k: v for k, v in OmegaConf.to_container(model_cfg, resolve=True).items() if k != "name"}


def _to_device(model, runtime: Runtime):
    model = model.to(runtime.device)
    return model.to(memory_format=torch.channels_last) if runtime.channels_last else model


def train(cfg, data: DeviceData, runtime: Runtime, pruner: Pruner, directory: Path, run_id: str,
          log, shared: bool = False, monitor: Monitor | None = None) -> Trained:
    """Train (or resume, or for a finished shared training just load) the model in `directory`."""
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only
    model = _to_device(build_model(cfg.model.name, data.num_classes, **_model_options(cfg.model)), runtime)
    n_steps = steps_per_epoch(data.n_train, cfg.trainer.batch_size)

    def rebuild(new_model):
        new_optimizer = build_optimizer(cfg.optimizer, new_model.parameters())
        return new_optimizer, build_scheduler(cfg.scheduler, new_optimizer, n_steps, cfg.trainer.epochs)

    optimizer, scheduler = rebuild(model)
    ctx = TrainContext(model, optimizer, data, n_steps, n_steps * cfg.trainer.epochs, cfg.seed, runtime.device)
    if shared and (directory / TRAINED).is_file():
        payload = _load(directory / TRAINED, run_id)
        model.load_state_dict(payload["model"])
        log(f"reusing the trained model in {directory} (trained once; pruning only)")
        return Trained(model, FitState(**payload["state"]), ctx, 0, directory, reused=True)

    pruner.start(ctx)
    directory.mkdir(parents=True, exist_ok=True)
    state = FitState()
    checkpoint_path = directory / CHECKPOINT
    if checkpoint_path.is_file():
        payload = load_checkpoint(checkpoint_path, run_id)
        if payload.get("architecture"):
            model = _to_device(pruner.restore_architecture(model, payload["architecture"]), runtime)
            optimizer, scheduler = rebuild(model)
            ctx.model, ctx.optimizer = model, optimizer
        state = restore(payload, model, optimizer, scheduler, pruner)
        log(f"resuming {directory} after epoch {state.epoch} of {cfg.trainer.epochs}")
    resumed_after = state.epoch

    def checkpoint(model_now, optimizer_now, scheduler_now, state_now):
        if cfg.trainer.checkpoint:
            save_checkpoint(checkpoint_path, model_now, optimizer_now, scheduler_now, pruner, state_now, run_id)

    log(f"{'training (shared) in' if shared else 'run'} {directory}: {cfg.model.name} / {cfg.optimizer.name} / "
        f"{cfg.pruner.name} on {data.info['label']} ({data.n_train} train images), "
        f"{n_epochs(cfg.trainer.epochs)}, device {runtime.device}{' bf16' if runtime.bf16 else ''}")
    model, state = fit(
        model, optimizer, scheduler, pruner, ctx, data, cfg.trainer, cfg.seed, bool(cfg.data.augment),
        runtime, state, checkpoint=checkpoint, rebuild=rebuild, log=log, monitor=monitor,
    )
    if shared:
        atomic_torch_save({"run_id": run_id, "model": model.state_dict(), "state": asdict(state)},
                          directory / TRAINED)
        checkpoint_path.unlink(missing_ok=True)
    return Trained(model, state, ctx, resumed_after, directory if shared else None)


def _load(path: Path, run_id: str) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} cannot be read ({type(error).__name__}); delete it to train again") from None
    if payload.get("run_id") != run_id:
        raise CheckpointError(f"{path} belongs to {payload.get('run_id')}, not {run_id}; delete it to train again")
    return payload


def finetune(cfg, data: DeviceData, runtime: Runtime, pruner: Pruner, model, log) -> FitState:
    """Train `pruner.finetune_epochs` more epochs with the pruner's hooks active (a mask pruner
    holds its mask): a fresh optimizer at lr x finetune_lr_factor, constant schedule."""
    epochs = pruner.finetune_epochs
    optimizer_cfg = OmegaConf.merge(cfg.optimizer, {"lr": cfg.optimizer.lr * cfg.pruner.finetune_lr_factor})
    optimizer = build_optimizer(optimizer_cfg, model.parameters())
    n_steps = steps_per_epoch(data.n_train, cfg.trainer.batch_size)
    scheduler = build_scheduler(OmegaConf.create({"name": "constant"}), optimizer, n_steps, epochs)
    pruner.ctx.optimizer = optimizer
    trainer = OmegaConf.merge(cfg.trainer, {"epochs": epochs, "eval_every": 1})
    log(f"fine-tuning {n_epochs(epochs)} at lr {optimizer_cfg.lr:g} with the mask held")
    _, state = fit(model, optimizer, scheduler, pruner, pruner.ctx, data, trainer, cfg.seed + 1,
                   bool(cfg.data.augment), runtime, FitState(), log=log)
    return state


def _finish_and_record(cfg, data, runtime, pruner: Pruner, trained: Trained, run_id: str,
                       run_dir: Path, started: float, log) -> dict:
    state, model = trained.state, trained.model
    metrics = _history_metrics(state)
    finetune_history = None
    status = "finished"
    if state.diverged_step is not None:
        status = "diverged"
    else:
        def evaluate_model(candidate):
            return evaluate(candidate, data, runtime)

        metrics.update(pruner.finish(evaluate_model))
        model = pruner.ctx.model  # a structural pruner may have replaced it
        if pruner.finetune_epochs:
            finetune_history = finetune(cfg, data, runtime, pruner, model, log).history
        if cfg.pruner.name != "none":  # the pruner may have changed the weights after training
            metrics.update(evaluate_model(model))
    report = pruner.report()
    sparsity = _sparsity(model, pruner, report)
    params, macs = count_params_macs(model)
    nonzero_params, sparse_macs = count_params_macs(model, sparse=True)
    record = {
        "status": status,
        "run_id": run_id,
        "run_dir": str(run_dir),
        "name": cfg.name or run_label(cfg),
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
        "finetune_history": finetune_history,
        "trained_in": str(trained.shared_dir) if trained.shared_dir else None,
        "timing": {
            "train_s": state.train_seconds,
            "wall_s_this_process": time.perf_counter() - started,
            "images_per_s": state.images_seen / state.train_seconds if state.train_seconds else None,
            "resumed_after_epoch": trained.resumed_after or None,
            "reused_trained_model": trained.reused,
        },
        "device": _device_info(runtime, cfg.trainer),
        "versions": _versions(),
        "git_sha": _git_sha(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if cfg.trainer.save_model and status == "finished":
        atomic_torch_save({"model": model.state_dict(), "architecture": pruner.architecture()},
                          run_dir / "model.pt")
    atomic_write_json(run_dir / RECORD, record)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)  # the record (and model.pt) supersede it
    log(summary(record))
    return record


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


def _device_info(runtime: Runtime, trainer) -> dict:
    device = runtime.device
    return {
        "type": device.type,
        "name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "bf16": runtime.bf16,
        "channels_last": runtime.channels_last,
        "compile": bool(trainer.compile),
        "deterministic": bool(trainer.deterministic) and device.type == "cuda",
        "cpu_threads": torch.get_num_threads(),
    }


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
    if timing.get("reused_trained_model"):
        speed += " (earlier, shared)"
    if timing.get("images_per_s"):
        speed += f", {timing['images_per_s']:.0f} img/s"
    return f"{head}: {result} | {size} | {speed} | {Path(record['run_dir']) / RECORD}"
