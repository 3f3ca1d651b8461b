"""DPM, the Decay Pruning Method (Yang et al. 2024, arXiv 2406.03879), on a host pruner
(hosts.py): a picked channel group is not removed at once but decays to zero while it keeps
training (Smooth Pruning, SP), and a decaying group whose gradient says it is wanted is released
(Self-Rectifying, SR). Equations and every open choice: docs/methods/dpm2024.md.

DPM's authors published no code. Everything below the two published ideas is this project's
reconstruction, each piece a config option (conf/pruner/dpm.yaml):
- SP: for n = 1..N (`sp_steps`) after each optimizer step, all slices of the group (as the
  host lists them) are rescaled so their joint L2 norm is L_target(n) = L_init (N - n) / N
  (`sp_schedule: linear`; `cosine`: L_init (1 + cos(pi n / N)) / 2), keeping the direction the
  optimizer gave. At n = N the group is zero.
- SR, at every decay step while a replacement picked then could still decay fully before the
  stage ends: C_rate = (|x~| - |x|) / |x|, the growth of the group's norm by the optimizer
  update (|x| before the update, |x~| after); C_len = |grad x| / mean |grad x'| over the other
  channels of the same group. Released when C_rate > T_rate and (`sr_logic: and`; `or`)
  C_len > T_len; a released group keeps its current weights and a replacement is picked so the
  target still holds.

Two cadences, by host:
- DepGraph and BN-scale (iterative): the pruning phase is the first `prune_epochs` of the
  fine-tune stage; at `prune_steps` events the target FLOPs fall linearly from the original to
  original / `speedup`, FLOPs counted by the host's paper's counter (Torch-Pruning's), and the
  host's lowest-ranked channels are picked until that counter, with every picked channel counted
  as removed, meets the target: the pick that crosses it is the last one. A zero group is removed
  physically at once; `decay: none` removes picks at the event. A released channel cannot be
  picked for `sr_cooldown` steps and replacements are picked at once.
- OTOv2: its optimizer, DHSPG, trains the whole prune stage and picks the groups itself (the
  half-space projection). With SP it hands each group it would zero over (projection "defer"),
  DPM decays it over N steps and DHSPG then holds it at zero; SR releases a group back to DHSPG's
  normally trained groups and DHSPG names the replacement. At the stage's last step every zero
  group is removed physically.

Per step of the pruning stage (t = completed steps):
  backward -> after_backward: gradient scores for the host (taylor); for SR the decaying groups'
              norms before the update and their gradient norms
  optimizer.step()
  after_step: the decay step of every pending pick (release, or rescale, or at n = N zero), then a
              selection (iterative: at an event, or to replace released picks; OTOv2: DHSPG's), then
              the physical removal (Torch-Pruning); the model is handed back and the loop rebuilds
              optimizer and scheduler, keeping the surviving entries' state (carry_optimizer_state).
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from ...errors import ConfigError, PruneBenchError
from ...metrics import MacCounter, count_params_macs
from ...targets import label
from ..base import Pruner, StageSpec, TrainContext, pretrain_stage, stage_sections
from .groups import slice_optimizer_state
from .hosts import Count, SparseLearning, build_host, example_input
from .shapes import layer_shapes, restore_shapes

TINY = torch.finfo(torch.float32).tiny
RESCALE_TOLERANCE = 1e-6  # of L_init: how close a decaying group's norm must come to its target
RESCALE_PASSES = 50  # joint rescales of channels that share entries; more means it does not converge
RECONSTRUCTION = ("DPM's code is not public: the SP schedule, the SR criteria C_rate and C_len, their thresholds and "
                  "logic, the cooldown, replacement picks and the selection cadence are this project's reconstruction "
                  "(docs/methods/dpm2024.md)")


class RescaleDidNotConverge(RuntimeError):
    """SP's joint rescale of channels that share entries did not bring every norm to its target."""


@dataclass
class Pick:
    """A channel the host picked: its group, its channel number there (numbers shift when
    lower channels of the group are removed), when it was picked, and its norm then (L_init)."""

    group: str
    channel: int
    step: int
    norm_init: float
    length: int = 0  # N for this pick (0: sp_steps); OTOv2 shortens it to the steps its stage has left


