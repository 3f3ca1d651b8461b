"""Run identity and data labels: what is computed decides the directory and the table cell."""

import pytest
import torch

from conftest import make_config
from prune_bench import layout
from prune_bench.data import data_label
from prune_bench.engine.runtime import resolve_precision
from prune_bench.engine.stages import plan_stages
from prune_bench.identity import run_identity
from prune_bench.pruning import build_pruner

INFO = {"dataset": "cifar10", "format": "synthetic", "n_train": 200, "n_test": 100}
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def identity(*overrides, device=None):
    cfg = make_config(list(overrides))
    return run_identity(cfg, INFO) if device is None else run_identity(cfg, INFO, device=device)


def test_precision_is_part_of_the_identity():
    # bf16 and fp32 compute different numbers: they must not share a run directory
    assert identity("trainer.precision=fp32") != identity("trainer.precision=bf16")


def test_the_identity_uses_the_resolved_precision_not_the_setting():
    # `auto` is bf16 on CUDA and fp32 on CPU (engine.runtime): the identity follows what runs
    assert resolve_precision("auto", CPU) == "fp32" and resolve_precision("auto", CUDA) == "bf16"
    assert resolve_precision("bf16", CPU) == "bf16" and resolve_precision("fp32", CUDA) == "fp32"
    auto_cpu = identity("trainer.precision=auto", device=CPU)
    auto_cuda = identity("trainer.precision=auto", device=CUDA)
    assert auto_cpu != auto_cuda
    assert auto_cpu == identity("trainer.precision=fp32", device=CPU)
    assert auto_cuda == identity("trainer.precision=bf16", device=CUDA)


def test_the_device_stays_out_of_the_identity():
    assert identity("trainer.precision=bf16", device=CPU) == identity("trainer.precision=bf16", device=CUDA)
    assert identity("trainer.device=cpu", device=CPU) == identity("trainer.device=auto", device=CPU)


def test_the_data_label_names_a_test_subset():
    full = {"dataset": "cifar10", "format": "jpeg", "n_train": 50000, "n_test": 10000}
    assert data_label(full) == "cifar10-jpeg"
    assert data_label({**full, "n_train": 5000}) == "cifar10-jpeg-n5000"
    assert data_label({**full, "n_test": 1000}) == "cifar10-jpeg-test1000"
    assert data_label({**full, "n_train": 5000, "n_test": 1000}) == "cifar10-jpeg-n5000-test1000"


def jpeg(n_train, n_test):
    return {"dataset": "cifar10", "format": "jpeg", "n_train": n_train, "n_test": n_test}


SGA_QUICK = ["+exp=resnet56_sga", "model=resnet20", "data=cifar10_jpeg", "data.train_per_class=1000",
             "data.test_per_class=500", "trainer.epochs=4"]
# Folders the previous release (0.1) wrote for these commands (its quick figures, docs/measurements.md):
# a runs folder of it stays usable only if this version finds its runs under the same names.
EARLIER_FOLDERS = [
    (["+exp=smoke"], {"dataset": "cifar10", "format": "synthetic", "n_train": 2000, "n_test": 500},
     "resnet20_sgd_none-1708f9125be1", []),
    (["+exp=resnet20_sgd_quick", "trainer.epochs=1", "data.train_per_class=1000"], jpeg(10000, 10000),
     "resnet20_sgd_none-5e343945ba54", []),
    (SGA_QUICK, jpeg(10000, 5000), "resnet20_sga_magnitude-eb9dcd836452", [".trained/resnet20_sga-48aa5d91e591"]),
    (["+exp=fggp2024_quick"], jpeg(5000, 10000), "resnet20_sgd_fggp-d45f20817448", []),
    (["+exp=grda2020_quick"], jpeg(5000, 2000), "resnet20_grda_none-1ecd6dc19981", []),
    *[(["+exp=dpm2024_quick", f"pruner.decay={decay}"], jpeg(5000, 10000), folder,
       [".trained/resnet20_sgd-1bf444e4913b", ".trained/resnet20_depgraph-sparse-7453f3bdd023"])
      for decay, folder in (("none", "resnet20_sgd_dpm-6ea617ee6365"), ("sp", "resnet20_sgd_dpm-4a4ee507551c"),
                            ("sp+sr", "resnet20_sgd_dpm-f9a4900b0864"))],
]


@pytest.mark.parametrize("overrides, info, folder, shared", EARLIER_FOLDERS, ids=lambda v: v if isinstance(v, str) else None)
def test_the_runs_an_earlier_version_wrote_keep_their_folders(overrides, info, folder, shared):
    cfg = make_config(overrides)
    stages = plan_stages(cfg, info, build_pruner(cfg.pruner))
    runs = layout.runs_root(cfg)
    assert stages[-1].directory == runs / folder
    assert [stage.directory for stage in stages[:-1]] == [runs / path for path in shared]


def test_otov2_sr_with_its_earlier_settings_keeps_its_folder_and_the_new_defaults_get_another():
    """SR on OTOv2 now compares C_rate with SP's own step and replaces by cost (docs/methods/dpm2024.md,
    "Self-Rectifying on OTOv2"): those runs compute something new and must not reuse the earlier
    folder; set back to the earlier behaviour, a run finds it."""
    otov2 = ["+exp=dpm2024_quick_otov2", "pruner.decay=sp+sr"]
    earlier = make_config([*otov2, "pruner.sr_rate_baseline=zero", "pruner.otov2.replacement=score"])
    now = make_config(otov2)
    info = jpeg(5000, 10000)
    assert plan_stages(earlier, info, build_pruner(earlier.pruner))[-1].directory.name == "resnet20_sgd_dpm-17354baa50a3"
    assert plan_stages(now, info, build_pruner(now.pruner))[-1].directory.name == "resnet20_sgd_dpm-0467ff45e493"
    # without SR the new keys change nothing, so they stay out of the identity
    for decay in ("none", "sp"):
        assert identity("pruner=dpm", "model.shortcut=B", "pruner.host=otov2", "pruner.sparse_learning=false",
                        f"pruner.decay={decay}", "pruner.otov2.replacement=score") == \
            identity("pruner=dpm", "model.shortcut=B", "pruner.host=otov2", "pruner.sparse_learning=false",
                     f"pruner.decay={decay}", "pruner.otov2.replacement=cost")
