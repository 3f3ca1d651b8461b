"""Components named by import path (`<section>=custom <section>.target=...`): how each is built
and checked, what a run folder and a table call it, and the run identity that includes the file
defining it. The components are in tests/custom_parts.py."""

import hashlib
import inspect
import sys

import pytest
import torch
from omegaconf import OmegaConf

from conftest import config_problems, lr_factors, make_config
from custom_parts import HalfOfEachLayer, SmallNet
from prune_bench import identity as identities
from prune_bench import layout
from prune_bench.errors import ConfigError, in_words
from prune_bench.models import ModelSpec, build_model
from prune_bench.optim import build_optimizer
from prune_bench.pruning import build_pruner
from prune_bench.report.cells import semantic
from prune_bench.targets import check_arguments, custom_sources, label, resolve, split_target

INFO = {"dataset": "cifar10", "format": "synthetic", "n_train": 200, "n_test": 100}
SMALL = ["data=synthetic", "model=custom", "model.target=custom_parts:SmallNet"]


@pytest.fixture(autouse=True)
def path_kept(monkeypatch):
    """resolve() may append the working directory to sys.path: each test gets it back as it was."""
    monkeypatch.setattr(sys, "path", list(sys.path))


# ----------------------------------------------------------------------------- targets


def test_a_target_is_module_colon_name_or_module_dot_name():
    assert split_target("k", "mypkg.nets:TinyNet") == ("mypkg.nets", "TinyNet")
    assert split_target("k", "torch.optim.RMSprop") == ("torch.optim", "RMSprop")
    assert split_target("k", "mypkg.nets:Outer.Inner") == ("mypkg.nets", "Outer.Inner")
    assert resolve("k", "torch.optim:RMSprop") is resolve("k", "torch.optim.RMSprop") is torch.optim.RMSprop
    for bad in ("TinyNet", "mypkg.nets:", "my-pkg:Net", ""):
        with pytest.raises(ConfigError):
            split_target("k", bad)


