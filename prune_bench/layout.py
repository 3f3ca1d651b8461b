"""Run identity and every path under a runs folder: nothing else in the project builds these names.

    runs/
      <model>_<optimizer>_<pruner>-<run id>/   a run's own folder, where its last stage trains:
                                               config.yaml, log.txt, progress.json, checkpoint.pt
                                               (while training), then record.json and model.pt;
                                               failed.json after a crash
      .trained/<label>-<stage id>/             a stage shared by every run whose stages begin the
                                               same way: checkpoint.pt while training, then trained.pt
      .locks/<folder name>.lock                one process per folder at a time
      .multirun/                               Hydra's sweep logs

A run's identity is a hash of its semantic config (the resolved config less the execution details
in NON_SEMANTIC_KEYS, with the precision it computes in on its device) and of what identifies its
data; a run with a custom component (`model=custom model.target=...`) also hashes the sha256 of
the file that defines each target, so an edited model is a new run, never a silent reuse. A
shared stage's identity hashes what that stage computes from (engine/stages.py says which keys
each kind covers), so two runs whose stages begin alike share those folders.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .engine.runtime import resolve_device, resolve_precision
from .targets import SECTIONS, custom_sources, label

RECORD = "record.json"
CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"
STAGE_OUTPUT = "trained.pt"  # a finished shared stage: its final weights, shapes and FitState
MODEL = "model.pt"
PROGRESS = "progress.json"
FAILED = "failed.json"
LOG = "log.txt"
SHARED = ".trained"
LOCKS = ".locks"
SWEEPS = ".multirun"
WORTH_KEEPING = (RECORD, CHECKPOINT, STAGE_OUTPUT, MODEL)  # a folder holding one is never removed

# Keys that change where or how a run executes, not what it computes: left out of its identity.
# trainer.precision is not one of them (bf16 and fp32 compute different numbers): the identity
# holds what it resolves to on the device, so `auto` on a GPU shares a run with `bf16`, and
# `auto` on CPU one with `fp32`.
NON_SEMANTIC_KEYS = (
    "name",
    "paths",
    "trainer.device",
    "trainer.channels_last",
    "trainer.compile",
    "trainer.cudnn_benchmark",
    "trainer.deterministic",
    "trainer.progress",
    "trainer.eval_batch_size",
    "trainer.checkpoint",
    "trainer.save_model",
    "trainer.gpus_per_job",
    "trainer.runs_per_gpu",
    "trainer.device_pool",
    "logger",
    "latency",
    "data.root",
    "data.cache_dir",
    "data.path",
    "data.download",
    "data.sha256",
)


# ----------------------------------------------------------------------------- identity


def as_earlier_versions_hashed(tree: dict) -> None:
    """Keys that entered the config after runs were written without them, or left it after runs
    were written with them, are hashed so that those runs keep their folders (0.2):
    - data.mixup_alpha (new): left out at 0, which computes what runs before it computed;
    - pruner.otov2 (new): only the otov2 host reads it; left out for the other hosts;
    - pruner.latency_repeats (retired: the latency measurement has its own section, outside the
      identity): DPM runs before hashed it, at its default 5, so a DPM run's identity still does."""
    data = tree.get("data", {})
    if data.get("mixup_alpha") == 0:
        data.pop("mixup_alpha")
    pruner = tree.get("pruner", {})
    if pruner.get("name") == "dpm":
        if pruner.get("host") != "otov2":
            pruner.pop("otov2", None)
        pruner.setdefault("latency_repeats", 5)


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.get(key, {})
    if isinstance(tree, dict):
        tree.pop(leaf, None)


def semantic_config(cfg: DictConfig, drop: tuple[str, ...] = (), device=None) -> dict:
    """The resolved config without execution details (and without the `drop` keys), with the
    precision it computes in on `device` (default: the device trainer.device resolves to)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    tree.pop("hydra", None)
    device = resolve_device(str(cfg.trainer.device)) if device is None else device
    tree["trainer"]["precision"] = resolve_precision(cfg.trainer.precision, device)
    for key in NON_SEMANTIC_KEYS + tuple(drop):
        _drop(tree, key)
    as_earlier_versions_hashed(tree)
    return tree


def config_hash(tree: dict, length: int = 12) -> str:
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def data_fingerprint(info: dict) -> dict:
    """What identifies the data a run saw, whatever path it was read from."""
    return {key: info.get(key) for key in ("dataset", "format", "n_train", "n_test")}


def source_digests(cfg: DictConfig, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The sha256 of the file defining each custom component's target (less the `drop` sections);
    empty for a run of built-in components."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    sources = custom_sources(tree, tuple(section for section in SECTIONS if section not in drop))
    return {section: source["sha256"] for section, source in sources.items()}


def run_identity(cfg: DictConfig, data_info: dict, drop: tuple[str, ...] = (), device=None) -> str:
    """The hash of the semantic config (less `drop`) and the data's fingerprint, and for a run
    with custom components of their source files' digests (source_digests)."""
    identity = {"config": semantic_config(cfg, drop, device), "data": data_fingerprint(data_info)}
    sources = source_digests(cfg, drop)
    if sources:  # only then: the runs of built-in components keep the identity they always had
        identity["sources"] = sources
    return config_hash(identity)


# ----------------------------------------------------------------------------- paths


def runs_root(cfg: DictConfig) -> Path:
    return Path(os.path.expanduser(str(cfg.paths.runs_dir)))


def results_root(cfg: DictConfig) -> Path:
    return Path(os.path.expanduser(str(cfg.paths.results_dir)))


def run_label(cfg: DictConfig) -> str:
    """The run folder's prefix says what ran (an experiment's name may no longer, after overrides);
    a custom component by its target's name (targets.label)."""
    return f"{label(cfg.model)}_{label(cfg.optimizer)}_{label(cfg.pruner)}"


def run_dir(cfg: DictConfig, data_info: dict) -> Path:
    return runs_root(cfg) / f"{run_label(cfg)}-{run_identity(cfg, data_info)}"


def shared_dir(runs_dir: Path, label: str, identity: str) -> Path:
    """A shared stage's folder: `label` says what it trains (e.g. resnet56_sgd, resnet56_depgraph-sparse)."""
    return Path(runs_dir) / SHARED / f"{label}-{identity}"


def runs_dir_of(folder: Path) -> Path:
    """The runs folder a run folder or a shared stage folder lives in."""
    folder = Path(folder)
    return folder.parent.parent if folder.parent.name == SHARED else folder.parent


def is_shared(folder: Path) -> bool:
    return Path(folder).parent.name == SHARED


def lock_path(folder: Path) -> Path:
    """The lock file that one process holds while it works in `folder` (a run's or a shared stage's)."""
    return runs_dir_of(folder) / LOCKS / f"{Path(folder).name}.lock"


def sweep_dir(runs_dir: Path) -> Path:
    return Path(runs_dir) / SWEEPS


def is_run_dir(path: Path) -> bool:
    """A run's own folder (not a shared stage, a lock or a sweep log)."""
    path = Path(path)
    return path.is_dir() and not path.name.startswith(".") and any(
        (path / name).exists() for name in (CONFIG, RECORD, PROGRESS, FAILED, CHECKPOINT))


def record_paths(runs_dir: Path) -> list[Path]:
    """Every record.json under a runs folder (its run folders, and any folder of runs below it)."""
    return sorted(Path(runs_dir).glob(f"**/{RECORD}"))
