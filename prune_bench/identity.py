"""A run's identity: a hash of its semantic config (the resolved config less the execution details
in NON_SEMANTIC_KEYS, with the precision it computes in on its device) and of what identifies its
data; a run with a custom component (`model=custom model.target=...`) also hashes the sha256 of
the file that defines each target, so an edited model is a new run, never a silent reuse. A
shared stage's identity hashes what that stage computes from (engine/stages.py says which
keys each kind covers). layout.py turns identities into folders."""

from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

from .engine.runtime import resolve_device, resolve_precision
from .targets import SECTIONS, custom_sources

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


def as_earlier_versions_hashed(tree: dict) -> None:
    """Keys that entered the config after runs were written without them, or left it after runs
    were written with them, are hashed so that those runs keep their folders (0.2):
    - data.mixup_alpha (new): left out at 0, which computes what runs before it computed;
    - pruner.otov2 (new): only the otov2 host reads it; left out for the other hosts;
    - pruner.latency_repeats (retired: the latency measurement has its own section, outside the
      identity): DPM runs before hashed it, at its default 5, so a DPM run's identity still does;
    - pruner.sr_rate_baseline and pruner.otov2.replacement (new): left out where they compute
      what runs before them computed: without SR, a baseline that is zero (auto is zero on the
      hosts other than OTOv2), and the replacement by score."""
    data = tree.get("data", {})
    if data.get("mixup_alpha") == 0:
        data.pop("mixup_alpha")
    pruner = tree.get("pruner", {})
    if pruner.get("name") == "dpm":
        if pruner.get("host") != "otov2":
            pruner.pop("otov2", None)
        pruner.setdefault("latency_repeats", 5)
        sr = pruner.get("decay") == "sp+sr"
        baseline = pruner.get("sr_rate_baseline")
        if not sr or baseline == "zero" or (baseline == "auto" and pruner.get("host") != "otov2"):
            pruner.pop("sr_rate_baseline", None)
        otov2 = pruner.get("otov2", {})
        if not sr or otov2.get("replacement") == "score":
            otov2.pop("replacement", None)


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


