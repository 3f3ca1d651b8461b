"""The typed config: every section's keys and types, unknown keys named with the closest valid one."""

import dataclasses

import pytest

from conftest import make_config
from prune_bench.config.compose import compose_config
from prune_bench.config.shipped import conf_dir
from prune_bench.config.validate import validate
from prune_bench.errors import ConfigError
from prune_bench.pruning import custom_pruner_schema

NEEDS_SECTION = {"name": "custom", "target": "custom_parts:HalfOfEachLayer"}


def problems(*overrides) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate(make_config(list(overrides)))
    return str(caught.value).splitlines()


@pytest.mark.parametrize("override, message", [
    ("data.augment=no", "data.augment: must be true or false, got 'no'"),
    ("optimizer.nesterov=maybe", "optimizer.nesterov: must be true or false, got 'maybe'"),
    ("trainer.compile=1", "trainer.compile: must be true or false, got 1"),
    ("trainer.epochs=2.5", "trainer.epochs: must be an integer, got 2.5"),
    ("optimizer.lr=fast", "optimizer.lr: must be a number, got 'fast'"),
    ("trainer.eval_batch_size=big", "trainer.eval_batch_size: must be an integer or 'auto', got 'big'"),
    ("trainer.channels_last=1", "trainer.channels_last: must be true or false or 'auto', got 1"),
    ("data.train_per_class=many", "data.train_per_class: must be an integer or null, got 'many'"),
    ("data.synthetic.seed=x", "data.synthetic.seed: must be an integer, got 'x'"),
    ("scheduler.milestones=[0.5,half]", "scheduler.milestones: must be a list of numbers, got [0.5, 'half']"),
    ("seed=one", "seed: must be an integer, got 'one'"),
])
def test_a_wrong_type_is_one_line_naming_the_key_and_the_type(override, message):
    assert problems(override) == [message]


def test_a_string_is_never_read_as_a_bool():
    # OmegaConf's own bool conversion would read 'no' as False and 'yes' as True; a config that
    # says augment=yes is still a string, and the run must not guess
    assert problems("data.augment=yes") == ["data.augment: must be true or false, got 'yes'"]


@pytest.mark.parametrize("override, message", [
    ("+trainer.epoch=3", "trainer.epoch: unknown key; did you mean trainer.epochs?"),
    ("+optimizer.lrr=0.1", "optimizer.lrr: unknown key; did you mean optimizer.lr?"),
    ("+data.synthetic.train=5", "data.synthetic.train: unknown key; did you mean data.synthetic.train_size?"),
    ("+foo=bar", "foo: unknown key; the top level has data, latency, logger, model, name, optimizer, paths, pruner, "
                 "scheduler, seed, trainer"),
])
def test_an_added_unknown_key_names_the_closest_valid_key(override, message):
    assert problems(override) == [message]


def test_keys_follow_the_chosen_component():
    # momentum belongs to SGD, not Adam; betas to Adam, not SGD
    assert problems("optimizer=adam", "+optimizer.momentum=0.9")[0].startswith("optimizer.momentum: unknown key")
    assert problems("+optimizer.betas=[0.9,0.99]")[0].startswith("optimizer.betas: unknown key")
    # model options differ per model family
    assert problems("model=resnet50", "+model.shortcut=A")[0].startswith("model.shortcut: unknown key")
    assert problems("model=vgg16", "model.dropout=high") == ["model.dropout: must be a number, got 'high'"]


def test_a_deleted_key_is_missing():
    assert problems("~optimizer.momentum") == ["optimizer.momentum: missing; the config must set it"]


def test_every_problem_is_listed():
    assert problems("data.augment=no", "+trainer.epoch=3", "optimizer.nesterov=1") == [
        "data.augment: must be true or false, got 'no'",
        "optimizer.nesterov: must be true or false, got 1",
        "trainer.epoch: unknown key; did you mean trainer.epochs?",
    ]


