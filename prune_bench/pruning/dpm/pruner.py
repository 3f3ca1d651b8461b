"""DPM, the Decay Pruning Method (Yang et al. 2024, arXiv 2406.03879; PAPERS.md section 4), on
a host pruner (hosts.py): a picked channel group is not removed at once but decays to zero
while it keeps training (Smooth Pruning, SP), and a decaying group whose gradient says it is
wanted is released (Self-Rectifying, SR).

DPM's authors published no code. Everything below the two published ideas is this project's
reconstruction, each piece a config option (conf/pruner/dpm.yaml, README "Open choices"):
- SP: for n = 1..N (`sp_steps`) after each optimizer step, all slices of the group (as the
  host's Torch-Pruning group lists them) are rescaled so their joint L2 norm is
  L_target(n) = L_init (N - n) / N (`sp_schedule: linear`; `cosine`: L_init (1 + cos(pi n / N)) / 2),
  keeping the direction the optimizer gave. At n = N the group is removed (exact: it is zero).
- SR, at every decay step while a replacement picked then could still decay fully before the
  fine-tune stage ends: C_rate = (|x~| - |x|) / |x|, the growth of the group's norm
  by the optimizer update (|x| before the update, |x~| after); C_len = |grad x| / mean |grad x'|
  over the other channels of the same group (the parallel channels of the same layers). Released
  when C_rate > T_rate and (`sr_logic: and`; `or`) C_len > T_len. A released group keeps its
  current weights, cannot be picked for `sr_cooldown` steps, and the host picks replacements
  at once so the MACs target still holds.
- Cadence: the pruning phase is the first `prune_epochs` of the fine-tune stage; at `prune_steps`
  events t_j = floor(j P / J) (j = 1..J, P = the phase's steps) the target MACs fall linearly
  from the original to original / `speedup`, and the host picks the lowest-ranked channels until
  the projected MACs (every picked channel counted as removed) meet the target. `decay: none`
  (the host alone) removes picked channels at once, at the same events.

Per step of the fine-tune stage (t = completed steps):
  backward -> after_backward: gradient scores for the host (taylor); for SR the decaying groups'
              norms before the update and their gradient norms
  optimizer.step()
  after_step: the decay step of every pending pick (release, or rescale, or at n = N removal),
              then a selection (at an event, or to replace released picks), then the physical
              removal (Torch-Pruning); the model is handed back and the loop rebuilds optimizer and
              scheduler, keeping the optimizer state of the surviving entries (carry_optimizer_state).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch_pruning as tp
from omegaconf import DictConfig, OmegaConf

from ...errors import ConfigError, PruneBenchError
from ...metrics import MacCounter, count_params_macs
from ..base import Pruner, StageSpec, TrainContext, pretrain_stage, stage_sections
from .groups import slice_optimizer_state
from .hosts import SparseLearning, build_host, example_input
from .shapes import layer_shapes, restore_shapes

TINY = torch.finfo(torch.float32).tiny
RESCALE_PASSES = 10
RECONSTRUCTION = ("DPM's code is not public: the SP schedule, the SR criteria C_rate and C_len, their thresholds and "
                  "logic, the cooldown, replacement picks and the selection cadence are this project's reconstruction "
                  "(PAPERS.md section 4; README, Open choices)")


@dataclass
class Pick:
    """A channel the host picked: its group, its channel number there (numbers shift when
    lower channels of the group are removed), when it was picked, and its norm then (L_init)."""

    group: str
    channel: int
    step: int
    norm_init: float


class DPMPruner(Pruner):
    """The run's stages: the shared dense pretraining, the shared sparse stage (with
    sparse_learning), then the fine-tune stage in the run's folder, whose first prune_epochs are
    the pruning phase."""

    name = "dpm"
    changes_shapes = True

    def __init__(self, cfg):
        cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        self.cfg = cfg
        self.decay = cfg["decay"]
        self.speedup = float(cfg["speedup"])
        self.sparse_learning = bool(cfg["sparse_learning"])
        self.sp_steps = int(cfg["sp_steps"])
        self.sr = self.decay == "sp+sr"
        self.pending: list[Pick] = []
        self.cooldown: list[list] = []  # [group, channel, first step it may be picked again]
        self.log: list[dict] = []
        self.counts = {"picked": 0, "released": 0, "removed": 0}
        self.target_index = -1  # the last selection event passed (-1: none yet)
        self.results: dict = {}
        self._kept: dict = {}  # entries that survived the last removal (for the optimizer state)
        self._before: dict = {}  # SR: per group, its norms before the update and C_len of its picks

    # ------------------------------------------------------------------ stages
    def stages(self, cfg) -> list[StageSpec]:
        stages = [pretrain_stage(cfg)]
        if self.sparse_learning:
            section = cfg.pruner.sparse
            optimizer, scheduler, trainer = stage_sections(cfg, section)
            key = {"host": cfg.pruner.host, "sparse": OmegaConf.to_container(section, resolve=True)}
            stages.append(StageSpec("sparse", "sparse", optimizer, scheduler, trainer, cfg.seed + 1, self.sparse_hooks,
                                    shared_as=f"{cfg.model.name}_{cfg.pruner.host}-sparse", key=key))
        optimizer, scheduler, trainer = stage_sections(cfg, cfg.pruner.finetune)
        stages.append(StageSpec("finetune", "prune", optimizer, scheduler, trainer, cfg.seed + 2, lambda: self))
        return stages

    def sparse_hooks(self) -> Pruner:
        """The sparse stage's hooks: the host's group-sparsity regulariser on the gradients."""
        importance = self.cfg["importance"]
        host = build_host(self.cfg["host"], importance["group_reduction"], importance["criterion"])
        return SparseLearning(host, float(self.cfg["sparse"]["reg"]))

    # ------------------------------------------------------------------ setup
    def start(self, ctx: TrainContext) -> None:
        self.ctx = ctx
        importance = self.cfg["importance"]
        self.host = build_host(self.cfg["host"], importance["group_reduction"], importance["criterion"])
        self.normalizer = importance["normalizer"]
        if self.normalizer == "auto":
            self.normalizer = self.host.default_normalizer
        self.example = example_input(ctx)
        self.host.attach(ctx.model, self.example)
        self.mac_counter = MacCounter(ctx.model, tuple(self.example.shape))
        self.macs_original = self.mac_counter.total()
        self.params_original = sum(p.numel() for p in ctx.model.parameters())
        self.plan(ctx.steps_per_epoch, ctx.total_steps // ctx.steps_per_epoch)
        self._project()

    def plan(self, steps_per_epoch: int, epochs: int) -> None:
        """The fine-tune stage's schedule: the selection events, and how long SR may act. Raises
        ConfigError when it does not fit (checked for every job before any trains)."""
        phase = self.cfg["prune_epochs"] * steps_per_epoch
        total = epochs * steps_per_epoch
        n_events = self.cfg["prune_steps"]
        if n_events > phase:
            raise ConfigError(f"pruner.prune_steps: {n_events} events do not fit in the pruning phase's {phase} steps")
        if self.decay != "none" and total < phase + self.sp_steps:
            raise ConfigError(f"pruner.sp_steps: a group picked at the end of the pruning phase (step {phase}) needs "
                              f"{self.sp_steps} more steps, but the fine-tune stage has {total} in all")
        self.phase_end = phase
        # SR releases only while a replacement picked then can still decay fully in the stage
        self.sr_until = total - self.sp_steps
        self.events = [(j + 1) * phase // n_events for j in range(n_events)]
        self._event_of = {t: j for j, t in enumerate(self.events)}

    # ------------------------------------------------------------------ hooks
    def after_backward(self, step: int) -> None:
        self.host.observe()
        self._before = {}
        if self.sr and self.pending and step + 1 <= self.sr_until:
            for name, picks in self._pending_by_group().items():
                group = self.host.groups[name]
                channels = torch.tensor([p.channel for p in picks], device=self.ctx.device)
                grad_norms = group.sq_norms("grad").sqrt()
                others = (grad_norms.sum() - grad_norms[channels]) / max(group.size - 1, 1)
                c_len = grad_norms[channels] / others.clamp_min(TINY)
                self._before[name] = (group.sq_norms().sqrt()[channels], c_len)

    def after_step(self, step: int) -> nn.Module | None:
        t = step + 1
        removals = self._decay_step(t) if self.decay != "none" and self.pending else []
        if t in self._event_of:
            self.target_index = self._event_of[t]
        picked = self._select(t)
        if t in self._event_of:
            self.host.reset_scores()
        if self.decay == "none":
            removals += picked
        if not removals:
            return None
        self._remove(removals, t)
        return self.ctx.model

    def carry_optimizer_state(self, state: dict) -> dict:
        if not self._kept:
            return state
        names = [name for name, _ in self.ctx.model.named_parameters()]
        state = slice_optimizer_state(state, names, self._kept)
        self._kept = {}
        return state

    # ------------------------------------------------------------------ SP and SR
    def _l_target(self, norm_init: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        fraction = (n / self.sp_steps).clamp(max=1.0)
        if self.cfg["sp_schedule"] == "cosine":
            return norm_init * 0.5 * (1 + torch.cos(math.pi * fraction))
        return norm_init * (1 - fraction)

    def _pending_by_group(self) -> dict[str, list[Pick]]:
        by_group = defaultdict(list)
        for pick in self.pending:
            by_group[pick.group].append(pick)
        return dict(by_group)

    @torch.no_grad()
    def _decay_step(self, t: int) -> list[Pick]:
        """One SP step for every pending pick (after the optimizer step); SR releases first.
        Returns the picks that reached n = N (now zero, to be removed)."""
        finished, released, plan = [], [], {}
        device = self.ctx.device
        for name, picks in self._pending_by_group().items():
            group = self.host.groups[name]
            channels = torch.tensor([p.channel for p in picks], device=device)
            n = torch.tensor([t - p.step for p in picks], device=device, dtype=torch.float32)
            norm_init = torch.tensor([p.norm_init for p in picks], device=device, dtype=torch.float32)
            release = torch.zeros(len(picks), dtype=torch.bool, device=device)
            if name in self._before:
                norms = group.sq_norms().sqrt()[channels]
                before, c_len = self._before[name]
                c_rate = (norms - before) / before.clamp_min(TINY)
                rate_ok, len_ok = c_rate > self.cfg["T_rate"], c_len > self.cfg["T_len"]
                release = rate_ok & len_ok if self.cfg["sr_logic"] == "and" else rate_ok | len_ok
            decaying = ~release
            plan[name] = (channels[decaying], self._l_target(norm_init, n)[decaying], norm_init[decaying])
            release_list, done = release.tolist(), ((n >= self.sp_steps) & decaying).tolist()
            for index, pick in enumerate(picks):
                if release_list[index]:
                    released.append((pick, float(c_rate[index]), float(c_len[index])))
                elif done[index]:
                    finished.append(pick)
        self._rescale(plan)
        if released:
            self._release(released, t)
        return finished

    @torch.no_grad()
    def _rescale(self, plan: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        """Scale each decaying channel's slices so their joint norm is its target. Channels of two
        groups can share entries (a conv's output filter in one group holds input columns of
        another), so scaling one moves the other's norm: repeat until every norm is on target
        (within 1e-6 of its L_init; two or three passes)."""
        for _ in range(RESCALE_PASSES):
            norms = {name: self.host.groups[name].sq_norms().sqrt()[channels]
                     for name, (channels, _, _) in plan.items()}
            off = [((norms[name] - target).abs() - 1e-6 * norm_init).max()
                   for name, (_, target, norm_init) in plan.items() if target.numel()]
            if not off or float(torch.stack(off).max()) <= 0:
                return
            for name, (channels, target, _) in plan.items():
                group = self.host.groups[name]
                factors = torch.ones(group.size, device=target.device)
                factors[channels] = torch.where(norms[name] > 0, target / norms[name].clamp_min(TINY),
                                                torch.zeros_like(target))
                group.scale_(factors)

    def _release(self, released: list[tuple[Pick, float, float]], t: int) -> None:
        by_group = defaultdict(list)
        for pick, c_rate, c_len in released:
            self.pending.remove(pick)
            self._apply_pick(pick, +1)
            self.cooldown.append([pick.group, pick.channel, t + self.cfg["sr_cooldown"]])
            by_group[pick.group].append((pick.channel, c_rate, c_len))
        for name, entries in by_group.items():
            self.log.append({"step": t, "event": "release", "group": name,
                             "channels": [e[0] for e in entries],
                             "c_rate": [round(e[1], 6) for e in entries],
                             "c_len": [round(e[2], 6) for e in entries]})
        self.counts["released"] += len(released)

    # ------------------------------------------------------------------ selection
    def _project(self) -> None:
        """Projected [out, in] channels per conv/linear layer and their MACs, with every
        pending pick counted as removed."""
        self.projected = {m: MacCounter.channels(m) for m in self.mac_counter.layers}
        self.projected_macs = self.mac_counter.total()
        for pick in self.pending:
            self._apply_pick(pick, -1)

    def _apply_pick(self, pick: Pick, sign: int) -> None:
        """Update the projection for a pick (sign -1) or a release (+1)."""
        for change in self.host.groups[pick.group].layer_changes:
            k = change.per_channel[pick.channel]
            if not k:
                continue
            counts = self.projected[change.module]
            before = self.mac_counter.layer_macs(change.module, *counts)
            counts[0 if change.kind == "out" else 1] += sign * k
            self.projected_macs += self.mac_counter.layer_macs(change.module, *counts) - before

    def target_macs(self) -> float:
        """The MACs the schedule asks for now: linear from the original at the phase start to
        original / speedup at the last event."""
        if self.target_index < 0:
            return float(self.macs_original)
        fraction = (self.target_index + 1) / len(self.events)
        return self.macs_original - fraction * (self.macs_original - self.macs_original / self.speedup)

    def _normalize(self, scores: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """Torch-Pruning's per-group normalisers, over the channels that are not being pruned."""
        if self.normalizer == "none":
            return scores
        reduce = {"max": torch.max, "mean": torch.mean, "sum": torch.sum}[self.normalizer]
        return scores / reduce(scores[basis]).clamp_min(TINY)

    def ranked_candidates(self, t: int) -> list[tuple[str, int]]:
        """Every channel that may be picked now, lowest normalised score first (ties: group
        order, then channel number)."""
        raw = self.host.raw_scores()
        self.cooldown = [entry for entry in self.cooldown if entry[2] > t]
        blocked = defaultdict(set)
        for pick in self.pending:
            blocked[pick.group].add(pick.channel)
        pending = {name: set(channels) for name, channels in blocked.items()}
        for name, channel, _ in self.cooldown:
            blocked[name].add(channel)
        scores, owners = [], []
        for name, group in self.host.groups.items():
            if raw.get(name) is None:
                continue
            basis = torch.ones(group.size, dtype=torch.bool)
            basis[list(pending.get(name, ()))] = False
            normalized = self._normalize(raw[name].float().cpu(), basis)
            allowed = [c for c in range(group.size) if c not in blocked[name]]
            scores.append(normalized[allowed])
            owners += [(name, c) for c in allowed]
        if not scores:
            return []
        order = torch.sort(torch.cat(scores), stable=True).indices.tolist()
        return [owners[i] for i in order]

    def _select(self, t: int) -> list[Pick]:
        """Pick the lowest-ranked channels until the projected MACs meet the target."""
        target = self.target_macs()
        if self.projected_macs <= target:
            return []
        alive = {name: group.size for name, group in self.host.groups.items()}
        for pick in self.pending:
            alive[pick.group] -= 1
        norms: dict[str, list[float]] = {}
        picked: list[Pick] = []
        for name, channel in self.ranked_candidates(t):
            if self.projected_macs <= target:
                break
            if alive[name] <= 1:  # a layer keeps at least one channel
                continue
            if name not in norms:
                norms[name] = self.host.groups[name].sq_norms().sqrt().tolist()
            pick = Pick(name, channel, t, norms[name][channel])
            self.pending.append(pick)
            self._apply_pick(pick, -1)
            alive[name] -= 1
            picked.append(pick)
        if self.projected_macs > target:
            raise PruneBenchError(
                f"pruner.speedup: the target {self.speedup}x cannot be reached: no channel left to pick at step {t} "
                f"(projected {self.macs_original / self.projected_macs:.3f}x); no record was written")
        self.counts["picked"] += len(picked)
        by_group = defaultdict(list)
        for pick in picked:
            by_group[pick.group].append(pick.channel)
        for name, channels in by_group.items():
            self.log.append({"step": t, "event": "pick", "group": name, "channels": sorted(channels)})
        return picked

    # ------------------------------------------------------------------ removal
    def _remove(self, picks: list[Pick], t: int) -> None:
        """Remove the picked channels physically (Torch-Pruning), then renumber what is left."""
        by_group = defaultdict(list)
        for pick in picks:
            by_group[pick.group].append(pick.channel)
        kept: dict[str, list] = {}
        for name, channels in by_group.items():
            for param, entries in self.host.groups[name].kept_entries(channels).items():
                kept.setdefault(param, []).extend(entries)
        for name, channels in by_group.items():
            self.host.groups[name].remove(channels)
            self.log.append({"step": t, "event": "remove", "group": name, "channels": sorted(channels)})
        removed = {id(pick) for pick in picks}
        self.pending = [p for p in self.pending if id(p) not in removed]
        for pick in self.pending:
            pick.channel -= sum(c < pick.channel for c in by_group.get(pick.group, ()))
        for entry in self.cooldown:
            entry[1] -= sum(c < entry[1] for c in by_group.get(entry[0], ()))
        self.counts["removed"] += len(picks)
        self.host.removed(kept)
        self.host.refresh()
        for param, entries in kept.items():
            self._kept.setdefault(param, []).extend(entries)
        self._project()

    # ------------------------------------------------------------------ end of the run
    def finish(self, evaluate: Callable[[nn.Module], dict]) -> dict:
        if self.pending:
            raise PruneBenchError(f"pruner.sp_steps: {len(self.pending)} picked channels were still decaying when "
                                  f"training ended; lengthen pruner.finetune.epochs or shorten sp_steps")
        model = self.ctx.model
        input_size = tuple(self.example.shape)
        params, macs = count_params_macs(model, input_size)
        if macs > self.macs_original / self.speedup:
            raise PruneBenchError(f"pruner.speedup: achieved {self.macs_original / macs:.4f}x misses the target "
                                  f"{self.speedup}x; no record was written")
        original = self._original_model()
        tp_ops_original = tp.utils.count_ops_and_params(original, self.example)[0]
        tp_ops = tp.utils.count_ops_and_params(model, self.example)[0]
        repeats = self.cfg["latency_repeats"]
        batch = self.example.new_zeros((128, *input_size[1:]))
        latency_original = inference_latency(original, batch, repeats)
        latency = inference_latency(model, batch, repeats)
        self.results = {
            "macs_original": self.macs_original, "macs": macs,
            "params_original": self.params_original, "params": params,
            "flops_pct": 100.0 * macs / self.macs_original,
            "params_pct": 100.0 * params / self.params_original,
            "speedup_achieved": self.macs_original / macs,
            "tp_ops_pct": 100.0 * float(tp_ops) / float(tp_ops_original),
            "latency_ms": {"original": 1e3 * latency_original, "slimmed": 1e3 * latency,
                           "ratio": latency / latency_original, "batch": 128, "repeats": repeats,
                           "device": str(self.ctx.device)},
        }
        return {}

    def _original_model(self) -> nn.Module:
        """The unpruned model (its shapes, for counts and latency), laid out as the pruned one."""
        model = self.ctx.model_spec.build().to(self.ctx.device)
        return model.to(memory_format=torch.channels_last) if _is_channels_last(self.ctx.model) else model

    def report(self) -> dict:
        if not hasattr(self, "ctx"):
            return {}
        model = self.ctx.model
        macs = self.mac_counter.total()
        params = sum(p.numel() for p in model.parameters())
        return {
            "method": "dpm", "reconstruction": RECONSTRUCTION, "host": self.cfg["host"], "decay": self.decay,
            "criterion": self.cfg["importance"]["criterion"] if self.cfg["host"] == "bnscale" else "group_l2",
            "normalizer": self.normalizer, "speedup_target": self.speedup,
            "macs_original": self.macs_original, "macs": macs,
            "params_original": self.params_original, "params": params,
            "flops_pct": 100.0 * macs / self.macs_original, "params_pct": 100.0 * params / self.params_original,
            "speedup_achieved": self.macs_original / macs,
            "groups": dict(self.counts), "pending": len(self.pending),
            "events_planned": self.events,
            "channels": {name: shape for name, shape in layer_shapes(model).items() if len(shape) == 2},
            **self.results,
            "event_log": self.log,
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "pending": [[p.group, p.channel, p.step, p.norm_init] for p in self.pending],
            "cooldown": [list(entry) for entry in self.cooldown],
            "log": self.log, "counts": dict(self.counts), "target_index": self.target_index,
            "macs_original": self.macs_original, "params_original": self.params_original,
            "host": self.host.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.pending = [Pick(*entry) for entry in state["pending"]]
        self.cooldown = [list(entry) for entry in state["cooldown"]]
        self.log, self.counts = list(state["log"]), dict(state["counts"])
        self.target_index = state["target_index"]
        self.macs_original, self.params_original = state["macs_original"], state["params_original"]
        self.host.load_state_dict(state["host"])
        self._project()

    def architecture(self) -> dict | None:
        if not hasattr(self, "ctx"):
            return None
        return {"model": self.ctx.model_spec.as_dict(), "layers": layer_shapes(self.ctx.model)}

    def restore_architecture(self, model: nn.Module, architecture: dict) -> nn.Module:
        return restore_shapes(model, architecture["layers"])


def _is_channels_last(model: nn.Module) -> bool:
    for p in model.parameters():
        if p.dim() == 4 and min(p.shape) > 1:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


@torch.inference_mode()
def inference_latency(model: nn.Module, batch: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward pass of `batch` (eval mode), after one warm-up pass."""
    was_training = model.training
    model.eval()
    batch = batch.contiguous(memory_format=torch.channels_last) if _is_channels_last(model) else batch
    synchronize = torch.cuda.synchronize if batch.is_cuda else (lambda: None)
    model(batch)
    synchronize()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        model(batch)
        synchronize()
        seconds.append(time.perf_counter() - started)
    model.train(was_training)
    return statistics.median(seconds)
