import pytest

from conftest import lr_factors


def test_multistep_fractions_fall_on_epoch_boundaries():
    cfg = {"name": "multistep", "milestones": [0.5, 0.75], "milestones_unit": "fraction", "gamma": 0.1}
    values = lr_factors(cfg, steps_per_epoch=3, epochs=8)  # drops after epochs 4 and 6
    assert values[:12] == [1.0] * 12
    assert values[12:18] == pytest.approx([0.1] * 6)
    assert values[18:] == pytest.approx([0.01] * 6)


def test_multistep_fraction_halves_round_up():
    cfg = {"name": "multistep", "milestones": [0.5], "milestones_unit": "fraction", "gamma": 0.1}
    assert lr_factors(cfg, 1, 5) == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1])  # 2.5 -> after epoch 3


def test_multistep_epoch_milestones():
    cfg = {"name": "multistep", "milestones": [2], "milestones_unit": "epoch", "gamma": 0.5}
    assert lr_factors(cfg, 2, 3) == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]


def test_cosine_per_iteration():
    values = lr_factors({"name": "cosine", "final_factor": 0.0}, steps_per_epoch=2, epochs=2)
    assert values == pytest.approx([1.0, 0.853553, 0.5, 0.146447], abs=1e-6)


def test_grda_piecewise_schedule():
    # docs/methods/grda2020.md: 1 while e/E <= 0.5, linear to 0.01 at e/E = 0.9, then 0.01; here with
    # epochs numbered from 0 (the authors' numbering from 1 is tested in test_grda.py).
    cfg = {"name": "grda_piecewise", "hold": 0.5, "end": 0.9, "final_factor": 0.01, "per_epoch": True,
           "first_epoch": 0}
    per_epoch = lr_factors(cfg, steps_per_epoch=2, epochs=10)[::2]
    expected = [1, 1, 1, 1, 1, 1, 1 - 0.99 * 0.25, 1 - 0.99 * 0.5, 1 - 0.99 * 0.75, 0.01]
    assert per_epoch == pytest.approx(expected)
    values = lr_factors(cfg, steps_per_epoch=2, epochs=10)
    assert values[12] == values[13]  # held within an epoch
