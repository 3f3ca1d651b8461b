import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from prune_bench.optim import StochGradAdam


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))


def train(model, optimizer, steps: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 10, generator=generator), torch.randint(0, 3, (16,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, False), (1e-2, False), (1e-2, True)])
def test_rate_one_is_adam(weight_decay, decoupled):
    reference, ours = small_model(), small_model()
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    train(reference, kind(reference.parameters(), lr=3e-3, weight_decay=weight_decay), 50)
    train(ours, StochGradAdam(ours.parameters(), lr=3e-3, sampling_rate=1.0, weight_decay=weight_decay,
                              decoupled_weight_decay=decoupled), 50)
    for a, b in zip(reference.parameters(), ours.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # float32 rounding (bitwise on CPU here)


def test_fraction_updated_in_step_one_is_the_sampling_rate():
    rate, n = 0.8, 200_000
    weight = nn.Parameter(torch.zeros(n))
    optimizer = StochGradAdam([weight], lr=1e-3, sampling_rate=rate, generator=torch.Generator().manual_seed(0))
    weight.grad = torch.ones(n)
    optimizer.step()
    updated = float((weight != 0).float().mean())
    sigma = math.sqrt(rate * (1 - rate) / n)
    assert abs(updated - rate) < 4 * sigma
    # Step 1 of Adam moves every sampled coordinate by exactly lr (m_hat / sqrt(v_hat) = 1).
    assert torch.allclose(weight[weight != 0], torch.full((1,), -1e-3), rtol=1e-4)


def test_masked_gradient_feeds_both_moments_without_rescaling():
    weight = nn.Parameter(torch.zeros(64))
    optimizer = StochGradAdam([weight], lr=0.1, betas=(0.5, 0.75), sampling_rate=0.5,
                              generator=torch.Generator().manual_seed(3))
    weight.grad = torch.arange(1.0, 65.0)
    optimizer.step()
    kept = weight != 0
    assert 0 < int(kept.sum()) < 64
    state = optimizer.state[weight]
    phi = weight.grad * kept  # no 1/rate factor
    assert torch.equal(state["exp_avg"], 0.5 * phi)
    assert torch.allclose(state["exp_avg_sq"], 0.25 * phi**2)


def test_hold_leaves_masked_moments_and_weights_alone():
    weight = nn.Parameter(torch.zeros(1000))
    optimizer = StochGradAdam([weight], lr=0.1, sampling_rate=0.5, masked_moments="hold",
                              generator=torch.Generator().manual_seed(0))
    weight.grad = torch.ones(1000)
    optimizer.step()
    first = (weight != 0).clone()
    state = optimizer.state[weight]
    assert torch.all(state["exp_avg"][~first] == 0) and torch.all(state["exp_avg_sq"][~first] == 0)
    before, moments = weight.detach().clone(), state["exp_avg"].clone()
    optimizer.step()
    moved = weight != before
    held = ~moved
    assert torch.equal(state["exp_avg"][held], moments[held])  # untouched where masked
    assert 0.4 < float(moved.float().mean()) < 0.6


def test_same_seed_is_bitwise_equal_and_another_seed_is_not():
    runs = []
    for seed in (7, 7, 8):
        model = small_model()
        train(model, StochGradAdam(model.parameters(), sampling_rate=0.5,
                                   generator=torch.Generator().manual_seed(seed)), 20)
        runs.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_state_dict_round_trip_continues_the_mask_stream_bitwise():
    whole = small_model()
    optimizer = StochGradAdam(whole.parameters(), sampling_rate=0.6, generator=torch.Generator().manual_seed(5))
    train(whole, optimizer, 10, seed=1)
    train(whole, optimizer, 10, seed=2)

    half = small_model()
    first = StochGradAdam(half.parameters(), sampling_rate=0.6, generator=torch.Generator().manual_seed(5))
    train(half, first, 10, seed=1)
    saved_model, saved_optimizer = half.state_dict(), first.state_dict()
    resumed_model = small_model()
    resumed_model.load_state_dict(saved_model)
    second = StochGradAdam(resumed_model.parameters(), sampling_rate=0.6,
                           generator=torch.Generator().manual_seed(999))  # overwritten by the state
    second.load_state_dict(saved_optimizer)
    train(resumed_model, second, 10, seed=2)
    for a, b in zip(whole.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_invalid_arguments():
    weight = nn.Parameter(torch.zeros(2))
    for kwargs in ({"sampling_rate": 0.0}, {"sampling_rate": 1.5}, {"lr": 0.0}, {"masked_moments": "x"}):
        with pytest.raises(ValueError):
            StochGradAdam([weight], **kwargs)
