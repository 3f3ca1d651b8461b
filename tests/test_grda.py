"""gRDA (Chao et al. 2020; docs/methods/grda2020.md): the optimizer against hand-computed values and
closed forms, its state, its config checks, the paper's lr schedule and the experiments."""

import copy
import io
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import OmegaConf

from conftest import config_problems, lr_factors, make_config
from prune_bench.config.validate import validate
from prune_bench.engine import run as experiment
from prune_bench.engine import stages
from prune_bench.errors import ConfigError
from prune_bench.models import build_model
from prune_bench.optim import GRDA, build_optimizer


def quiet(message):
    pass


pytestmark = pytest.mark.usefixtures("one_thread")


def small_net() -> nn.Module:
    """Conv (with bias) + BN + linear: every kind of parameter gRDA must act on."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def batches(n: int):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, 6, 6, generator=generator), torch.randint(0, 5, (8,), generator=generator))
            for _ in range(n)]


def train(model, optimizer, data, scheduler=None):
    for images, labels in data:
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def soft_threshold(values: torch.Tensor, threshold: float) -> torch.Tensor:
    """The paper's sign(a) * max(|a| - lambda, 0), written out independently of the optimizer."""
    return torch.sign(values) * torch.clamp(values.abs() - threshold, min=0)


# ----------------------------------------------------------------------------- the update


def test_c_zero_is_plain_sgd_bitwise_for_100_steps():
    ours, reference = small_net(), small_net()
    grda = GRDA(ours.parameters(), lr=0.05, c=0.0, mu=0.6)
    sgd = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0)
    for step, (images, labels) in enumerate(batches(100)):
        train(ours, grda, [(images, labels)])
        train(reference, sgd, [(images, labels)])
        for mine, theirs in zip(ours.parameters(), reference.parameters()):
            assert torch.equal(mine, theirs), f"differs at step {step + 1}"
    assert grda.param_groups[0]["n_steps"] == 100 and grda.param_groups[0]["threshold"] == 0.0


def test_hand_computed_three_steps():
    # lr 0.25, mu 0.5, c 0.4: c * lr^(mu + 1/2) = 0.1, so lambda_n = 0.1 * sqrt(n) (telescoping).
    weight = nn.Parameter(torch.tensor([0.5, -0.3, 0.05, 0.0]))
    optimizer = GRDA([weight], lr=0.25, c=0.4, mu=0.5)
    grads = [[1.0, -1.0, 0.2, 0.0], [0.4, -0.4, -0.4, 0.4], [-0.4, 0.8, -0.8, 0.8]]
    expected = [
        # a1 = [0.25, -0.05, 0, 0], lambda1 = 0.1
        [0.15, 0.0, 0.0, 0.0],
        # a2 = [0.15, 0.05, 0.1, -0.1], lambda2 = 0.1414214: only the first survives
        [0.15 - 0.1414214, 0.0, 0.0, 0.0],
        # a3 = [0.25, -0.15, 0.3, -0.3], lambda3 = 0.1732051: the accumulator kept moving while
        # the weights were zero, so entries 3 and 4 come back (dual averaging)
        [0.25 - 0.1732051, 0.0, 0.3 - 0.1732051, -0.3 + 0.1732051],
    ]
    thresholds = [0.1, 0.1414214, 0.1732051]
    for grad, weights, threshold in zip(grads, expected, thresholds):
        weight.grad = torch.tensor(grad)
        optimizer.step()
        assert weight.tolist() == pytest.approx(weights, abs=1e-6)
        assert optimizer.param_groups[0]["threshold"] == pytest.approx(threshold, abs=1e-7)
    assert optimizer.state[weight]["accumulator"].tolist() == pytest.approx([0.25, -0.15, 0.3, -0.3])


@pytest.mark.parametrize("mu", [0.51, 0.7])
def test_constant_lr_threshold_is_the_closed_form(mu):
    lr, c, n = 0.1, 1e-3, 2000
    initial = torch.linspace(-0.2, 0.2, 41)
    weight = nn.Parameter(initial.clone())
    optimizer = GRDA([weight], lr=lr, c=c, mu=mu)
    for _ in range(n):
        weight.grad = torch.zeros_like(weight)
        optimizer.step()
    expected = c * math.sqrt(lr) * (n * lr) ** mu  # lambda_n = c gamma^(1/2) (n gamma)^mu
    threshold = optimizer.param_groups[0]["threshold"]
    assert threshold == pytest.approx(expected, rel=1e-5)
    assert torch.equal(weight.detach(), soft_threshold(initial, threshold))  # what was applied
    assert 0 < (weight == 0).sum() < weight.numel()


