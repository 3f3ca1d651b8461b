"""The resolvers the config tree uses, registered when this module is imported (config/compose.py
and scale/launch.py import it: every path that composes or launches a config)."""

from __future__ import annotations

import os

import torch
from omegaconf import OmegaConf


def expand_user(path) -> str:
    """`${expanduser:...}`: a runs folder given as ~/runs is the one in $HOME also where Hydra
    uses it (conf/config.yaml: hydra.sweep.dir), not a folder named ~."""
    return os.path.expanduser(str(path))


def cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def pool_jobs(device_pool, runs_per_gpu, gpus_per_job) -> int:
    """`${pool_jobs:...}`: how many jobs the device pool holds at once (joblib's n_jobs): devices x
    runs_per_gpu / gpus_per_job; 1 when there is no pool (CPU runs use every core each)."""
    if isinstance(device_pool, str) or device_pool is None:
        n_devices = cuda_count() if device_pool == "auto" else 0
    else:
        n_devices = len(device_pool)
    return max(1, n_devices * int(runs_per_gpu) // max(1, int(gpus_per_job)))


OmegaConf.register_new_resolver("expanduser", expand_user, replace=True)
OmegaConf.register_new_resolver("pool_jobs", pool_jobs, replace=True)
