"""Run identity and data labels: what is computed decides the directory and the table cell."""

import torch

from conftest import make_config
from prune_bench.data import data_label
from prune_bench.layout import run_identity

INFO = {"dataset": "cifar10", "format": "synthetic", "n_train": 200, "n_test": 100}
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def identity(*overrides, device=None):
    cfg = make_config(list(overrides))
    return run_identity(cfg, INFO) if device is None else run_identity(cfg, INFO, device=device)


def test_precision_is_part_of_the_identity():
    # bf16 and fp32 compute different numbers: they must not share a run directory
    assert identity("trainer.precision=fp32") != identity("trainer.precision=bf16")


def test_the_identity_uses_the_resolved_precision_not_the_setting():
    # `auto` is bf16 on CUDA and fp32 on CPU (train.Runtime): the identity follows what runs
    from prune_bench.engine.runtime import resolve_precision

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
