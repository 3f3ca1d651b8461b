"""The two things prune-bench needs from Hydra that Hydra offers no public function for, kept
here so that no other module touches `hydra._internal`:

- expanding a sweep (`seed=1,2,3 model=a,b`) into its jobs in the order Hydra's basic sweeper
  runs them: `compose` checks every job of `prune-bench run -m` before Hydra starts any, and a
  paper's grid is the union of such expansions;
- handing an explicit list of jobs to the launcher a config selects (basic, joblib, submitit):
  `prune-bench reproduce` launches only the cells that have no record yet, which is no sweep
  Hydra's `@hydra.main` could express.

Both lean on Hydra 1.3's internals (BasicSweeper.split_arguments, Hydra.create_main_hydra2,
Callbacks, create_config_search_path); a Hydra upgrade that moves them breaks only this file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hydra._internal.callbacks import Callbacks
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, RunMode
from hydra.version import setbase


def sweep_jobs(parsed_overrides) -> list[list[str]]:
    """Every job of a sweep (parsed overrides, hydra.core.override_parser), as override lists."""
    return [job for batch in BasicSweeper.split_arguments(parsed_overrides, None) for job in batch]


def launch_jobs(config_dir: str, jobs: Sequence[Sequence[str]], overrides: Sequence[str],
                task_function: Callable) -> list:
    """Run `jobs` (override lists) through the launcher that `overrides` select, each job calling
    `task_function(cfg)`. Returns Hydra's JobReturn per job."""
    setbase("1.3")
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2("prune-bench", create_config_search_path(config_dir))
    try:
        cfg = hydra.compose_config("config", overrides=list(overrides), run_mode=RunMode.MULTIRUN,
                                   with_log_configuration=True)
        context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(cfg))
        launcher = Plugins.instance().instantiate_launcher(
            config=cfg, hydra_context=context, task_function=task_function)
        return list(launcher.launch([list(job) for job in jobs], initial_job_idx=0))
    finally:
        GlobalHydra.instance().clear()
