"""A finished run's record (record.json): config, data, metrics, sparsity target vs achieved,
params and MACs, every stage, timings, device and versions, git sha, what each component is
called and, for custom components, their targets and source files; and its one-line summary."""

from __future__ import annotations

import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import hydra
import numpy
import torch
from omegaconf import OmegaConf

from .. import __version__, layout
from ..errors import PruneBenchError
from ..metrics import conv_linear_weights, count_params_macs, sparsity_summary
from ..targets import SECTIONS, keyword_arguments, label
from .stages import StageResult


def history_result(results: list[StageResult]) -> StageResult:
    """The stage whose history the record shows: the last one that trained (a one-shot pruner's
    prune stage trains no epoch; its record shows the shared training's)."""
    trained = [result for result in results if result.state.epoch]
    return trained[-1] if trained else results[-1]


def history_metrics(state) -> dict:
    evaluated = [h for h in state.history if "test_acc" in h]
    if not evaluated:
        return {}
    last = state.history[-1]
    return {
        "test_acc": evaluated[-1]["test_acc"],
        "test_loss": evaluated[-1]["test_loss"],
        "test_acc_trained": evaluated[-1]["test_acc"],  # after training, before the pruner's finish
        "best_test_acc": max(h["test_acc"] for h in evaluated),
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "epochs_run": state.epoch,
    }


def stage_summaries(results: list[StageResult]) -> dict:
    """Per stage: its folder, epochs, whether it was reused, its last test accuracy and training time."""
    summaries = {}
    for result in results:
        evaluated = [h for h in result.state.history if "test_acc" in h]
        summaries[result.stage.name] = {
            "kind": result.stage.kind, "dir": str(result.stage.directory), "epochs": result.state.epoch,
            "reused": result.reused, "test_acc": evaluated[-1]["test_acc"] if evaluated else None,
            "train_s": result.state.train_seconds,
            "channels_last": result.runtime.channels_last if result.runtime is not None else None,
        }
    return summaries


def checked_sparsity(model, pruner, report: dict, check: bool = True) -> dict:
    """Zero fractions (prunable set and all parameters) and the pruner's target, checked (a
    diverged run stopped before its target: not checked)."""
    prunable = getattr(pruner, "prunable", None) or conv_linear_weights(model)
    summary_ = sparsity_summary(model, prunable)
    target = report.get("target")
    summary_["target"] = target
    if target is not None and check:
        n_total = sum(p.numel() for p in prunable.values())
        gap_weights = abs(summary_["prunable"] - target) * n_total
        if gap_weights > len(prunable) + 0.5:  # more than one weight per layer: not rounding
            raise PruneBenchError(
                f"pruner: achieved sparsity {summary_['prunable']:.6f} misses the target {target} by "
                f"{gap_weights:.0f} weights over {len(prunable)} tensors; no record was written"
            )
    return summary_


def device_info(runtime, trainer) -> dict:
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


def versions() -> dict:
    return {
        "prune_bench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "hydra": hydra.__version__,
        "numpy": numpy.__version__,
    }


def git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "") if sha else None


def component_labels(config: dict) -> dict[str, str]:
    """What each component is called (targets.label): its name, or a custom one's target's name."""
    return {section: label(config[section]) for section in SECTIONS if section in config}


def record_labels(record: dict) -> dict[str, str]:
    """A record's `labels`; a record of an earlier version (0.2) has none: its config's names."""
    return record.get("labels") or component_labels(record["config"])


def target_entries(cfg, sources: dict[str, dict]) -> dict[str, dict]:
    """Per custom component: its target, the kwargs it was called with (none for a pruner, whose
    keys are its section's), the file that defines it and that file's sha256 (`sources`, read
    when the run's identity was taken)."""
    entries = {}
    for section, source in sources.items():
        entries[section] = {"target": source["target"], **({} if section == "pruner" else
                                                            {"kwargs": keyword_arguments(cfg[section])}),
                            "file": source["file"], "sha256": source["sha256"]}
    return entries