def test_the_working_directory_is_searched_as_python_m_searches_it(tmp_path, monkeypatch):
    (tmp_path / "here_only.py").write_text("VALUE = 7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert resolve("model.target", "here_only:VALUE") == 7


def test_keyword_arguments_are_checked_against_the_signature():
    check_arguments("model", SmallNet, "t", {"width": 4}, ("num_classes",))  # accepted: no error
    cases = [({"widht": 4}, ("num_classes",), "model.kwargs.widht: t does not accept widht; it takes num_classes, "
                                              "width and depth"),
             ({"num_classes": 3}, ("num_classes",), "model.kwargs.num_classes: prune-bench passes num_classes itself; "
                                                    "drop it"),
             ({}, ("classes",), "model.target: t does not accept classes; it takes num_classes, width and depth"),
             ({"width": 4}, (), "model.kwargs: t needs num_classes; set +model.kwargs.num_classes=...")]
    for kwargs, given, message in cases:
        with pytest.raises(ConfigError) as caught:
            check_arguments("model", SmallNet, "t", kwargs, given)
        assert str(caught.value) == message


def test_a_custom_component_is_called_by_its_targets_name():
    assert label({"name": "custom", "target": "mypkg.nets:TinyNet"}) == "TinyNet"
    assert label({"name": "custom", "target": "torch.optim.RMSprop"}) == "RMSprop"
    assert label({"name": "gmp", "sparsity": 0.9}) == "gmp"
    cfg = make_config([*SMALL, "optimizer=custom", "optimizer.target=torch.optim.RMSprop", "pruner=custom",
                       "pruner.target=custom_parts:HalfOfEachLayer"])
    assert layout.run_label(cfg) == "SmallNet_RMSprop_HalfOfEachLayer"


# ----------------------------------------------------------------------------- the four sections


def test_a_custom_model_gets_num_classes_and_its_kwargs(one_thread):
    model = build_model("custom", 7, target="custom_parts:SmallNet", kwargs={"width": 4, "depth": 3})
    assert isinstance(model, SmallNet) and model.head.out_features == 7 and model.head.in_features == 4
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 3
    factory = build_model("custom", 5, target="custom_parts:small_net", kwargs={})
    assert factory.head.out_features == 5 and factory.head.in_features == 8
    spec = ModelSpec.from_config({"name": "custom", "target": "custom_parts:SmallNet", "kwargs": {"width": 4}}, 10)
    assert spec.as_dict() == {"name": "custom", "num_classes": 10,
                              "options": {"target": "custom_parts:SmallNet", "kwargs": {"width": 4}}}
    assert spec.build().head.in_features == 4  # what load_pruned_model and export rebuild from


def test_a_custom_optimizer_gets_lr_weight_decay_unless_null_and_its_kwargs():
    params = [torch.nn.Parameter(torch.zeros(3))]
    cfg = make_config(["optimizer=custom", "optimizer.target=torch.optim.RMSprop", "optimizer.lr=0.02",
                       "optimizer.weight_decay=0.001", "+optimizer.kwargs.alpha=0.9"]).optimizer
    group = build_optimizer(cfg, params).param_groups[0]
    assert (group["lr"], group["weight_decay"], group["alpha"]) == (0.02, 0.001, 0.9)
    rprop = make_config(["optimizer=custom", "optimizer.target=torch.optim.Rprop"]).optimizer  # no weight_decay
    assert isinstance(build_optimizer(rprop, params), torch.optim.Rprop)
    # what Rprop takes is the installed torch's to say (its keyword arguments change between versions)
    rprop_takes = in_words(list(inspect.signature(torch.optim.Rprop).parameters), "and")
    assert config_problems(["data=synthetic", "optimizer=custom", "optimizer.target=torch.optim.Rprop",
                            "optimizer.weight_decay=0.1"]) == [
        f"optimizer.target: torch.optim.Rprop does not accept weight_decay; it takes {rprop_takes}"]
    assert config_problems(["data=synthetic", "optimizer=custom", "optimizer.target=torch.nn.Linear"]) == [
        "optimizer.target: torch.nn.Linear is not a subclass of torch.optim.Optimizer (it is a class)"]


def test_dpm_stages_give_an_optimizer_that_takes_no_weight_decay_none_and_their_own_lr():
    cfg = make_config(["data=synthetic", "optimizer=custom", "optimizer.target=torch.optim.Rprop", "pruner=dpm",
                       "model.shortcut=B", "pruner.sparse_learning=true", "pruner.sparse.weight_decay=0",
                       "pruner.finetune.weight_decay=0", "pruner.sparse.lr=0.03", "pruner.finetune.lr=0.02"])
    specs = build_pruner(cfg.pruner).stages(cfg)
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert [spec.name for spec in specs] == ["pretrain", "sparse", "finetune"]
    assert [build_optimizer(spec.optimizer, params).param_groups[0]["lr"] for spec in specs] == [
        cfg.optimizer.lr, 0.03, 0.02]
    assert all(spec.optimizer.weight_decay is None for spec in specs)


def test_a_custom_schedule_is_the_factor_its_target_returns():
    cfg = {"name": "custom", "target": "custom_parts:warmup_constant", "kwargs": {"warmup_epochs": 1}}
    # 3 steps per epoch, 2 epochs: (step + 1) / 3 over the first epoch, then 1
    assert lr_factors(cfg, 3, 2) == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0, 1.0])
    assert config_problems(["data=synthetic", "scheduler=custom", "scheduler.target=custom_parts:warmup_constant",
                            "+scheduler.kwargs.warmup=2"]) == [
        "scheduler.kwargs.warmup: custom_parts:warmup_constant does not accept warmup; it takes steps_per_epoch, "
        "epochs and warmup_epochs"]
    assert config_problems(["data=synthetic", "scheduler=custom", "scheduler.target=custom_parts:SmallNet"])[0] \
        .startswith("scheduler.target: custom_parts:SmallNet does not accept steps_per_epoch")


