"""One run, end to end: validate -> data -> identity -> (finished? report it) -> lock -> the
stages (stages.py) -> the pruner's finish -> evaluate -> record.json (atomic) -> one-line summary.

Bad input or an interruption before the run has a checkpoint or a record removes what it
created (workspace.py); any other exception leaves its reason in the run's failed.json. An
interruption (Ctrl-C) becomes an errors.Interrupted saying what is left on disk, read back from
the run's stages (a checkpoint's epoch, a finished shared stage), and what the same command does."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .. import layout
from ..config.validate import validate
from ..data import Augment, load_data
from ..errors import Interrupted, PruneBenchError
from ..fileio import atomic_write_json, atomic_write_text
from ..humanize import n_epochs
from ..identity import run_identity
from ..latency import UnstableLatencyWarning, compare_latency
from ..models import ModelSpec
from ..pruning import build_pruner
from ..targets import custom_sources, label
from .checkpoint import save_model
from .loggers import Sinks
from .loop import evaluate
from .peek import checkpoint_epoch
from .progress import Monitor, note_failure
from .record import build_record, history_metrics, history_result, summary
from .runtime import Runtime, configure_cuda_kernels, resolve_device
from .stages import Stage, StageRunner, plan_stages
from .workspace import Created, unwritable


def run(cfg: DictConfig, log=print) -> dict:
    """Run (or resume, or just report) the experiment `cfg` describes. Returns its record."""
    validate(cfg)
    device = resolve_device(str(cfg.trainer.device))
    if device.type == "cuda":
        configure_cuda_kernels(cfg.trainer)
    data = load_data(cfg.data, device)  # fails before any run folder exists
    run_dir = layout.run_dir(cfg, run_identity(cfg, data.info))
    record_path = run_dir / layout.RECORD
    if record_path.is_file():  # finished: nothing to write, so a read-only runs folder will do
        return already_done(record_path, log)
    runs_dir = layout.runs_root(cfg)
    pruner = build_pruner(cfg.pruner)
    sources = custom_sources(OmegaConf.to_container(cfg, resolve=True))  # the files the identity hashes
    stages = plan_stages(cfg, data.info, pruner)  # its schedule checked before anything is written
    created = Created()
    try:
        # one process per run at a time; an exception leaves its reason in failed.json (progress.py)
        with created.lock(layout.lock_path(run_dir)), note_failure(run_dir):
            if record_path.is_file():
                return already_done(record_path, log)
            return run_locked(cfg, data, device, pruner, stages, sources, created, log)
    except BaseException as error:
        problem = unwritable(error, runs_dir) if isinstance(error, OSError) else None
        # Bad input (a one-line error) or an interruption before anything was worth keeping
        # leaves nothing behind; a crash keeps its folder, whose failed.json says why.
        if problem or isinstance(error, (PruneBenchError, KeyboardInterrupt, SystemExit)):
            created.remove_unfinished()
        if problem:
            raise problem from None
        if isinstance(error, KeyboardInterrupt):
            raise interruption(stages) from None
        raise


def interruption(stages: list[Stage]) -> Interrupted:
    """What Ctrl-C left of a run, read back from its folders once what it had begun is removed:
    its record, the last stage with a checkpoint (its epoch) or a finished shared stage."""
    run_dir = stages[-1].directory
    if (run_dir / layout.RECORD).is_file():
        return Interrupted("interrupted after the run finished (its record is written)",
                           "run the same command to see its summary", run_dir, resumes=True)
    staged = len(stages) > 1
    for index in reversed(range(len(stages))):
        stage = stages[index]
        checkpoint = stage.directory / layout.CHECKPOINT
        done = checkpoint_epoch(checkpoint) if checkpoint.is_file() else None
        if done is not None:
            where = f" of stage {stage.name}" if staged else ""
            return Interrupted(f"interrupted after epoch {done} of {stage.epochs}{where}",
                               "run the same command to resume from it", run_dir, resumes=True)
        if stage.finished():  # a shared stage's output; the stage after it had no checkpoint yet
            following = stages[index + 1].name
            return Interrupted(f"interrupted in stage {following} before its first checkpoint; stage {stage.name} "
                               f"is saved", f"run the same command to start stage {following} from it", run_dir,
                               resumes=True)
    return Interrupted("interrupted before the first checkpoint; nothing was saved",
                       "run the same command to start again", run_dir)


def already_done(record_path: Path, log) -> dict:
    record = json.loads(record_path.read_text())
    log(f"already done: {summary(record)}")
    return record


def run_locked(cfg, data, device, pruner, stages: list[Stage], sources: dict, created: Created, log) -> dict:
    started = time.perf_counter()
    runtime = Runtime.from_config(cfg.trainer, device)
    last = stages[-1]
    run_dir = last.directory
    created.folder(run_dir)
    atomic_write_text(run_dir / layout.CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
    run_id = last.identity
    # progress.json for `prune-bench status`, progress lines, metric loggers (progress.py, loggers.py)
    sinks = Sinks(cfg.get("logger"), run_dir, run_id, OmegaConf.to_container(cfg, resolve=True))
    monitor = Monitor(run_dir, runtime.progress, log, sinks)
    log = monitor.say  # from here every line also goes to the run's log.txt
    try:
        if len(stages) == 1:
            plan = n_epochs(last.epochs)
        else:
            plan = "stages " + " -> ".join(f"{stage.name} ({n_epochs(stage.epochs) if stage.epochs else 'no training'})" for stage in stages)
        log(f"run {run_dir}: {label(cfg.model)} / {label(cfg.optimizer)} / {label(cfg.pruner)} on {data.info['label']} "
            f"({data.n_train} train images), {plan}, device {runtime.device}{' bf16' if runtime.bf16 else ''}")
        spec = ModelSpec.from_config(OmegaConf.to_container(cfg.model, resolve=True), data.num_classes)
        runner = StageRunner(spec, data, runtime, Augment.from_config(cfg.data), log, monitor)
        results = runner.run(stages, created)
        final = results[-1]
        metrics = history_metrics(history_result(results).state)
        if final.stage is last and final.state.diverged_step is None:
            stage_runtime = final.runtime or runtime
            metrics.update(pruner.finish(lambda candidate: evaluate(candidate, data, stage_runtime)))
            if cfg.pruner.name != "none":  # the pruner may have changed the weights after training
                metrics.update(evaluate(final.model, data, stage_runtime))
        record = build_record(cfg, data, runtime, results, pruner, metrics, run_id, run_dir, started, sources)
        if pruner.changes_shapes and record["status"] == "finished":
            record["latency"] = slimming_latency(cfg.latency, spec, final.model, final.runtime or runtime,
                                                 tuple(data.train_images.shape[1:]), monitor.detail)
        if cfg.trainer.save_model and record["status"] == "finished":
            architecture = final.architecture
            save_model(run_dir, final.model, architecture)
        atomic_write_json(run_dir / layout.RECORD, record)
        (run_dir / layout.CHECKPOINT).unlink(missing_ok=True)  # the record (and model.pt) supersede it
        log(summary(record))
        monitor.finish(record)
        return record
    finally:
        monitor.close()


def slimming_latency(section, spec: ModelSpec, slimmed, runtime: Runtime, image_shape: tuple[int, ...], log) -> dict:
    """Dense (the unpruned model of the run's spec) against slimmed forward time at each batch
    size of the `latency` section, on the run's device, in the precision and memory format the
    pruning stage trained in, the two timed in turns (latency.py). Per batch size: both
    measurements (median, its 95% interval, spread, repeats, threads) and the speed-up. An unstable
    measurement is said in log.txt (`log`) and marked "(unstable)" in the run's summary line."""
    with torch.random.fork_rng(devices=[]):  # the dense weights do not matter for its time
        torch.manual_seed(0)
        dense = runtime.place(spec.build())
    with warnings.catch_warnings(record=True) as unstable:
        warnings.simplefilter("always", UnstableLatencyWarning)
        comparisons = compare_latency(dense, slimmed, image_shape, runtime.device,
                                      tuple(section.batch_sizes), bf16=runtime.bf16,
                                      channels_last=runtime.channels_last, min_repeats=section.min_repeats,
                                      max_seconds=section.max_seconds, rel_tol=section.rel_tol)
    for warning in unstable:
        log(f"warning: {warning.message}")
    return {str(batch): comparison.as_dict() for batch, comparison in comparisons.items()}
