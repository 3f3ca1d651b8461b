import pytest
import torch

from prune_bench.errors import ConfigError
from prune_bench.models import MODELS, build_model
from prune_bench.models.cifar_resnet import cifar_resnet


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, expected, tolerance",
    [
        ("resnet20", 0.27e6, 0.02),  # He et al. 2016, Table 6
        ("resnet56", 0.85e6, 0.02),
        ("resnet110", 1.7e6, 0.02),
        ("resnet50", 23.5e6, 0.01),  # CIFAR ResNet-50 (FGGP)
    ],
)
def test_parameter_counts_match_the_literature(name, expected, tolerance):
    assert abs(n_params(build_model(name)) - expected) / expected < tolerance


def test_exact_counts():
    # He et al.'s option-A nets, gRDA's WRN-28-10 with conv biases, and 6n+2 with n = 25.
    assert n_params(build_model("resnet20")) == 269_722
    assert n_params(build_model("resnet56")) == 853_018
    assert n_params(build_model("wrn28_10")) == 36_489_290
    assert n_params(build_model("resnet152")) == 2_408_474


def test_depth_is_a_parameter_of_one_family():
    # 6n+2: every 6 layers add 3 blocks; the count grows linearly in n.
    counts = [n_params(build_model(f"resnet{d}")) for d in (20, 32, 44)]
    assert counts[2] - counts[1] == counts[1] - counts[0]


def test_shortcut_b_adds_projections_only():
    a, b = build_model("resnet56", shortcut="A"), build_model("resnet56", shortcut="B")
    # Two projections: 16->32 and 32->64 (1x1 conv + BN).
    assert n_params(b) - n_params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_vgg_variants():
    vgg16 = build_model("vgg16")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in vgg16.modules())
    linears = [m for m in vgg16.classifier if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 512), (512, 10)]
    vgg19 = build_model("vgg19_bn")
    convs = [m for m in vgg19.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 16 and all(c.bias is not None for c in convs)
    assert isinstance(vgg19.features[-1], torch.nn.AvgPool2d)
    assert isinstance(vgg19.classifier, torch.nn.Linear)


NEEDS = {"custom": {"target": "custom_parts:SmallNet"}}  # a model of one's own (tests/custom_parts.py)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_a_cifar_batch_to_logits(name):
    model = build_model(name, num_classes=100, **NEEDS.get(name, {})).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_bottleneck_resnet152_option():
    model = build_model("resnet152", block="bottleneck")
    assert 58e6 < n_params(model) < 59e6  # ImageNet ResNet-152 (60.2M) minus its 7x7 stem and 1000-way fc


def test_unknown_model_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="model.name: unknown model 'resnet57'; allowed: resnet20"):
        build_model("resnet57")
    with pytest.raises(ConfigError, match="6n\\+2"):
        cifar_resnet(57)