def test_a_custom_pruner_has_the_keys_and_checks_its_class_declares():
    base = ["data=synthetic", "pruner=custom", "pruner.target=custom_parts:HalfOfEachLayer"]
    pruner = build_pruner(make_config([*base, "+pruner.sparsity=0.5", "+pruner.layers=[conv]"]).pruner)
    assert isinstance(pruner, HalfOfEachLayer) and pruner.sparsity == 0.5 and pruner.layers == ("conv",)
    assert config_problems(base) == ["pruner.sparsity: missing; the config must set it",
                                     "pruner.layers: missing; the config must set it"]
    assert config_problems([*base, "+pruner.sparsity=half", "+pruner.layers=[conv]", "+pruner.sparsty=0.5"]) == [
        "pruner.sparsity: must be a number, got 'half'", "pruner.sparsty: unknown key; did you mean pruner.sparsity?"]
    # its own check, and the checks every pruner gets (a sparsity key in [0, 1))
    assert config_problems([*base, "+pruner.sparsity=1.5", "+pruner.layers=[]"]) == [
        "pruner.layers: must name at least one of conv, linear", "pruner.sparsity: sparsity must be in [0, 1), got 1.5"]


def test_a_model_that_does_not_fit_a_cifar_batch_is_found_before_anything_runs():
    assert config_problems(["data=synthetic", "model=custom", "model.target=custom_parts:FiveLogits"]) == [
        "model.target: custom_parts:FiveLogits gives [2, 5] for a CIFAR batch of shape [2, 3, 32, 32]; "
        "expected [2, 10] (a logit per class)"]
    # a pruner that cannot work on the model names the layer and the reason
    assert config_problems([*SMALL, "pruner=gmp", "pruner.layers=[linear]", "pruner.skip_last_linear=true"]) == [
        "pruner.layers: SmallNet has no prunable weights with these options "
        "(layers [linear], skip_first_conv true, skip_last_linear true)"]
    assert config_problems(["data=synthetic", "model=custom", "model.target=custom_parts:ConvOnly", "pruner=dpm"]) == [
        "pruner: dpm needs a model that ends in a linear classifier; ConvOnly has no nn.Linear"]
    assert config_problems(["data=synthetic", "model=custom", "model.target=custom_parts:ScaledNet", "pruner=dpm"]) == [
        "pruner: layer scale (Parameter) is coupled to channels of features.3 but dpm supports only conv, linear "
        "and BatchNorm layers"]


# ----------------------------------------------------------------------------- identity


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    """A module of one's own, importable, whose file the test may edit."""
    folder = tmp_path / "own"
    folder.mkdir()
    (folder / "own_nets.py").write_text("from custom_parts import SmallNet\n\n\nclass Net(SmallNet):\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    return folder / "own_nets.py"


def test_the_identity_holds_target_kwargs_and_the_source_files_digest(own_module):
    def identity(*extra):
        return identities.run_identity(make_config(["model=custom", "model.target=own_nets:Net", *extra]), INFO)

    first = identity()
    assert identity() == first  # the same file, target and kwargs: the same run
    assert identity("+model.kwargs.width=4") != first
    own_module.write_text(own_module.read_text() + "# an edit\n")
    assert identity() != first  # an edited model is a new run, never a silent reuse
    tree = OmegaConf.to_container(make_config(["model=custom", "model.target=own_nets:Net"]), resolve=True)
    assert custom_sources(tree) == {"model": {"target": "own_nets:Net", "file": str(own_module.resolve()),
                                              "sha256": hashlib.sha256(own_module.read_bytes()).hexdigest()}}


def test_a_run_of_built_in_components_hashes_no_sources():
    cfg = make_config(["+exp=smoke"])
    assert identities.source_digests(cfg) == {}
    with_sources = {"config": identities.semantic_config(cfg), "data": identities.data_fingerprint(INFO)}
    assert identities.run_identity(cfg, INFO) == identities.config_hash(with_sources)


def test_a_shared_stage_hashes_the_sources_of_what_it_computes_from():
    # the pretraining a one-shot pruner shares is hashed without the pruner section: a custom
    # pruner's file is not part of it, a custom model's is
    cfg = make_config([*SMALL, "pruner=custom", "pruner.target=custom_parts:HalfOfEachLayer"])
    assert set(identities.source_digests(cfg)) == {"model", "pruner"}
    assert set(identities.source_digests(cfg, drop=("pruner",))) == {"model"}


def test_records_of_other_source_files_are_other_rows():
    def record(sha):
        config = OmegaConf.to_container(make_config(SMALL), resolve=True)
        return {"config": config, "data": INFO, "device": {"type": "cpu"},
                "targets": {"model": {"target": "custom_parts:SmallNet", "sha256": sha}}}

    assert semantic(record("a"))["sources.model"] == "a"
    assert semantic(record("a")) != semantic(record("b"))