def build_record(cfg, data, runtime, results: list[StageResult], pruner, metrics: dict, run_id: str,
                 run_dir: Path, started: float, sources: dict[str, dict]) -> dict:
    last, shown = results[-1], history_result(results)
    status = "diverged" if last.state.diverged_step is not None else "finished"
    model = last.model
    report = pruner.report()
    params, macs = count_params_macs(model)
    nonzero_params, sparse_macs = count_params_macs(model, sparse=True)
    state = shown.state
    return {
        "status": status,
        "run_id": run_id,
        "run_dir": str(run_dir),
        "name": cfg.name or layout.run_label(cfg),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "labels": component_labels(cfg),
        "targets": target_entries(cfg, sources),
        "data": data.info,
        "metrics": metrics,
        "diverged_step": last.state.diverged_step,
        "sparsity": checked_sparsity(model, pruner, report, check=status == "finished"),
        "pruner": report,
        "params": params,
        "params_nonzero": nonzero_params,
        "macs": macs,
        "macs_sparse": sparse_macs,
        "history": state.history,
        "stages": stage_summaries(results),
        "trained_in": str(shown.stage.directory) if shown.stage.shared else None,
        "timing": {
            "train_s": state.train_seconds,
            "wall_s_this_process": time.perf_counter() - started,
            "images_per_s": state.images_seen / state.train_seconds if state.train_seconds else None,
            "resumed_after_epoch": shown.resumed_after or None,
            "reused_trained_model": shown.reused,
        },
        "device": device_info(runtime, cfg.trainer),
        "versions": versions(),
        "git_sha": git_sha(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def model_size(record: dict) -> str:
    """What the paper of the run's method reports about the model: a structured run's FLOPs and
    params as % of the original, its speed-up by the paper's counter and its measured latency; a
    sparse run's sparsity against its target; else params and MACs."""
    pruner, sparsity = record.get("pruner") or {}, record["sparsity"]
    if "flops_pct" in pruner:
        text = (f"FLOPs {pruner['flops_pct']:.1f}%, params {pruner['params_pct']:.1f}% of the original, "
                f"{pruner['speedup_achieved']:.2f}x ({pruner['counter']})")
        if pruner.get("group_sparsity_target") is not None:
            text += f", {pruner['groups']['removed']} groups removed (target {pruner['group_sparsity_target']:g})"
        latency = record.get("latency") or {}
        if latency:
            measured = ", ".join(f"{entry['speedup']:.2f}x at batch {batch}" + ("" if entry["stable"] else " (unstable)")
                                 for batch, entry in latency.items())
            text += f"; measured {measured}"
        return text
    text = f"{record['params'] / 1e6:.2f}M params, {record['macs'] / 1e6:.1f}M MACs"
    if sparsity.get("target") is not None:
        text += f", sparsity {100 * sparsity['prunable']:.2f}% (target {100 * sparsity['target']:g}%)"
    elif sparsity.get("prunable"):
        text += f", sparsity {100 * sparsity['prunable']:.2f}% (all params {100 * sparsity['all']:.2f}%)"
    return text


def summary(record: dict) -> str:
    """One line: what ran, how well, how big, how fast, where the record is."""
    config, metrics, labels = record["config"], record.get("metrics", {}), record_labels(record)
    head = (f"{record['status']} {labels['model']} / {labels['optimizer']} / {labels['pruner']} on "
            f"{record['data'].get('label', record['data'].get('dataset'))} seed {config['seed']}")
    if record["status"] == "diverged":
        result = f"non-finite loss at step {record['diverged_step']}"
    else:
        result = f"test {metrics.get('test_acc', float('nan')):.2f}%"
        if metrics.get("test_acc_trained") is not None and metrics["test_acc_trained"] != metrics.get("test_acc"):
            result += f" (trained {metrics['test_acc_trained']:.2f}%)"
        result += f" best {metrics.get('best_test_acc', float('nan')):.2f}%"
    size = model_size(record)
    timing = record["timing"]
    speed = f"{timing['train_s']:.0f}s training"
    if timing.get("reused_trained_model"):
        speed += " (earlier, shared)"
    if timing.get("images_per_s"):
        speed += f", {timing['images_per_s']:.0f} img/s"
    return f"{head}: {result} | {size} | {speed} | {Path(record['run_dir']) / layout.RECORD}"