def test_changing_lr_threshold_is_the_sum_of_increments():
    c, mu, base_lr, n = 2e-3, 0.6, 0.1, 60
    initial = torch.linspace(-0.3, 0.3, 25)
    grad = torch.linspace(-1.0, 1.0, 25)
    weight = nn.Parameter(initial.clone())
    optimizer = GRDA([weight], lr=base_lr, c=c, mu=mu)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step // 10))
    lrs, threshold = [], 0.0
    for k in range(1, n + 1):
        lr = optimizer.param_groups[0]["lr"]
        lrs.append(lr)
        threshold += c * lr ** (mu + 0.5) * (k**mu - (k - 1) ** mu)
        weight.grad = grad.clone()
        optimizer.step()
        schedule.step()
    assert len(set(lrs)) == 6
    assert optimizer.param_groups[0]["threshold"] == pytest.approx(threshold, rel=1e-6)
    # Not the closed form at the first or the last lr: the current lr enters every increment.
    for lr in (lrs[0], lrs[-1]):
        assert abs(c * math.sqrt(lr) * (n * lr) ** mu - threshold) > 0.05 * threshold
    accumulator = initial - grad * sum(lrs)
    assert weight.detach() == pytest.approx(soft_threshold(accumulator, threshold), rel=1e-6, abs=1e-7)


def test_matches_a_per_tensor_reference_with_two_groups_and_a_schedule():
    # The paper's update written per tensor (as the authors' code loops), with lambda in float64,
    # against the foreach version: two parameter groups with their own c and mu, a changing lr.
    model = small_net()
    conv_and_bn = list(model[0].parameters()) + list(model[1].parameters())
    groups = [{"params": conv_and_bn, "c": 0.02, "mu": 0.55}, {"params": list(model[4].parameters())}]
    optimizer = GRDA(groups, lr=0.1, c=0.05, mu=0.7)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step)
    reference = [{"c": 0.02, "mu": 0.55, "threshold": 0.0, "tensors": [p.detach().clone() for p in conv_and_bn]},
                 {"c": 0.05, "mu": 0.7, "threshold": 0.0,
                  "tensors": [p.detach().clone() for p in model[4].parameters()]}]
    generator = torch.Generator().manual_seed(3)
    for n in range(1, 31):
        lr = optimizer.param_groups[0]["lr"]
        for group, ref in zip(optimizer.param_groups, reference):
            ref["threshold"] += ref["c"] * lr ** (ref["mu"] + 0.5) * (n ** ref["mu"] - (n - 1) ** ref["mu"])
            for param, accumulator in zip(group["params"], ref["tensors"]):
                param.grad = torch.randn(param.shape, generator=generator)
                accumulator -= lr * param.grad
        optimizer.step()
        schedule.step()
    for group, ref in zip(optimizer.param_groups, reference):
        assert group["threshold"] == pytest.approx(ref["threshold"], rel=1e-6)
        for param, accumulator in zip(group["params"], ref["tensors"]):
            assert param.detach() == pytest.approx(soft_threshold(accumulator, ref["threshold"]), abs=1e-6)
    assert 0 < sum(int((p == 0).sum()) for p in model.parameters()) < sum(p.numel() for p in model.parameters())


def test_every_parameter_is_thresholded_biases_and_batchnorm_included():
    model = small_net()
    optimizer = GRDA(model.parameters(), lr=0.1, c=100.0, mu=0.6)  # lambda_1 = 100 * 0.1^1.1 > |w|
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    names = [name for name, _ in model.named_parameters()]
    assert {"0.bias", "1.weight", "1.bias", "4.bias"} <= set(names)
    assert all(torch.count_nonzero(p) == 0 for p in model.parameters())