class DPMPruner(Pruner):
    """The run's stages: the shared dense pretraining, the shared sparse stage (with
    sparse_learning), then the fine-tune stage in the run's folder, whose first prune_epochs are
    the pruning phase. On OTOv2: the shared pretraining (the epochs before DHSPG partitions),
    then the prune stage that DHSPG trains."""

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
        self.otov2 = cfg["host"] == "otov2"
        self.sr_rate_baseline = resolved_rate_baseline(cfg)
        self.pending: list[Pick] = []
        self.cooldown: list[list] = []  # [group, channel, first step it may be picked again]
        self.log: list[dict] = []
        self.counts = {"picked": 0, "released": 0, "removed": 0}
        self.target_index = -1  # the last selection event passed (-1: none yet)
        self.originals: dict = {}  # params and FLOPs of the unpruned model, by both counters
        self.results: dict = {}
        self._kept: dict = {}  # entries that survived the last removal (for the optimizer state)
        self._before: dict = {}  # SR: per group, its norms before the update and C_len of its picks
        self._reselect = False  # SR released picks: select replacements

    # ------------------------------------------------------------------ stages
    def stages(self, cfg) -> list[StageSpec]:
        stages = [pretrain_stage(cfg)]
        if self.sparse_learning:
            section = cfg.pruner.sparse
            optimizer, scheduler, trainer = stage_sections(cfg, "sparse")
            key = {"host": cfg.pruner.host, "sparse": OmegaConf.to_container(section, resolve=True)}
            stages.append(StageSpec("sparse", "sparse", optimizer, scheduler, trainer, cfg.seed + 1, self.sparse_hooks,
                                    shared_as=f"{label(cfg.model)}_{cfg.pruner.host}-sparse", key=key))
        optimizer, scheduler, trainer = stage_sections(cfg, "finetune")
        name = "prune" if self.otov2 else "finetune"
        stages.append(StageSpec(name, "prune", optimizer, scheduler, trainer, cfg.seed + 2, lambda: self))
        return stages

    def sparse_hooks(self) -> Pruner:
        """The sparse stage's hooks: the host's group-sparsity regulariser on the gradients."""
        importance = self.cfg["importance"]
        host = build_host(self.cfg["host"], importance["group_reduction"], importance["criterion"])
        return SparseLearning(host, float(self.cfg["sparse"]["reg"]))

    def optimizer(self, model: nn.Module, ctx: TrainContext, optimizer_cfg):
        """OTOv2's stage trains with DHSPG over the model's zero-invariant groups."""
        if not self.otov2:
            return None
        host = build_host("otov2", "mean", "gamma")
        return host.optimizer(model, example_input(ctx), optimizer_cfg, self.cfg["otov2"],
                              defer=self.decay != "none", seed=ctx.seed)

    # ------------------------------------------------------------------ setup
    def start(self, ctx: TrainContext) -> None:
        self.ctx = ctx
        importance = self.cfg["importance"]
        self.host = build_host(self.cfg["host"], importance["group_reduction"], importance["criterion"])
        self.normalizer = importance["normalizer"]
        if self.normalizer == "auto":
            self.normalizer = self.host.default_normalizer
        self.example = example_input(ctx)
        self.host.attach(ctx.model, self.example, ctx.optimizer)
        self.mac_counter = MacCounter(ctx.model, tuple(self.example.shape))
        self.originals = self.model_counts(ctx.model)
        self.replacement_costs = None
        if self.otov2:
            self.originals["zero_groups_target"] = ctx.optimizer.target_zero_count
            if self.sr and self.cfg["otov2"]["replacement"] == "cost":  # per group channel, at the stage's shapes
                self.replacement_costs = {name: [self.channel_macs(name, c) for c in range(group.size)]
                                          for name, group in self.host.groups.items()}
        self.plan(ctx.steps_per_epoch, ctx.total_steps // ctx.steps_per_epoch)
        self.project()

    def model_counts(self, model: nn.Module) -> dict:
        """Params and FLOPs by the host's paper's counter and by conv + linear MACs."""
        paper = self.host.count(model, self.example)
        params, macs = count_params_macs(model, tuple(self.example.shape))
        return {"paper": {"params": paper.params, "ops": paper.ops, "counter": paper.counter},
                "conv_linear": {"params": params, "macs": macs}}

    def plan(self, steps_per_epoch: int, epochs: int) -> None:
        """The pruning stage's schedule: the selection events, and how long SR may act. Raises
        ConfigError when it does not fit (checked for every job before any trains)."""
        total = epochs * steps_per_epoch
        self.total_steps = total
        # SR releases only while a replacement picked then can still decay fully in the stage
        self.sr_until = total - self.sp_steps
        if self.otov2:
            if self.decay != "none" and total <= self.sp_steps:
                raise ConfigError(f"pruner.sp_steps: {self.sp_steps} decay steps do not fit in the prune stage's "
                                  f"{total} steps")
            partition = self.cfg["otov2"]["partition_step"]
            if partition >= total:
                raise ConfigError(f"pruner.otov2.partition_step: {partition} is not inside the prune stage's {total} steps")
            self.events, self._event_of = [], {}
            return
        phase = self.cfg["prune_epochs"] * steps_per_epoch
        n_events = self.cfg["prune_steps"]
        if n_events > phase:
            raise ConfigError(f"pruner.prune_steps: {n_events} events do not fit in the pruning phase's {phase} steps")
        if self.decay != "none" and total < phase + self.sp_steps:
            raise ConfigError(f"pruner.sp_steps: a group picked at the end of the pruning phase (step {phase}) needs "
                              f"{self.sp_steps} more steps, but the fine-tune stage has {total} in all")
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
        zeroed = self._decay_step(t) if self.decay != "none" and self.pending else []
        if self.otov2:
            return self._after_dhspg_step(t, zeroed)
        if t in self._event_of:
            self.target_index = self._event_of[t]
        picked = self.select(t) if t in self._event_of or self._reselect else []
        self._reselect = False
        if t in self._event_of:
            self.host.reset_scores()
        if self.decay == "none":
            zeroed += picked
        if not zeroed:
            return None
        self._remove(zeroed, t)
        return self.ctx.model

    def _after_dhspg_step(self, t: int, zeroed: list[Pick]) -> nn.Module | None:
        """OTOv2: groups SP decayed to zero are held there by DHSPG; the groups DHSPG's projection
        took this step decay from now on (SP) or are already zero (decay none); at the stage's
        last step every zero group goes."""
        if zeroed:
            self.host.hold_zero([(p.group, p.channel) for p in zeroed])
            self._log_channels(t, "zero", [(p.group, p.channel) for p in zeroed])
            done = {id(p) for p in zeroed}
            self.pending = [p for p in self.pending if id(p) not in done]
        selected = self.host.selected()
        if selected:
            self.counts["picked"] += len(selected)
            if self.decay == "none":
                self._log_channels(t, "zero", selected)
            else:
                # a group picked in the stage's last N steps decays over the steps left
                length = min(self.sp_steps, self.total_steps - t)
                norms = {name: self.host.groups[name].sq_norms().sqrt().tolist() for name, _ in selected}
                picks = [Pick(name, channel, t, norms[name][channel], length) for name, channel in selected]
                self._log_channels(t, "pick", selected)
                if length > 0:
                    self.pending += picks
                else:  # picked at the last step: zero now
                    rescale(self.host.groups, {name: (torch.tensor([c for g, c in selected if g == name],
                                                                   device=self.ctx.device),
                                                      torch.zeros(sum(g == name for g, _ in selected),
                                                                  device=self.ctx.device),
                                                      torch.ones(sum(g == name for g, _ in selected),
                                                                 device=self.ctx.device))
                                                for name in {g for g, _ in selected}})
                    self.host.hold_zero(selected)
        if t != self.total_steps:
            return None
        zero = [Pick(name, channel, t, 0.0) for name, channel in self.host.zero_groups()]
        if not zero:
            return None
        self._remove(zero, t)
        return self.ctx.model

    def carry_optimizer_state(self, state: dict) -> dict | None:
        if self.otov2:
            return None  # DHSPG is built anew on the slimmed model, at the stage's end
        if not self._kept:
            return state
        names = [name for name, _ in self.ctx.model.named_parameters()]
        state = slice_optimizer_state(state, names, self._kept)
        self._kept = {}
        return state

    # ------------------------------------------------------------------ SP and SR
    def _pending_by_group(self) -> dict[str, list[Pick]]:
        by_group = defaultdict(list)
        for pick in self.pending:
            by_group[pick.group].append(pick)
        return dict(by_group)

    @torch.no_grad()
    def _decay_step(self, t: int) -> list[Pick]:
        """One SP step for every pending pick (after the optimizer step); SR releases first.
        Returns the picks that reached n = N (now zero)."""
        finished, released, plan = [], [], {}
        device = self.ctx.device
        for name, picks in self._pending_by_group().items():
            group = self.host.groups[name]
            channels = torch.tensor([p.channel for p in picks], device=device)
            n = torch.tensor([t - p.step for p in picks], device=device, dtype=torch.float32)
            norm_init = torch.tensor([p.norm_init for p in picks], device=device, dtype=torch.float32)
            length = torch.tensor([p.length or self.sp_steps for p in picks], device=device, dtype=torch.float32)
            release = torch.zeros(len(picks), dtype=torch.bool, device=device)
            if name in self._before:
                norms = group.sq_norms().sqrt()[channels]
                before, c_len = self._before[name]
                c_rate = (norms - before) / before.clamp_min(TINY)
                threshold = self.cfg["T_rate"]
                if self.sr_rate_baseline == "decay":  # what SP takes off at this step, as a fraction of the norm
                    threshold = threshold + sp_step_fraction(n, length, self.cfg["sp_schedule"])
                rate_ok, len_ok = c_rate > threshold, c_len > self.cfg["T_len"]
                release = rate_ok & len_ok if self.cfg["sr_logic"] == "and" else rate_ok | len_ok
            decaying = ~release
            plan[name] = (channels[decaying], sp_target(norm_init, n, length, self.cfg["sp_schedule"])[decaying], norm_init[decaying])
            release_list, done = release.tolist(), ((n >= length) & decaying).tolist()
            for index, pick in enumerate(picks):
                if release_list[index]:
                    released.append((pick, float(c_rate[index]), float(c_len[index])))
                elif done[index]:
                    finished.append(pick)
        rescale(self.host.groups, plan)
        if released:
            self._release(released, t)
        return finished

    def _release(self, released: list[tuple[Pick, float, float]], t: int) -> None:
        """SR. On OTOv2 DHSPG names a replacement for each released group; a group it cannot
        replace is not released and decays on (else the group sparsity target would be out of
        reach). On the iterative hosts the next selection picks the replacements."""
        replaced_by: dict[int, tuple[str, int]] = {}
        if self.otov2:
            replacements = self.host.release([(pick.group, pick.channel) for pick, _, _ in released],
                                             self.replacement_costs)
            kept = [entry for entry, replacement in zip(released, replacements) if replacement is None]
            # tried again at each later step while it decays: counted per step, not logged
            self.counts["release_refused_steps"] = self.counts.get("release_refused_steps", 0) + len(kept)
            replaced_by = {id(entry[0]): replacement for entry, replacement in zip(released, replacements)
                           if replacement is not None}
            released = [entry for entry, replacement in zip(released, replacements) if replacement is not None]
        else:
            for pick, _, _ in released:
                self._apply_pick(pick, +1)
                self.cooldown.append([pick.group, pick.channel, t + self.cfg["sr_cooldown"]])
            self._reselect = True
        by_group = defaultdict(list)
        for pick, c_rate, c_len in released:
            self.pending.remove(pick)
            by_group[pick.group].append((pick, c_rate, c_len))
        for name, entries in by_group.items():
            event = {"step": t, "event": "release", "group": name,
                     "channels": [pick.channel for pick, _, _ in entries],
                     "c_rate": [round(c_rate, 6) for _, c_rate, _ in entries],
                     "c_len": [round(c_len, 6) for _, _, c_len in entries],
                     "n": [t - pick.step for pick, _, _ in entries],
                     "macs": [self.channel_macs(name, pick.channel) for pick, _, _ in entries]}
            if replaced_by:  # OTOv2: DHSPG's replacement for each, and what it would remove
                replacements = [replaced_by[id(pick)] for pick, _, _ in entries]
                event["replaced_by"] = [list(r) for r in replacements]
                event["replacement_macs"] = [self.channel_macs(*r) for r in replacements]
            self.log.append(event)
        self.counts["released"] += len(released)

    def channel_macs(self, group: str, channel: int) -> int:
        """The conv + linear MACs per image that go with one channel of a group at the current
        shapes (its output filters and the next layers' input columns)."""
        macs = 0
        for change in self.host.groups[group].layer_changes:
            k = change.per_channel[channel]
            if not k or change.kind == "bn":
                continue
            out_channels, in_channels = MacCounter.channels(change.module)
            unit = (self.mac_counter.layer_macs(change.module, 1, in_channels) if change.kind == "out"
                    else self.mac_counter.layer_macs(change.module, out_channels, 1))
            macs += k * unit
        return macs

    # ------------------------------------------------------------------ selection (iterative hosts)
    def project(self) -> None:
        """The current shapes, a copy of the model to count candidate shapes on, and the
        projected conv + linear channels and MACs with every pending pick counted as removed."""
        model = self.ctx.model
        self.names = {module: name for name, module in model.named_modules()}
        self.shapes = layer_shapes(model)
        if self.otov2:  # DHSPG picks by itself: no projection to select with
            return
        self.counting_model = copy.deepcopy(model).cpu().float().eval()  # to cut candidate shapes on
        self.counting_input = self.example.detach().cpu()
        self.projected = {m: MacCounter.channels(m) for m in self.mac_counter.layers}
        self.projected_macs = self.mac_counter.total()
        for pick in self.pending:
            self._apply_pick(pick, -1)

    def _apply_pick(self, pick: Pick, sign: int) -> None:
        """Update the conv + linear projection for a pick (sign -1) or a release (+1)."""
        for change in self.host.groups[pick.group].layer_changes:
            k = change.per_channel[pick.channel]
            if not k or change.kind == "bn":
                continue
            counts = self.projected[change.module]
            before = self.mac_counter.layer_macs(change.module, *counts)
            counts[0 if change.kind == "out" else 1] += sign * k
            self.projected_macs += self.mac_counter.layer_macs(change.module, *counts) - before

    def projected_count(self, extra: list[Pick]) -> Count:
        """The paper's count of the model with every pending pick and `extra` removed: the
        shapes are cut on a copy and counted by the host's counter (exact; what matters is the
        number of channels per layer, not which)."""
        shapes = {name: list(shape) for name, shape in self.shapes.items()}
        for pick in [*self.pending, *extra]:
            for change in self.host.groups[pick.group].layer_changes:
                k = change.per_channel[pick.channel]
                shape = shapes[self.names[change.module]]
                shape[{"out": 1, "in": 0, "bn": 0}[change.kind]] -= k
        return self.host.count(restore_shapes(copy.deepcopy(self.counting_model), shapes), self.counting_input)

    def target_ops(self) -> float:
        """The FLOPs (the paper's counter) the schedule asks for now: linear from the original at
        the phase start to original / speedup at the last event."""
        original = self.originals["paper"]["ops"]
        if self.target_index < 0:
            return float(original)
        fraction = (self.target_index + 1) / len(self.events)
        return original - fraction * (original - original / self.speedup)

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

    def _candidate_picks(self, t: int) -> list[Pick]:
        """The channels in the order they would be picked, each layer keeping one channel."""
        alive = {name: group.size for name, group in self.host.groups.items()}
        for pick in self.pending:
            alive[pick.group] -= 1
        norms: dict[str, list[float]] = {}
        sequence = []
        for name, channel in self.ranked_candidates(t):
            if alive[name] <= 1:  # a layer keeps at least one channel
                continue
            if name not in norms:
                norms[name] = self.host.groups[name].sq_norms().sqrt().tolist()
            sequence.append(Pick(name, channel, t, norms[name][channel]))
            alive[name] -= 1
        return sequence

    def _shortest_prefix(self, sequence: list[Pick], target: float, now: float) -> int | None:
        """The fewest leading picks of `sequence` after which the paper's counter meets `target`
        (it falls with every pick), or None when even all of them do not. The conv + linear
        projection, scaled by the counters' ratio now, guesses where; exact counts around the
        guess find it."""
        cumulative, macs = [], self.projected_macs
        for pick in sequence:
            self._apply_pick(pick, -1)
            cumulative.append(self.projected_macs)
        for pick in sequence:
            self._apply_pick(pick, +1)
        self.projected_macs = macs
        ratio = now / max(macs, 1)
        guess = next((k + 1 for k, value in enumerate(cumulative) if value * ratio <= target), len(sequence))
        exact: dict[int, float] = {0: now}

        def ops(k: int) -> float:
            if k not in exact:
                exact[k] = self.projected_count(sequence[:k]).ops
            return exact[k]

        if ops(len(sequence)) > target:
            return None
        low, high = 0, len(sequence)  # ops(low) > target >= ops(high)
        step = 1
        if ops(guess) <= target:
            high = guess
            while high - step > low and ops(high - step) <= target:
                high, step = high - step, 2 * step
            low = max(low, high - step)
        else:
            low = guess
            while low + step < high and ops(low + step) > target:
                low, step = low + step, 2 * step
            high = min(high, low + step)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if ops(middle) <= target else (middle, high)
        return high

    def select(self, t: int) -> list[Pick]:
        """Pick the lowest-ranked channels until the paper's counter meets the target."""
        target = self.target_ops()
        now = self.projected_count([]).ops
        if now <= target:
            return []
        sequence = self._candidate_picks(t)
        k = self._shortest_prefix(sequence, target, now)
        if k is None:
            raise PruneBenchError(
                f"pruner.speedup: the target {self.speedup}x cannot be reached: no channel left to pick at step {t} "
                f"(projected {self.originals['paper']['ops'] / self.projected_count(sequence).ops:.3f}x); "
                "no record was written")
        picked = sequence[:k]
        before_last = self.projected_count(picked[:-1]).ops
        self.pending += picked
        for pick in picked:
            self._apply_pick(pick, -1)
        self.counts["picked"] += len(picked)
        self._log_channels(t, "pick", [(p.group, p.channel) for p in picked])
        self.log.append({"step": t, "event": "select", "target_ops": target, "ops": self.projected_count([]).ops,
                         "ops_before_last_pick": before_last})
        return picked

    def _log_channels(self, t: int, event: str, channels: list[tuple[str, int]]) -> None:
        by_group = defaultdict(list)
        for name, channel in channels:
            by_group[name].append(channel)
        for name, group_channels in by_group.items():
            self.log.append({"step": t, "event": event, "group": name, "channels": sorted(group_channels)})

    # ------------------------------------------------------------------ removal
    def _remove(self, picks: list[Pick], t: int) -> None:
        """Remove the channels physically (Torch-Pruning), then renumber what is left."""
        by_group = defaultdict(list)
        for pick in picks:
            by_group[pick.group].append(pick.channel)
        kept: dict[str, list] = {}
        for name, channels in by_group.items():
            for param, entries in self.host.groups[name].kept_entries(channels).items():
                kept.setdefault(param, []).extend(entries)
        for name, channels in by_group.items():
            self.host.groups[name].remove(channels)
        self._log_channels(t, "remove", [(p.group, p.channel) for p in picks])
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
        self.project()

    # ------------------------------------------------------------------ end of the stage
    def finish(self, evaluate: Callable[[nn.Module], dict]) -> dict:
        if self.pending:
            raise PruneBenchError(f"pruner.sp_steps: {len(self.pending)} picked channels were still decaying when "
                                  f"training ended; lengthen pruner.finetune.epochs or shorten sp_steps")
        counts = self.model_counts(self.ctx.model)
        paper, original = counts["paper"], self.originals["paper"]
        speedup = original["ops"] / paper["ops"]
        if self.otov2:
            target = self.originals["zero_groups_target"]
            if self.counts["removed"] < target:
                raise PruneBenchError(
                    f"pruner.otov2.target_group_sparsity: {self.counts['removed']} of the {target} groups it asks for "
                    "were zero when the stage ended; lengthen pruner.finetune.epochs or start the partition earlier")
        elif speedup < self.speedup:
            raise PruneBenchError(f"pruner.speedup: achieved {speedup:.4f}x misses the target {self.speedup}x "
                                  "(the paper's counter); no record was written")
        conv_linear, conv_linear_original = counts["conv_linear"], self.originals["conv_linear"]
        self.results = {
            "counter": paper["counter"],
            "params_original": original["params"], "params": paper["params"],
            "ops_original": original["ops"], "ops": paper["ops"],
            "flops_pct": 100.0 * paper["ops"] / original["ops"],
            "params_pct": 100.0 * paper["params"] / original["params"],
            "speedup_achieved": speedup,
            "conv_linear": {
                "params_original": conv_linear_original["params"], "params": conv_linear["params"],
                "macs_original": conv_linear_original["macs"], "macs": conv_linear["macs"],
                "flops_pct": 100.0 * conv_linear["macs"] / conv_linear_original["macs"],
                "speedup": conv_linear_original["macs"] / conv_linear["macs"]},
        }
        return {}

    def report(self) -> dict:
        if not hasattr(self, "ctx"):
            return {}
        report = {
            "method": "dpm", "reconstruction": RECONSTRUCTION, "host": self.cfg["host"], "decay": self.decay,
            "criterion": {"bnscale": self.cfg["importance"]["criterion"], "otov2": "dhspg"}.get(self.cfg["host"],
                                                                                               "group_l2"),
            "normalizer": self.normalizer, "speedup_target": None if self.otov2 else self.speedup,
            "groups": dict(self.counts), "pending": len(self.pending), "events_planned": self.events,
            "channels": {name: shape for name, shape in layer_shapes(self.ctx.model).items() if len(shape) == 2},
            **self.results,
            "event_log": self.log,
        }
        if self.otov2:
            report["group_sparsity_target"] = self.cfg["otov2"]["target_group_sparsity"]
        return report

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "pending": [[p.group, p.channel, p.step, p.norm_init, p.length] for p in self.pending],
            "cooldown": [list(entry) for entry in self.cooldown],
            "log": self.log, "counts": dict(self.counts), "target_index": self.target_index,
            "originals": self.originals, "reselect": self._reselect, "host": self.host.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.pending = [Pick(*entry) for entry in state["pending"]]
        self.cooldown = [list(entry) for entry in state["cooldown"]]
        self.log, self.counts = list(state["log"]), dict(state["counts"])
        self.target_index = state["target_index"]
        self.originals, self._reselect = state["originals"], state["reselect"]
        self.host.load_state_dict(state["host"])
        self.project()


def resolved_rate_baseline(cfg: dict) -> str:
    """SR's C_rate is compared with T_rate plus this baseline: zero, or the fraction of the
    group's norm SP takes off at the step (decay). auto: decay on OTOv2, zero on the others."""
    if cfg["sr_rate_baseline"] != "auto":
        return cfg["sr_rate_baseline"]
    return "decay" if cfg["host"] == "otov2" else "zero"


@torch.no_grad()
def sp_step_fraction(n: torch.Tensor, length: torch.Tensor, schedule: str) -> torch.Tensor:
    """The fraction of a decaying group's norm that SP's step n takes off: 1 - L(n) / L(n - 1)
    (linear: 1 / (N - n + 1)); 1 at the last step."""
    unit = torch.ones_like(n)
    before = sp_target(unit, n - 1, length, schedule)
    return 1 - sp_target(unit, n, length, schedule) / before.clamp_min(TINY)


@torch.no_grad()
def sp_target(norm_init: torch.Tensor, n: torch.Tensor, length: torch.Tensor, schedule: str) -> torch.Tensor:
    """SP's target norm after n of a pick's `length` decay steps: linear or cosine from its norm
    at pick time down to zero at n = length."""
    fraction = (n / length).clamp(max=1.0)
    if schedule == "cosine":
        return norm_init * 0.5 * (1 + torch.cos(math.pi * fraction))
    return norm_init * (1 - fraction)


def rescale(groups: dict, plan: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """Scale each decaying channel's slices so their joint norm is its target (`plan`: group ->
    (channels, targets, L_init)). Channels of two groups can share entries (a conv's output filter
    in one group holds input columns of another), so scaling one moves the other's norm: repeat
    until every norm is within RESCALE_TOLERANCE x L_init of its target (two or three passes in
    practice), or raise RescaleDidNotConverge."""
    for _ in range(RESCALE_PASSES):
        norms = {name: groups[name].sq_norms().sqrt()[channels] for name, (channels, _, _) in plan.items()}
        off = [((norms[name] - target).abs() - RESCALE_TOLERANCE * norm_init).max()
               for name, (_, target, norm_init) in plan.items() if target.numel()]
        if not off or float(torch.stack(off).max()) <= 0:
            return
        for name, (channels, target, _) in plan.items():
            group = groups[name]
            factors = torch.ones(group.size, device=target.device)
            factors[channels] = torch.where(norms[name] > 0, target / norms[name].clamp_min(TINY),
                                            torch.zeros_like(target))
            group.scale_(factors)
    worst = max(float(((norms[name] - target).abs() / norm_init.clamp_min(TINY)).max())
                for name, (_, target, norm_init) in plan.items() if target.numel())
    raise RescaleDidNotConverge(f"SP's rescale left a decaying group {worst:.3g} x L_init off its target norm after "
                                f"{RESCALE_PASSES} passes (a channel with no weight left cannot grow back to its target)")
