import torch
import torch.nn as nn

from prune_bench.metrics import count_params_macs, sparsity_summary
from prune_bench.models import build_model


def test_macs_of_a_hand_countable_net():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 32 * 32, 10))
    params, macs = count_params_macs(model)
    assert params == (3 * 4 * 9 + 4) + (4096 * 10 + 10)
    assert macs == 32 * 32 * 4 * 3 * 9 + 4096 * 10
    with torch.no_grad():
        model[0].weight[:2] = 0  # half the conv's filters
        model[3].weight[:, :1000] = 0
    params_nz, macs_nz = count_params_macs(model, sparse=True)
    assert params_nz == params - 2 * 27 - 10 * 1000
    assert macs_nz == 32 * 32 * 2 * 27 + 10 * (4096 - 1000)


def test_resnet56_macs_match_the_usual_figure():
    # About 125M MACs (conv + linear) for ResNet-56 on 32x32 inputs (DepGraph reports 125.49M).
    _, macs = count_params_macs(build_model("resnet56"))
    assert 124e6 < macs < 127e6


def test_macs_are_per_image():
    model = build_model("resnet20")
    assert count_params_macs(model, (4, 3, 32, 32)) == count_params_macs(model, (1, 3, 32, 32))


def test_sparsity_summary_counts_exact_zeros():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight[0] = 0  # 4 of 16
        model[1].bias.zero_()  # 2 biases, not prunable
    summary = sparsity_summary(model)
    assert summary["prunable"] == 4 / 24
    assert summary["all"] == 6 / (16 + 4 + 8 + 2)
    assert summary["per_layer"] == {"0.weight": 0.25, "1.weight": 0.0}
