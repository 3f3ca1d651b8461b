import pytest
import torch
import torch.nn as nn

from prune_bench.pruning import MaskSet, select_prunable


def test_select_prunable_defaults_and_options():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    assert list(select_prunable(model)) == ["0.weight", "2.weight", "4.weight"]
    assert list(select_prunable(model, skip_first_conv=True)) == ["2.weight", "4.weight"]
    assert list(select_prunable(model, layers=("conv",), skip_last_linear=True)) == ["0.weight", "2.weight"]


def test_mask_set_zeroes_weights_grads_and_optimizer_state():
    torch.manual_seed(0)
    layer = nn.Linear(6, 3)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    layer(torch.randn(5, 6)).square().sum().backward()
    optimizer.step()  # creates momentum buffers
    mask = torch.rand(3, 6) > 0.5
    masks = MaskSet({"weight": layer.weight}, {"weight": mask})
    layer(torch.randn(5, 6)).square().sum().backward()
    masks.mask_grads_()
    masks.zero_optimizer_state_(optimizer)
    masks.apply_()
    assert torch.all(layer.weight[~mask] == 0) and torch.all(layer.weight.grad[~mask] == 0)
    assert torch.all(optimizer.state[layer.weight]["momentum_buffer"][~mask] == 0)
    assert torch.all(layer.weight[mask] != 0)
    assert masks.sparsity() == pytest.approx(int((~mask).sum()) / 18, abs=1e-12)
    restored = MaskSet({"weight": layer.weight})
    restored.load_state_dict(masks.state_dict())
    assert torch.equal(restored.masks["weight"], mask)