def test_state_dict_round_trip_mid_run_continues_bitwise():
    data = batches(14)
    model = small_net()
    optimizer = GRDA(model.parameters(), lr=0.1, c=0.05, mu=0.6)
    train(model, optimizer, data[:7])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # as checkpoints are loaded
    resumed, fresh = small_net(), small_net()
    resumed.load_state_dict(saved["model"])
    fresh.load_state_dict(saved["model"])
    resumed_optimizer = GRDA(resumed.parameters(), lr=0.1, c=0.05, mu=0.6)
    resumed_optimizer.load_state_dict(saved["optimizer"])
    fresh_optimizer = GRDA(fresh.parameters(), lr=0.1, c=0.05, mu=0.6)  # without the state
    for target, opt in ((model, optimizer), (resumed, resumed_optimizer), (fresh, fresh_optimizer)):
        train(target, opt, data[7:])
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    for key in ("n_steps", "threshold"):
        assert optimizer.param_groups[0][key] == resumed_optimizer.param_groups[0][key]
    assert optimizer.param_groups[0]["n_steps"] == 14
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))


def test_threshold_is_float32_and_applied_without_rounding():
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = GRDA([weight], lr=0.1, c=0.01, mu=0.6)
    for _ in range(37):
        weight.grad = torch.zeros(1)
        optimizer.step()
    threshold = optimizer.param_groups[0]["threshold"]
    assert torch.tensor(threshold, dtype=torch.float32).item() == threshold  # a float32 value
    assert weight.item() == (torch.tensor(1.0) - torch.tensor(threshold, dtype=torch.float32)).item()


def test_constructor_rejects_bad_hyperparameters():
    weight = nn.Parameter(torch.zeros(2))
    for kwargs, message in (({"lr": 0.0}, "lr"), ({"c": -1e-3}, "c must"), ({"mu": 0.0}, "mu must")):
        with pytest.raises(ValueError, match=message):
            GRDA([weight], **kwargs)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("override, key", [
    ("optimizer.c=-0.001", "optimizer.c"),
    ("optimizer.mu=0", "optimizer.mu"),
    ("optimizer.mu=-0.5", "optimizer.mu"),
    ("optimizer.lr=0", "optimizer.lr"),
])
def test_bad_grda_config_is_one_line_naming_the_key(override, key):
    lines = config_problems(["optimizer=grda", override])
    assert len(lines) == 1 and lines[0].startswith(f"{key}: must be")


