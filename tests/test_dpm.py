"""DPM on Torch-Pruning: hosts, Smooth Pruning, Self-Rectifying, exact removal, optimizer state
across removals, MAC counting, config checks. Tiny models, one thread."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp
from omegaconf import OmegaConf

from conftest import config_problems, make_config
from prune_bench.config.shipped import conf_dir
from prune_bench.config.validate import validate
from prune_bench.engine.loop import Training
from prune_bench.engine.runtime import Runtime
from prune_bench.errors import ConfigError, PruneBenchError
from prune_bench.metrics import MacCounter, count_params_macs
from prune_bench.models import ModelSpec, build_model
from prune_bench.pruning import TrainContext, build_pruner
from prune_bench.pruning.dpm.pruner import (
    RescaleDidNotConverge,
    rescale,
    resolved_rate_baseline,
    sp_step_fraction,
    sp_target,
)
from prune_bench.pruning.dpm.shapes import layer_shapes, restore_shapes

pytestmark = pytest.mark.usefixtures("one_thread")


def dpm_config(**overrides):
    """conf/pruner/dpm.yaml sized for Loop: the pruning phase is its first 10 steps."""
    cfg = OmegaConf.load(conf_dir() / "pruner" / "dpm.yaml")
    small = {"prune_epochs": 1, "prune_steps": 1, "sp_steps": 5, "sr_cooldown": 10}
    for key, value in {**small, **overrides}.items():
        OmegaConf.update(cfg, key, value)
    return cfg


class Loop:
    """The training loop's hook order on random data, with SGD, for a pruner under test; a model
    the pruner hands back goes through the loop's own Training.replace."""

    def __init__(self, pruner, model="resnet20", steps_per_epoch=10, epochs=3, lr=0.05, momentum=0.9,
                 weight_decay=5e-4, seed=0):
        torch.manual_seed(seed)
        spec = ModelSpec(model, 10, {"shortcut": "B"} if model.startswith("resnet") else {})
        self.hyper = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.pruner = pruner
        self.ctx = TrainContext(None, None, None, steps_per_epoch, steps_per_epoch * epochs, seed,
                                torch.device("cpu"), spec)
        runtime = Runtime(torch.device("cpu"), bf16=False, channels_last=False, eval_batch_size=100, progress="none")
        self.training = Training(spec.build(), self.rebuild, pruner, self.ctx, runtime)
        pruner.start(self.ctx)
        self.generator = torch.Generator().manual_seed(seed)
        self.step_count = 0
        self.extra_loss = None  # a function of the model added to the loss (a constructed gradient)

    @property
    def model(self):
        return self.training.model

    @property
    def optimizer(self):
        return self.training.optimizer

    @property
    def scheduler(self):
        return self.training.scheduler

    def rebuild(self, model):
        optimizer = torch.optim.SGD(model.parameters(), **self.hyper)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    def batch(self, n=8):
        images = torch.randn(n, 3, 32, 32, generator=self.generator)
        return images, torch.randint(0, 10, (n,), generator=self.generator)

    def step(self):
        images, labels = self.batch()
        loss = F.cross_entropy(self.model(images), labels)
        if self.extra_loss is not None:
            loss = loss + self.extra_loss(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.pruner.after_backward(self.step_count)
        self.optimizer.step()
        replaced = self.pruner.after_step(self.step_count)
        if replaced is not None:
            self.training.replace(replaced)
        self.scheduler.step()
        self.step_count += 1
        return replaced


def channel_norm(pruner, group, channel):
    return float(pruner.host.groups[group].sq_norms()[channel].sqrt())


# ---------------------------------------------------------------------------------- hosts


def test_group_norms_are_torch_prunings_group_l2_with_biases():
    """A channel's joint norm covers exactly what Torch-Pruning's group L2 importance sums
    (conv filters, BN scales and shifts, next layers' input columns, conv biases)."""
    for name in ("resnet20", "vgg16_bn"):
        pruner = build_pruner(dpm_config(decay="sp"))
        loop = Loop(pruner, model=name)
        importance = tp.importance.GroupMagnitudeImportance(p=2, group_reduction="sum", normalizer=None, bias=True)
        for group in pruner.host.groups.values():
            torch.testing.assert_close(group.sq_norms(), importance(group.tp_group).float(), rtol=1e-5, atol=1e-6)
        assert loop.model.training  # tracing the graph leaves the model's mode as it was


def test_depgraph_picks_the_smallest_normalised_group_first():
    pruner = build_pruner(dpm_config(decay="none", speedup=1.01, prune_steps=1, prune_epochs=1))
    Loop(pruner)
    group = pruner.host.groups["stages.1.0.conv1"]
    with torch.no_grad():  # channel 5's slices shrink 1000x: by far the smallest group L2 norm
        group.scale_(torch.where(torch.arange(group.size) == 5, 1e-3, 1.0))
    first = pruner.ranked_candidates(t=0)[0]
    assert first == ("stages.1.0.conv1", 5)
    # max normalisation: each group's scores are divided by its largest one (Torch-Pruning's benchmark)
    raw = pruner.host.raw_scores()["stages.1.0.conv1"]
    basis = torch.ones(group.size, dtype=torch.bool)
    torch.testing.assert_close(pruner._normalize(raw, basis), raw / raw.max())


def test_bnscale_ranks_by_gamma_and_by_accumulated_taylor_scores():
    pruner = build_pruner(dpm_config(host="bnscale", decay="none", **{"importance.criterion": "gamma"}))
    loop = Loop(pruner)
    with torch.no_grad():
        loop.model.stages[2][1].bn1.weight[7] = 1e-4
    assert pruner.ranked_candidates(t=0)[0] == ("stages.2.1.conv1", 7)

    pruner = build_pruner(dpm_config(host="bnscale", decay="none", **{"importance.criterion": "taylor"}))
    loop = Loop(pruner)
    bn = loop.model.stages[0][0].bn1
    expected = torch.zeros(16)
    for _ in range(2):  # two backward passes: the scores add up
        images, labels = loop.batch()
        loop.optimizer.zero_grad()
        F.cross_entropy(loop.model(images), labels).backward()
        expected += (bn.weight.grad * bn.weight).abs().detach()
        pruner.after_backward(0)
    torch.testing.assert_close(pruner.host.raw_scores()["stages.0.0.conv1"], expected)


# ---------------------------------------------------------------------------------- SP


def test_sp_takes_a_picked_groups_norm_linearly_to_zero_in_n_steps_while_the_rest_trains():
    n_steps = 5
    pruner = build_pruner(dpm_config(decay="sp", sp_steps=n_steps, prune_epochs=1, prune_steps=1,
                                     **{"finetune.epochs": 3}))
    loop = Loop(pruner)
    for _ in range(10):  # the event is after step 10
        loop.step()
    picks = list(pruner.pending)
    assert picks and all(p.step == 10 for p in picks)
    watched = picks[:5]
    free = [p for p in loop.model.parameters()]
    zero_before_removal = {}
    real_remove = pruner._remove

    def remove(to_remove, t):
        zero_before_removal.update({(p.group, p.channel): channel_norm(pruner, p.group, p.channel) for p in to_remove})
        real_remove(to_remove, t)

    pruner._remove = remove
    for n in range(1, n_steps):
        before = [p.detach().clone() for p in free]
        loop.step()
        for pick in watched:
            expected = pick.norm_init * (n_steps - n) / n_steps
            assert channel_norm(pruner, pick.group, pick.channel) == pytest.approx(expected, rel=1e-5, abs=1e-7)
        moved = sum(not torch.equal(a, b.detach()) for a, b in zip(before, free))
        assert moved > 0.9 * len(free)  # everything else keeps training
    channels_before = sum(m.out_channels for m in loop.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert loop.step() is not None  # n = N: removed, a new model handed back
    assert all(zero_before_removal[(p.group, p.channel)] == 0.0 for p in watched)
    assert len(zero_before_removal) == len(picks) and not pruner.pending
    channels_after = sum(m.out_channels for m in loop.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert channels_after < channels_before
    assert pruner.counts == {"picked": len(picks), "released": 0, "removed": len(picks)}


def test_sp_target_schedules_by_hand():
    n = torch.arange(6, dtype=torch.float32)  # past n = length the target stays zero
    norm_init, length = torch.full((6,), 2.0), torch.full((6,), 4.0)
    cosine = torch.tensor([2 * 0.5 * (1 + math.cos(math.pi * min(k, 4) / 4)) for k in range(6)])
    torch.testing.assert_close(sp_target(norm_init, n, length, "cosine"), cosine)
    torch.testing.assert_close(sp_target(norm_init, n, length, "linear"), torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, 0.0]))


def test_removal_is_exact_outputs_equal_the_decayed_to_zero_models():
    """The removal covers a residual stream's channel by construction: channel 0 of the stem's
    group (the stream of stage 1) is scaled to a thousandth just before the event, so it ranks
    far below every other channel. Left to the training, how many of that group's channels the
    event picks depends on the seed (0 to 13 of 16 over seeds 0-5)."""
    pruner = build_pruner(dpm_config(decay="sp", sp_steps=2, prune_epochs=1, prune_steps=1))
    loop = Loop(pruner)
    probe = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    outputs = {}
    real_remove = pruner._remove

    def both_modes(model):  # train mode (batch statistics) on a copy: it updates the running stats
        with torch.no_grad():
            return {"eval": model.eval()(probe), "train": copy.deepcopy(model).train()(probe)}

    def remove(to_remove, t):
        assert ("conv1", 0) in {(p.group, p.channel) for p in to_remove}  # a residual stream's channel too
        outputs["decayed"] = both_modes(loop.model)
        real_remove(to_remove, t)
        outputs["removed"] = both_modes(loop.model)
        loop.model.train()

    pruner._remove = remove
    for _ in range(9):  # the event follows step 10
        loop.step()
    stream = pruner.host.groups["conv1"]
    with torch.no_grad():
        stream.scale_(torch.where(torch.arange(stream.size) == 0, 1e-3, 1.0))
    while "removed" not in outputs:
        loop.step()
    for mode in ("eval", "train"):
        torch.testing.assert_close(outputs["removed"][mode], outputs["decayed"][mode], rtol=1e-5, atol=1e-5)


def test_decay_none_removes_picks_at_once_and_stops_where_the_papers_counter_crosses_each_target():
    """Each event's target is in the paper's FLOPs (Torch-Pruning's counter); the host picks until
    that counter meets it and no further: one pick fewer and the model would be above it."""
    pruner = build_pruner(dpm_config(decay="none", prune_epochs=2, prune_steps=4, speedup=2.0))
    loop = Loop(pruner, epochs=3)
    assert pruner.events == [5, 10, 15, 20]
    ops_original = pruner.originals["paper"]["ops"]
    assert ops_original == tp.utils.count_ops_and_params(build_model("resnet20", shortcut="B"),
                                                         torch.zeros(1, 3, 32, 32))[0]
    for t in range(1, 21):
        replaced = loop.step()
        assert (replaced is not None) == (t in pruner.events)
        if t in pruner.events:
            j = pruner.events.index(t) + 1
            target = ops_original - j / 4 * (ops_original - ops_original / 2.0)
            ops = tp.utils.count_ops_and_params(loop.model, torch.zeros(1, 3, 32, 32))[0]
            (select,) = [e for e in pruner.report()["event_log"] if e["event"] == "select" and e["step"] == t]
            assert ops == select["ops"] <= target < select["ops_before_last_pick"]
            _, macs = count_params_macs(loop.model)
            assert macs == pruner.mac_counter.total() == pruner.projected_macs
    pruner.finish(lambda model: {})
    report = pruner.report()
    assert report["speedup_achieved"] >= 2.0 and report["counter"] == "Torch-Pruning's counter"
    assert report["conv_linear"]["speedup"] != report["speedup_achieved"]  # the two counters differ


# ---------------------------------------------------------------------------------- SR


def _sr_loop(**overrides):
    pruner = build_pruner(dpm_config(**{"decay": "sp+sr", "sp_steps": 6, "prune_epochs": 1, "prune_steps": 1,
                                        "T_rate": 0.0, "T_len": 1.0, "sr_cooldown": 100, "speedup": 1.5, **overrides}))
    loop = Loop(pruner, momentum=0.0, weight_decay=0.0, lr=0.05)
    for _ in range(10):
        loop.step()
    return pruner, loop


def _channel_sq_norm(group, index):
    """A function of the model: the squared joint norm of channel `index` of `group`."""
    def sq_norm(model):
        total = 0
        for piece in group.slices:
            positions = piece.index[piece.root == index]
            total = total + piece.tensor().index_select(piece.dim, positions).pow(2).sum()
        return total
    return sq_norm


@pytest.mark.slow
def test_sr_releases_a_group_whose_gradient_wants_it_back_and_the_speedup_still_holds():
    """The same step twice from the same state: with the target channel's gradient pointing
    inward (control) it is not released, with it pointing outward it is. The constructed terms
    move the channel's norm by a factor, far beyond any platform's rounding: the control's step
    takes the target to half its norm (lr 0.05 x gradient 10 w), the test's to six times it."""
    pruner, loop = _sr_loop()
    target = pruner.pending[0]
    control, control_loop = _sr_loop()
    assert (control.pending[0].group, control.pending[0].channel) == (target.group, target.channel)
    control_sq_norm = _channel_sq_norm(control.host.groups[target.group], target.channel)
    control_loop.extra_loss = lambda model: 5.0 * control_sq_norm(model)
    control_loop.step()
    assert not any(e["event"] == "release" and e["group"] == target.group and target.channel in e["channels"]
                   for e in control.log)
    assert any((p.group, p.channel) == (target.group, target.channel) for p in control.pending)  # decays on
    group = pruner.host.groups[target.group]
    index = target.channel
    sq_norm = _channel_sq_norm(group, index)

    def push_out(model):  # minus the squared norm of the target channel: its gradient points outward
        return -50.0 * sq_norm(model)

    loop.extra_loss = push_out
    picks_before = pruner.counts["picked"]
    loop.step()
    releases = [e for e in pruner.log if e["event"] == "release"]
    assert releases and releases[0]["group"] == target.group and index in releases[0]["channels"]
    position = releases[0]["channels"].index(index)
    assert releases[0]["c_rate"][position] > 0 and releases[0]["c_len"][position] > 1
    assert all((p.group, p.channel) != (target.group, index) for p in pruner.pending)
    assert [target.group, index, 11 + 100] in pruner.cooldown
    assert channel_norm(pruner, target.group, index) > target.norm_init  # it kept its (grown) weights
    assert pruner.counts["picked"] > picks_before  # a replacement, picked at once
    assert pruner.projected_count([]).ops <= pruner.originals["paper"]["ops"] / 1.5
    loop.extra_loss = None
    for _ in range(19):
        loop.step()
    assert not pruner.pending
    ops = tp.utils.count_ops_and_params(loop.model, torch.zeros(1, 3, 32, 32))[0]
    assert pruner.originals["paper"]["ops"] / ops >= 1.5


def test_sp_step_fraction_by_hand():
    n, length = torch.arange(1, 5, dtype=torch.float32), torch.full((4,), 4.0)
    # linear: 4 -> 3 -> 2 -> 1 -> 0 (x L_init / 4): SP takes 1/4, 1/3, 1/2, then all of what is left
    torch.testing.assert_close(sp_step_fraction(n, length, "linear"), torch.tensor([1 / 4, 1 / 3, 1 / 2, 1.0]))
    cosine = [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]
    torch.testing.assert_close(sp_step_fraction(n, length, "cosine"),
                               torch.tensor([1 - cosine[k] / cosine[k - 1] for k in range(1, 5)]))


def test_sr_rate_baseline_auto_is_decay_on_otov2_only():
    for host, expected in (("otov2", "decay"), ("depgraph", "zero"), ("bnscale", "zero")):
        assert resolved_rate_baseline({"host": host, "sr_rate_baseline": "auto"}) == expected
        for explicit in ("zero", "decay"):
            assert resolved_rate_baseline({"host": host, "sr_rate_baseline": explicit}) == explicit


@pytest.mark.parametrize("baseline, push, released", [
    ("zero", 0.5, True),    # the update grows the channel by about 5%: any growth releases it
    ("decay", 0.5, False),  # 5% is less than the 1/6 of its norm SP takes off at step 1 of 6
    ("decay", 3.0, True),   # about 30% is more
])
def test_with_the_decay_baseline_sr_releases_only_growth_beyond_what_sp_takes_off(baseline, push, released):
    """The same step from the same state with an outward gradient on the target channel of a
    strength `push`; its loss gradient alone moves its norm by 0.03% here."""
    pruner, loop = _sr_loop(sr_rate_baseline=baseline)
    target = pruner.pending[0]
    sq_norm = _channel_sq_norm(pruner.host.groups[target.group], target.channel)
    loop.extra_loss = lambda model: -push * sq_norm(model)
    loop.step()
    events = [e for e in pruner.log if e["event"] == "release" and e["group"] == target.group
              and target.channel in e["channels"]]
    assert bool(events) == released
    if released:
        c_rate = events[0]["c_rate"][events[0]["channels"].index(target.channel)]
        assert c_rate > (1 / 6 if baseline == "decay" else 0)
        assert events[0]["n"][events[0]["channels"].index(target.channel)] == 1
    else:
        assert any((p.group, p.channel) == (target.group, target.channel) for p in pruner.pending)


def test_without_sr_nothing_is_released():
    pruner = build_pruner(dpm_config(decay="sp", sp_steps=6, prune_epochs=1, prune_steps=1, speedup=1.5))
    loop = Loop(pruner)
    for _ in range(16):
        loop.step()
    assert pruner.counts["released"] == 0 and not any(e["event"] == "release" for e in pruner.log)


# ---------------------------------------------------------------------------------- optimizer state


def test_optimizer_state_of_surviving_entries_is_kept_across_a_removal():
    pruner = build_pruner(dpm_config(decay="none", prune_epochs=1, prune_steps=1, speedup=1.3))
    loop = Loop(pruner)
    for _ in range(9):
        loop.step()
    names = [name for name, _ in loop.model.named_parameters()]
    momentum_before = {name: loop.optimizer.state[p]["momentum_buffer"].clone()
                       for name, p in loop.model.named_parameters()}
    shapes_before = layer_shapes(loop.model)
    captured = {}
    real_remove = pruner._remove

    def remove(to_remove, t):
        captured["kept"] = {}
        for pick_group in {p.group for p in to_remove}:
            channels = [p.channel for p in to_remove if p.group == pick_group]
            for name, entries in pruner.host.groups[pick_group].kept_entries(channels).items():
                captured["kept"].setdefault(name, []).extend(entries)
        real_remove(to_remove, t)

    pruner._remove = remove
    # the momentum the next step adds must be left out: compare after re-deriving it
    images, labels = loop.batch()
    loss = F.cross_entropy(loop.model(images), labels)
    loop.optimizer.zero_grad()
    loss.backward()
    pruner.after_backward(9)
    loop.optimizer.step()
    stepped = {name: loop.optimizer.state[p]["momentum_buffer"].clone() for name, p in loop.model.named_parameters()}
    replaced = pruner.after_step(9)
    assert replaced is not None and layer_shapes(replaced) != shapes_before
    loop.training.replace(replaced)
    optimizer = loop.optimizer
    shrunk = 0
    for name, p in replaced.named_parameters():
        expected = stepped[name]
        for dim, keep in captured["kept"].get(name, []):
            expected = expected.index_select(dim, keep)
        buffer = optimizer.state[p]["momentum_buffer"]
        assert buffer.shape == p.shape
        assert torch.equal(buffer, expected), name
        shrunk += name in captured["kept"] and buffer.shape != momentum_before[name].shape
    assert shrunk > 0 and len(names) == len(list(replaced.parameters()))


# ---------------------------------------------------------------------------------- MACs and shapes


@pytest.mark.parametrize("name", ["resnet56", "vgg16_bn"])
def test_mac_counter_agrees_with_torch_prunings(name):
    """Torch-Pruning's counter also counts BN, ReLU and pooling elements and bias additions;
    like with like is its conv + linear entries less their biases, which must equal ours."""
    model = build_model(name, shortcut="B") if name.startswith("resnet") else build_model(name)
    example = torch.zeros(1, 3, 32, 32)
    for _ in range(2):  # dense, then with channels removed from every layer
        _, ours = count_params_macs(model)
        _, _, per_layer, _ = tp.utils.count_ops_and_params(model, example, layer_wise=True)
        conv_linear = {m: per_layer[m] for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
        bias_adds = sum(_bias_additions(m, model, example) for m in conv_linear)
        assert ours == sum(conv_linear.values()) - bias_adds
        assert abs(ours - sum(conv_linear.values())) <= 0.01 * ours
        assert MacCounter(model, tuple(example.shape)).total() == ours
        model = _slim_every_group(model, example)


def _bias_additions(module, model, example):
    if module.bias is None:
        return 0
    outputs = {}
    handle = module.register_forward_hook(lambda m, i, o: outputs.setdefault("o", o))
    with torch.no_grad():
        model.eval()(example)
    handle.remove()
    return outputs["o"].numel()


def _slim_every_group(model, example):
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    for group in list(graph.get_all_groups(ignored_layers=[last], root_module_types=[torch.nn.Conv2d])):
        size = len(group[0].idxs)
        graph.get_pruning_group(group[0].dep.target.module, group[0].dep.handler, list(range(0, size, 3))).prune()
    return model


def test_restored_shapes_take_a_slimmed_state_dict():
    model = _slim_every_group(build_model("resnet20", shortcut="B"), torch.zeros(1, 3, 32, 32))
    fresh = restore_shapes(build_model("resnet20", shortcut="B"), layer_shapes(model))
    fresh.load_state_dict(model.state_dict())  # strict: every shape matches
    probe = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(fresh.eval()(probe), model.eval()(probe))


# ---------------------------------------------------------------------------------- config


BASE = ["model=resnet56", "model.shortcut=B", "pruner=dpm", "data=synthetic"]


@pytest.mark.parametrize("override, key", [
    ("pruner.host=pruneall", "pruner.host"),
    ("pruner.decay=fast", "pruner.decay"),
    ("pruner.speedup=1.0", "pruner.speedup"),
    ("pruner.sp_steps=0", "pruner.sp_steps"),
    ("pruner.sp_schedule=step", "pruner.sp_schedule"),
    ("pruner.sr_logic=xor", "pruner.sr_logic"),
    ("pruner.T_rate=high", "pruner.T_rate"),
    ("pruner.sr_cooldown=-1", "pruner.sr_cooldown"),
    ("pruner.prune_epochs=101", "pruner.prune_epochs"),
    ("pruner.prune_steps=0", "pruner.prune_steps"),
    ("pruner.importance.criterion=taylor", "pruner.importance.criterion"),
    ("pruner.importance.normalizer=l2", "pruner.importance.normalizer"),
    ("pruner.finetune.lr=0", "pruner.finetune.lr"),
    ("pruner.sparse.scheduler.gamma=2", "pruner.sparse.scheduler.gamma"),
    ("model.shortcut=A", "model.shortcut"),
])
def test_bad_dpm_values_give_one_line_naming_the_key(override, key):
    lines = config_problems([*BASE, override])
    assert len(lines) == 1 and lines[0].startswith(f"{key}:"), lines


def test_bnscale_needs_batchnorm():
    with pytest.raises(ConfigError, match=r"^pruner.host: bnscale needs BatchNorm layers"):
        validate(make_config(["model=vgg16", "pruner=dpm", "pruner.host=bnscale"]))
    validate(make_config(["model=vgg16", "pruner=dpm"]))  # depgraph needs none


def test_an_unreachable_speedup_is_an_error():
    pruner = build_pruner(dpm_config(decay="none", prune_epochs=1, prune_steps=1, speedup=1000.0))
    loop = Loop(pruner)
    with pytest.raises(PruneBenchError, match="pruner.speedup: the target 1000.0x cannot be reached"):
        for _ in range(10):
            loop.step()


def test_the_structural_path_never_imports_torchvision():
    """torchvision is not a dependency (and is broken beside the CPU torch used here)."""
    import subprocess
    import sys

    code = ("import sys, prune_bench.engine.stages, prune_bench.pruning.dpm, torch_pruning; "
            "sys.exit('torchvision' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=conf_dir().parent).returncode == 0


def test_adam_moments_and_extra_optimizer_state_carry_over():
    """Adam's moments are sliced like momentum; entries beside the per-parameter state (here
    StochGradAdam's mask generator) carry over unchanged."""
    from prune_bench.optim import StochGradAdam
    from prune_bench.pruning.dpm.groups import slice_optimizer_state

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    optimizer = StochGradAdam(model.parameters(), lr=1e-2, generator=torch.Generator().manual_seed(0))
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    names = [name for name, _ in model.named_parameters()]
    kept = {"0.weight": [(0, torch.tensor([0, 2]))], "0.bias": [(0, torch.tensor([0, 2]))],
            "1.weight": [(1, torch.tensor([0, 2]))]}
    sliced = slice_optimizer_state(state, names, kept)
    assert torch.equal(sliced["sampling_generator"], state["sampling_generator"])
    assert torch.equal(sliced["state"][0]["exp_avg"], state["state"][0]["exp_avg"][[0, 2]])
    assert torch.equal(sliced["state"][2]["exp_avg_sq"], state["state"][2]["exp_avg_sq"][:, [0, 2]])
    assert torch.equal(sliced["state"][3]["exp_avg"], state["state"][3]["exp_avg"])  # untouched
    assert sliced["state"][0]["step"] == state["state"][0]["step"]


class RowGroup:
    """The part of a channel group `rescale` uses: one row of a tensor per channel."""

    def __init__(self, rows: torch.Tensor):
        self.rows, self.size = rows.clone(), rows.shape[0]

    def sq_norms(self) -> torch.Tensor:
        return (self.rows ** 2).sum(1)

    def scale_(self, factors: torch.Tensor) -> None:
        self.rows *= factors[:, None]


def test_rescale_reaches_each_target_norm_or_raises():
    groups = {"g": RowGroup(torch.tensor([[3.0, 4.0], [1.0, 0.0]]))}  # norms 5 and 1
    rescale(groups, {"g": (torch.tensor([0]), torch.tensor([2.5]), torch.tensor([5.0]))})
    torch.testing.assert_close(groups["g"].sq_norms().sqrt(), torch.tensor([2.5, 1.0]))
    torch.testing.assert_close(groups["g"].rows[0], torch.tensor([1.5, 2.0]))  # the direction kept
    dead = {"g": RowGroup(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))}  # a channel with no weight left
    with pytest.raises(RescaleDidNotConverge, match="off its target norm"):
        rescale(dead, {"g": (torch.tensor([0]), torch.tensor([0.5]), torch.tensor([1.0]))})
