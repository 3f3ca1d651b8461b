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

from omegaconf import OmegaConf, open_dict

from .paths import conf_dir

PARALLEL_LAUNCHERS = ("JoblibLauncher",)  # launchers that run several jobs on this machine


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _pool_jobs(device_pool, runs_per_gpu, gpus_per_job) -> int:
    """`${pool_jobs:...}`: how many jobs the pool can hold at once (joblib's n_jobs): devices x
    runs_per_gpu / gpus_per_job; 1 when there is no pool (CPU runs use every core each)."""
    if isinstance(device_pool, str) or device_pool is None:
        n_devices = _cuda_count() if device_pool == "auto" else 0
    else:
        n_devices = len(device_pool)
    return max(1, n_devices * int(runs_per_gpu) // max(1, int(gpus_per_job)))


OmegaConf.register_new_resolver("pool_jobs", _pool_jobs, replace=True)
# conf/hydra/launcher/joblib.yaml shares its name with the plugin's schema, so Hydra checks the
# preset against it (wanted) and warns that this matching is old-style (not wanted on every run).
warnings.filterwarnings("ignore", message=r"(?s).*hydra/launcher/joblib' is validated against ConfigStore schema")


def _launcher_name() -> str:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    return str(HydraConfig.get().launcher.get("_target_", "")).rsplit(".", 1)[-1]


def task(cfg, log=print) -> dict:
    """One job: devices from the pool when there is one, then experiment.run."""
    from .devices import DevicePool, pool_devices
    from .experiment import run

    devices = pool_devices(cfg.trainer, _launcher_name() in PARALLEL_LAUNCHERS, _cuda_count())
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
    every job shares) select. Returns Hydra's JobReturn per job. A job that raises is marked
    failed and the others go on (basic and joblib launchers); a scheduler's error about a job
    it lost (submitit) propagates."""
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext, RunMode
    from hydra.version import setbase

    setbase("1.3")
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2("prune-bench", create_config_search_path(str(conf_dir())))
    try:
        cfg = hydra.compose_config("config", overrides=list(overrides), run_mode=RunMode.MULTIRUN,
                                   with_log_configuration=True)
        context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(cfg))
        launcher = Plugins.instance().instantiate_launcher(
            config=cfg, hydra_context=context, task_function=task_function or task)
        return list(launcher.launch([list(job) for job in jobs], initial_job_idx=0))
    finally:
        GlobalHydra.instance().clear()
