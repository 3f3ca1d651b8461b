"""Jobs -> a Hydra launcher. The launcher is whatever the config selects (hydra/launcher=basic,
joblib, slurm, ...): prune-bench schedules nothing itself.

`task(cfg)` is what every job runs, under `prune-bench run` and `prune-bench reproduce` alike:
it takes devices from the file-locked pool when jobs run side by side on one machine
(devices.py), then runs the experiment. `launch(jobs, overrides)` hands an explicit list of jobs
(each a list of overrides) to the selected launcher: a sweep expanded by the basic sweeper is a
cartesian product, while a paper's grid is a union of products less its finished cells.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from ..config.hydra_private import launch_jobs
from ..config.resolvers import cuda_count
from ..config.shipped import conf_dir
from ..config.user import search_path_overrides
from ..engine.run import run
from .devices import DevicePool, pool_devices

PARALLEL_LAUNCHERS = ("JoblibLauncher",)  # launchers that run several jobs on this machine

# conf/hydra/launcher/joblib.yaml shares its name with the plugin's schema, so Hydra checks the
# preset against it (wanted) and warns that this matching is old-style (not wanted on every run).
warnings.filterwarnings("ignore", message=r"(?s).*hydra/launcher/joblib' is validated against ConfigStore schema")


def launcher_name() -> str:
    if not HydraConfig.initialized():
        return ""
    return str(HydraConfig.get().launcher.get("_target_", "")).rsplit(".", 1)[-1]


def task(cfg, log=print) -> dict:
    """One job: devices from the pool when there is one, then engine.run.run."""
    devices = pool_devices(cfg.trainer, launcher_name() in PARALLEL_LAUNCHERS, cuda_count())
    if not devices:
        return run(cfg, log=log)
    pool = DevicePool(devices, cfg.trainer.runs_per_gpu, cfg.paths.device_locks)
    with pool.acquire(cfg.trainer.gpus_per_job, log=log) as held:
        log(f"device pool: this job holds {', '.join(held)} (pid {os.getpid()})")
        with open_dict(cfg):
            cfg.trainer.device = held[0]
        return run(cfg, log=log)


def launch(jobs: Sequence[Sequence[str]], overrides: Sequence[str], task_function=None) -> list:
    """Run `jobs` (override lists) through the launcher that `overrides` (Hydra's and the ones
    every job shares) select, the user's config folders on the search path. Returns Hydra's JobReturn per job. A job that raises is marked
    failed and the others go on (basic and joblib launchers); a scheduler's error about a job
    it lost (submitit) propagates."""
    return launch_jobs(str(conf_dir()), jobs, [*search_path_overrides(), *overrides], task_function or task)