@pytest.mark.parametrize("override, message", [
    ("optimizer.lrr=0.1", "optimizer.lrr: unknown key; did you mean optimizer.lr?"),
    ("trainer.epoch=3", "trainer.epoch: unknown key; did you mean trainer.epochs?"),
    ("optimzer.lr=0.1", "optimzer: unknown key; did you mean optimizer?"),
    ("foo=bar", "foo: unknown key; the top level has"),
    ("+trainer.epochs=3", "+trainer.epochs=3: trainer.epochs is already set; drop the + (trainer.epochs=3)"),
    ("hydra.foo=1", "Could not override 'hydra.foo'."),  # Hydra's own config: its own words, on one line
])
def test_hydra_override_errors_become_one_line_with_the_closest_key(override, message):
    with pytest.raises(ConfigError) as caught:
        compose_config([override])
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_two_unknown_overrides_are_both_named():
    with pytest.raises(ConfigError) as caught:
        compose_config(["optimizer.lrr=0.1", "trainer.epoch=3"])
    assert str(caught.value).splitlines() == ["optimizer.lrr: unknown key; did you mean optimizer.lr?",
                                              "trainer.epoch: unknown key; did you mean trainer.epochs?"]


# choices the default config refuses on its own: dpm needs a projection-shortcut ResNet, a custom
# component its target (tests/custom_parts.py)
NEEDS = {"pruner=dpm": ["model.shortcut=B"], "model=custom": ["model.target=custom_parts:SmallNet"],
         "optimizer=custom": ["optimizer.target=torch.optim.RMSprop"],
         "scheduler=custom": ["scheduler.target=custom_parts:warmup_constant"],
         "pruner=custom": ["pruner.target=custom_parts:HalfOfEachLayer", "+pruner.sparsity=0.5",
                           "+pruner.layers=[conv]"]}


def group_choices():
    for group in ("data", "model", "optimizer", "scheduler", "pruner", "trainer", "paths"):
        for path in sorted((conf_dir() / group).glob("*.yaml")):
            yield [f"{group}={path.stem}", *NEEDS.get(f"{group}={path.stem}", [])]
    for path in sorted((conf_dir() / "exp").glob("*.yaml")):
        yield [f"+exp={path.stem}"]


@pytest.mark.parametrize("overrides", list(group_choices()), ids=" ".join)
def test_every_shipped_config_matches_the_schema(overrides):
    validate(make_config(overrides))  # a yaml key without a schema field (or the reverse) fails here


def test_every_registered_component_carries_a_schema_with_a_name():
    from prune_bench.models import MODEL_SCHEMAS, MODELS
    from prune_bench.optim import OPTIMIZERS, SCHEDULERS
    from prune_bench.pruning import PRUNERS

    assert set(MODEL_SCHEMAS) == set(MODELS)
    schemas = [*MODEL_SCHEMAS.values()]
    schemas += [component.schema for registry in (OPTIMIZERS, SCHEDULERS, PRUNERS) for component in registry.values()]
    # a custom pruner's schema is its class's: a function of the section gives the dataclass
    schemas = [schema(NEEDS_SECTION) if schema is custom_pruner_schema else schema for schema in schemas]
    for schema in schemas:
        assert dataclasses.is_dataclass(schema), schema
        fields = {field.name: field for field in dataclasses.fields(schema)}
        assert "name" in fields, schema
        # types only: the yaml files hold the values
        assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   for f in fields.values()), schema


def test_pruner_options_that_leave_nothing_to_prune_are_found_before_training():
    # one-shot pruning starts after training: without this check the run trained first, then failed
    assert problems("pruner=magnitude", "pruner.layers=[linear]", "pruner.skip_last_linear=true") == [
        "pruner.layers: resnet20 has no prunable weights with these options "
        "(layers [linear], skip_first_conv false, skip_last_linear true)"]


def test_a_bad_model_option_is_found_before_anything_runs():
    assert problems("model.shortcut=C") == ["model.shortcut: 'C' is not allowed; use A or B"]
    assert problems("model=resnet152", "model.block=wide") == ["model.block: 'wide' is not allowed; use basic or bottleneck"]