def test_mu_outside_the_papers_range_warns_and_continues(capsys):
    validate(make_config(["optimizer=grda", "optimizer.mu=0.4"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optimizer.mu=0.4" in err[0] and "0.5 < mu < 1" in err[0]
    validate(make_config(["optimizer=grda", "optimizer.mu=0.6"]))
    assert capsys.readouterr().err == ""


def test_the_registry_builds_grda_from_its_config():
    cfg = make_config(["optimizer=grda", "optimizer.c=0.002", "optimizer.mu=0.55"]).optimizer
    optimizer = build_optimizer(cfg, [nn.Parameter(torch.zeros(3))])
    assert isinstance(optimizer, GRDA)
    assert {k: optimizer.param_groups[0][k] for k in ("lr", "c", "mu")} == {"lr": 0.1, "c": 0.002, "mu": 0.55}


# ----------------------------------------------------------------------------- schedule


def epoch_factors(cfg: dict, steps_per_epoch: int, epochs: int) -> list[float]:
    return lr_factors(cfg, steps_per_epoch, epochs)[::steps_per_epoch]


def test_schedule_numbers_epochs_from_one_as_the_authors():
    # The authors' train.py: alpha = epoch / E for epoch = 1..E; 1 while alpha <= 0.5, then
    # 1 - (alpha - 0.5) / 0.4 * 0.99, then 0.01 after alpha = 0.9. E = 10:
    expected = [1, 1, 1, 1, 1, 0.7525, 0.505, 0.2575, 0.01, 0.01]
    cfg = OmegaConf.to_container(make_config(["scheduler=grda"]).scheduler)
    assert cfg["first_epoch"] == 1 and cfg["per_epoch"] is True
    assert epoch_factors(cfg, steps_per_epoch=3, epochs=10) == pytest.approx(expected)


def test_schedule_first_epoch_must_be_zero_or_one():
    with pytest.raises(ConfigError, match="scheduler.first_epoch: must be 0 or 1, got 2"):
        validate(make_config(["scheduler=grda", "scheduler.first_epoch=2"]))


# ----------------------------------------------------------------------------- experiments


PAIRS = [("grda2020_vgg16", "grda2020_vgg16_sgd"), ("grda2020_wrn28_10", "grda2020_wrn28_10_sgd"),
         ("grda2020_quick", "grda2020_quick_sgd")]


@pytest.mark.parametrize("grda_exp, sgd_exp", PAIRS)
def test_each_grda_experiment_and_its_baseline_differ_only_in_the_optimizer(grda_exp, sgd_exp):
    grda = OmegaConf.to_container(make_config([f"+exp={grda_exp}"]), resolve=True)
    sgd = OmegaConf.to_container(make_config([f"+exp={sgd_exp}"]), resolve=True)
    assert grda["optimizer"]["name"] == "grda" and grda["optimizer"]["lr"] == 0.1
    assert sgd["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
    assert grda["scheduler"]["name"] == "grda_piecewise" and grda["trainer"]["batch_size"] == 128
    for tree in (grda, sgd):
        del tree["optimizer"], tree["name"]
    assert grda == sgd


def test_the_papers_settings():
    vgg = make_config(["+exp=grda2020_vgg16"])
    wrn100 = make_config(["+exp=grda2020_wrn28_10", "data=cifar100", "optimizer.mu=0.501"])
    assert (vgg.model.name, vgg.data.name, vgg.trainer.epochs, vgg.optimizer.c) == ("vgg16", "cifar10", 600, 5e-4)
    assert (wrn100.model.name, wrn100.data.name, wrn100.trainer.epochs) == ("wrn28_10", "cifar100", 200)
    assert (wrn100.optimizer.c, wrn100.optimizer.mu) == (1e-3, 0.501)
    assert wrn100.name == "grda2020_wrn28_10_cifar100_grda_c0.001_mu0.501"


class Captured(Exception):
    pass


def initial_weights(overrides: list[str], monkeypatch) -> tuple[dict, torch.optim.Optimizer]:
    """The model and optimizer exactly as the experiment hands them to the training loop."""
    seen = {}

    def capture(training, *args, **kwargs):
        seen["weights"] = {k: v.clone() for k, v in training.model.state_dict().items()}
        seen["optimizer"] = training.optimizer
        raise Captured

    monkeypatch.setattr(stages, "train_epoch", capture)
    with pytest.raises(Captured):
        experiment.run(make_config(overrides), log=quiet)
    return seen["weights"], seen["optimizer"]


def test_sgd_baseline_and_grda_start_from_identical_weights(tmp_path, monkeypatch):
    common = ["data=synthetic", "data.synthetic.train_size=100", "data.synthetic.test_size=50",
              "trainer.epochs=1", "trainer.progress=none", f"paths.runs_dir={tmp_path / 'runs'}"]
    grda, grda_optimizer = initial_weights(["+exp=grda2020_vgg16", *common], monkeypatch)
    sgd, sgd_optimizer = initial_weights(["+exp=grda2020_vgg16_sgd", *common], monkeypatch)
    other_seed, _ = initial_weights(["+exp=grda2020_vgg16_sgd", "seed=2", *common], monkeypatch)
    assert isinstance(grda_optimizer, GRDA) and type(sgd_optimizer) is torch.optim.SGD
    assert grda.keys() == sgd.keys() and all(torch.equal(grda[k], sgd[k]) for k in grda)
    assert not torch.equal(grda["features.0.weight"], other_seed["features.0.weight"])  # the test can fail


def test_exact_zeros_are_the_records_sparsity(tiny_overrides):
    # 4 steps at lr 0.1: lambda = 0.5 * 0.1^0.5 * 0.4^0.6 = 0.091, comparable with ResNet-20's weights
    overrides = [*tiny_overrides, "trainer.epochs=1", "optimizer=grda", "optimizer.c=0.5"]
    record = experiment.run(make_config(overrides), log=quiet)
    model = build_model("resnet20")
    model.load_state_dict(torch.load(Path(record["run_dir"]) / "model.pt", weights_only=True)["model"])
    parameters = list(model.parameters())
    zeros = sum(int((p == 0).sum()) for p in parameters)
    assert record["status"] == "finished"
    assert record["sparsity"]["all"] == zeros / sum(p.numel() for p in parameters) > 0.3
    assert record["params_nonzero"] == record["params"] - zeros
    assert record["history"][-1]["zeros_all"] == record["sparsity"]["all"]  # logged every epoch


def test_parameters_without_a_gradient_are_left_alone():
    model = small_net()
    frozen = copy.deepcopy(model[4].weight.detach())
    optimizer = GRDA(model.parameters(), lr=0.1, c=0.05, mu=0.6)
    model[4].weight.requires_grad_(False)
    train(model, optimizer, batches(3))
    assert torch.equal(model[4].weight, frozen) and model[4].weight not in optimizer.state
