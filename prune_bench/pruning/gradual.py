"""Gradual pruning during training on the cubic schedule (docs/methods/fggp2024.md): GMP (Zhu &
Gupta 2017), FGGP (Zhu, Bezek, Goksel 2024, fixed-rate gradient-first gradual pruning) and the
FGGP authors' annealed baseline, magnitude-first with a cosine-annealed rate (`magfirst`; their
"GraNet in our framework", `Prune_GradfromW_Add_Grad`).

Selections at an event, global over the prunable set unless said, exact-k (N_p pruned):
  gmp       the N_p alive weights with the smallest |w|; `scope: layer` instead takes every
            layer l to its own schedule s_t,l (the cubic from the layer's starting sparsity to
            s_f), pruning its floor(n_l s_t,l) - (already pruned) smallest-|w| weights, as Zhu &
            Gupta prune each layer to s_t
  fggp      gradient first: the floor(r N_alive) smallest-|g| alive weights are candidates, the
            N_p of them with the smallest |w| are pruned; r fixed at 0.5. (`rate_schedule:
            cosine` anneals r: a gradient-first ablation, not the authors' annealed baseline.)
  magfirst  magnitude first: the N_p + floor(r (N_alive - N_p)) smallest-|w| alive weights are
            candidates, the floor(r (N_alive - N_p)) of them with the largest |g| are spared, so
            the N_p with the smallest |g| are pruned; r cosine-annealed from 0.5 to 0.005.

Per loop step (engine/loop.train_step calls the hooks):
  backward -> after_backward: at an event step, copies of the prunable weights as the forward
              pass used them (before this step's update) and, for the pruners that read it, of
              the raw minibatch gradient; then the gradients of pruned weights are zeroed
  optimizer.step()
  after_step: pruned weights are zeroed (one fused multiply); at an event step (t = step + 1
              completed steps) the new masks are selected from the copied weights and gradient,
              then weights and optimizer state (momentum, Adam moments) of the newly pruned
              entries are zeroed.
Why the pre-step weights: the authors prune right after optimizer.step() through
torch.nn.utils.prune, which ranks `module.weight` -- the masked weight the forward pass computed,
i.e. the weight before that step -- with that step's gradient (docs/methods/fggp2024.md). The copies
exist only at event steps and are let go after the event.
Since pruned gradients are masked and their optimizer state is zeroed when they are pruned, a
pruned weight gets no update from SGD (momentum, Nesterov, weight decay) or Adam; the multiply
after every step holds it at exactly zero whatever the optimizer does. Masks only shrink.

Counting: N_tot is the number of prunable weights (default: every conv and linear weight but
the first conv), and sparsity is reported over that set. The authors' code also counts biases
and the first conv in N_tot; this runner does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..registry import boolean, choice, in_range, integer
from .base import Pruner, TrainContext
from .erk import erk_masks
from .masks import MaskSet, select_prunable, smallest_k
from .schedules import cosine_rate, cubic_sparsity, event_steps, resolve_time


def _flat(tensors: dict[str, torch.Tensor], names) -> torch.Tensor:
    return torch.cat([tensors[name].reshape(-1) for name in names])


def _unflat(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    parts = flat.split([t.numel() for t in like.values()])
    return {name: part.view(t.shape) for (name, t), part in zip(like.items(), parts)}


def _alive_scores(values: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat |values| with +inf at pruned entries (never selected again), and the flat alive mask."""
    alive = _flat(masks, masks).bool()
    scores = _flat(values, masks).detach().abs().float()
    return torch.where(alive, scores, torch.full_like(scores, math.inf)), alive


def _check_n_prune(n_prune: int, alive: torch.Tensor) -> int:
    n_alive = int(alive.sum())
    if not 0 <= n_prune <= n_alive:
        raise ValueError(f"n_prune={n_prune}: must be in [0, {n_alive}] (the alive weights)")
    return n_alive


def gmp_masks(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], n_prune: int) -> dict[str, torch.Tensor]:
    """GMP event: prune the `n_prune` alive weights with the smallest |w|, globally across
    tensors. Returns new masks (True = kept); pruned entries stay pruned."""
    scores, alive = _alive_scores(weights, masks)
    _check_n_prune(n_prune, alive)
    return _unflat(alive & ~smallest_k(scores, n_prune), masks)


def gmp_layer_masks(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                    n_prune: dict[str, int]) -> dict[str, torch.Tensor]:
    """GMP event per layer (Zhu & Gupta 2017): prune the `n_prune[name]` alive weights with the
    smallest |w| within each tensor. Returns new masks (True = kept)."""
    kept = {}
    for name, mask in masks.items():
        scores, alive = _alive_scores({name: weights[name]}, {name: mask})
        _check_n_prune(n_prune[name], alive)
        kept[name] = (alive & ~smallest_k(scores, n_prune[name])).view(mask.shape)
    return kept


def fggp_masks(weights: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
               n_prune: int, rate: float = 0.5) -> dict[str, torch.Tensor]:
    """FGGP event (docs/methods/fggp2024.md): among the alive weights take the floor(rate * N_alive)
    with the smallest |gradient| as candidates, then prune the `n_prune` candidates with the
    smallest |w|. Ranking is global across tensors on raw |g| and |w|. When there are fewer
    candidates than `n_prune` (a small annealed rate), the candidates are the `n_prune`
    smallest-|g| weights, so exactly `n_prune` are pruned. Returns new masks (True = kept)."""
    grad_scores, alive = _alive_scores(grads, masks)
    n_alive = _check_n_prune(n_prune, alive)
    n_candidates = max(math.floor(rate * n_alive), n_prune)
    candidates = smallest_k(grad_scores, n_candidates)
    weight_scores, _ = _alive_scores(weights, masks)
    weight_scores = torch.where(candidates, weight_scores, torch.full_like(weight_scores, math.inf))
    return _unflat(alive & ~smallest_k(weight_scores, n_prune), masks)


SCOPES = ("global", "layer")
CANDIDATE_COUNTS = ("prune_plus_rest", "alive")


def magfirst_candidates(n_alive: int, n_prune: int, rate: float, count: str = "prune_plus_rest") -> int:
    """How many smallest-|w| weights are candidates in a magnitude-first event. prune_plus_rest:
    N_p + floor(rate * (N_alive - N_p)), the authors' code (to_add = int((remain - to_prune) * dr),
    candidates = to_prune + to_add); alive: max(floor(rate * N_alive), N_p), FGGP's count."""
    if count == "prune_plus_rest":
        return n_prune + math.floor(rate * (n_alive - n_prune))
    if count == "alive":
        return max(math.floor(rate * n_alive), n_prune)
    raise ValueError(f"candidates must be one of {CANDIDATE_COUNTS}, got {count!r}")


def magfirst_masks(weights: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                   n_prune: int, rate: float = 0.5, candidates: str = "prune_plus_rest") -> dict[str, torch.Tensor]:
    """Magnitude-first event, the FGGP authors' annealed baseline (docs/methods/fggp2024.md): the
    alive weights with the smallest |w| are candidates (how many: `magfirst_candidates`); those
    with the largest |gradient| among them are spared, i.e. the `n_prune` candidates with the
    smallest |gradient| are pruned. Global across tensors on raw |w| and |g|. Returns new masks
    (True = kept)."""
    weight_scores, alive = _alive_scores(weights, masks)
    n_alive = _check_n_prune(n_prune, alive)
    chosen = smallest_k(weight_scores, magfirst_candidates(n_alive, n_prune, rate, candidates))
    grad_scores, _ = _alive_scores(grads, masks)
    grad_scores = torch.where(chosen, grad_scores, torch.full_like(grad_scores, math.inf))
    return _unflat(alive & ~smallest_k(grad_scores, n_prune), masks)


class GradualPruner(Pruner):
    """GMP: at each event prune the smallest-|w| alive weights to reach the cubic schedule."""

    name = "gmp"
    needs_gradient = False
    selection = "magnitude (GMP)"

    def __init__(self, cfg):
        self.cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        self.event_log: list[dict] = []
        self.masks: MaskSet | None = None
        self._event_weights: dict[str, torch.Tensor] | None = None  # pre-step copies, event steps only
        self._grads: dict[str, torch.Tensor] | None = None

    # ---- hooks
    def plan(self, steps_per_epoch: int, epochs: int) -> None:
        """When the events fall in a run of steps_per_epoch x epochs steps. A run whose pruning
        span is not longer than `interval` would prune everything in one event at t_end: refused,
        with the way out (`events: n`), before anything is trained or written."""
        cfg = self.cfg
        total_steps = steps_per_epoch * epochs
        self.t_start = resolve_time(cfg["t_start"], total_steps, "pruner.t_start")
        self.t_end = resolve_time(cfg["t_end"], total_steps, "pruner.t_end")
        if self.t_start > self.t_end:
            raise ConfigError(f"pruner.t_start: step {self.t_start} comes after pruner.t_end (step {self.t_end})")
        span = self.t_end - self.t_start
        if cfg.get("events") is None and span > 0 and cfg["interval"] >= span:
            raise ConfigError(
                f"pruner.interval: {cfg['interval']} steps is not shorter than the pruning span (steps {self.t_start} "
                f"to {self.t_end} of this run's {total_steps}), so all pruning would happen in one event at step "
                f"{self.t_end}; set pruner.events=N for N events over the span, or a pruner.interval below {span}")
        self.events = event_steps(self.t_start, self.t_end, cfg.get("interval"), cfg.get("events"))
        self._event_set = set(self.events)

    def start(self, ctx: TrainContext) -> None:
        self.ctx = ctx
        cfg = self.cfg
        self.prunable = select_prunable(ctx.model, tuple(cfg["layers"]), cfg["skip_first_conv"], cfg["skip_last_linear"])
        if not self.prunable:
            raise ConfigError("pruner.layers: no prunable weights in this model with these options")
        self.plan(ctx.steps_per_epoch, ctx.total_steps // ctx.steps_per_epoch)
        self.masks = MaskSet(self.prunable, self._initial_masks(ctx.seed))
        # each layer's starting sparsity: where `scope: layer` starts its schedule
        self.layer_start = {name: (m.numel() - int(m.sum())) / m.numel() for name, m in self.masks.masks.items()}
        if cfg["scope"] == "layer":
            above = {name: s for name, s in self.layer_start.items() if s > cfg["sparsity"]}
            if above:
                name, s_layer = max(above.items(), key=lambda item: item[1])
                raise ConfigError(f"pruner.scope: layer: {name} starts at sparsity {s_layer:.4f} (ERK), above "
                                  f"pruner.sparsity {cfg['sparsity']}; masks only shrink, so use scope global or a higher sparsity")
        self.masks.apply_()
        self.masks.zero_optimizer_state_(ctx.optimizer)

    def after_backward(self, step: int) -> None:
        if step + 1 in self._event_set:
            # the weights the forward pass used (the authors' module.weight), before the update
            self._event_weights = {name: p.detach().clone() for name, p in self.prunable.items()}
            if self.needs_gradient:  # the current minibatch's raw gradient, before the masking below
                self._grads = {name: p.grad.detach().clone() for name, p in self.prunable.items()}
        self.masks.mask_grads_()

    def after_step(self, step: int) -> None:
        self.masks.apply_()
        if step + 1 in self._event_set:
            self.prune_event(step + 1)
        return None

    def report(self) -> dict:
        report = {"target": self.cfg["sparsity"], "start": self.start_label(), "selection": self.selection,
                  "scope": self.cfg["scope"]}
        if self.masks is None:
            return report
        n_kept = self.masks.n_kept()
        return {
            **report,
            "achieved": 1.0 - n_kept / self.n_total,
            "n_total": self.n_total,
            "n_pruned": self.n_total - n_kept,
            "counted": "prunable weights only (the authors' N_tot also counts biases and the first conv)",
            "events": len(self.event_log),
            "events_planned": len(self.events),
            "t_start": self.t_start,
            "t_end": self.t_end,
            "event_log": list(self.event_log),
            "per_layer": self.masks.per_layer_sparsity(),
        }

    def state_dict(self) -> dict:
        return {"masks": self.masks.state_dict(), "event_log": list(self.event_log)}

    def load_state_dict(self, state: dict) -> None:
        self.masks.load_state_dict(state["masks"])
        self.masks.apply_()
        self.event_log = list(state["event_log"])

    # ---- pruning
    @property
    def n_total(self) -> int:
        return self.masks.n_total()

    def start_label(self) -> str:
        s_init = self.cfg["init_sparsity"]
        return "dense" if s_init == 0 else f"erk{round(100 * s_init)}"

    def _initial_masks(self, seed: int) -> dict[str, torch.Tensor] | None:
        s_init = self.cfg["init_sparsity"]
        if s_init == 0:
            return None
        shapes = {name: tuple(p.shape) for name, p in self.prunable.items()}
        return erk_masks(shapes, 1.0 - s_init, seed)

    def scheduled_sparsity(self, t: int) -> float:
        return cubic_sparsity(t, self.cfg["init_sparsity"], self.cfg["sparsity"], self.t_start, self.t_end)

    def layer_quota(self, t: int) -> dict[str, int]:
        """scope: layer: how many weights each layer prunes at t to hold floor(n_l * s_t,l)."""
        quota = {}
        for name, mask in self.masks.masks.items():
            s_layer = cubic_sparsity(t, self.layer_start[name], self.cfg["sparsity"], self.t_start, self.t_end)
            n_pruned = mask.numel() - int(mask.sum())
            quota[name] = max(0, math.floor(mask.numel() * s_layer) - n_pruned)
        return quota

    @torch.no_grad()
    def prune_event(self, t: int) -> None:
        target = self.scheduled_sparsity(t)
        n_pruned = self.n_total - self.masks.n_kept()
        if self.cfg["scope"] == "layer":
            quota = self.layer_quota(t)
            n_prune = sum(quota.values())
        else:
            quota = None
            n_prune = max(0, math.floor(self.n_total * target) - n_pruned)  # the authors' N_p
        entry = {"step": t, "target": target, "pruned": n_prune}
        if n_prune > 0:
            if quota is not None:
                kept = gmp_layer_masks(self._event_weights, self.masks.masks, quota)
            else:
                kept = self.select(self._event_weights, n_prune, t, entry)
            self.masks.set_masks(kept)
            self.masks.apply_()
            self.masks.zero_optimizer_state_(self.ctx.optimizer)
        self._event_weights = self._grads = None
        entry["sparsity"] = (n_pruned + n_prune) / self.n_total
        self.event_log.append(entry)

    def select(self, weights: dict[str, torch.Tensor], n_prune: int, t: int, entry: dict) -> dict[str, torch.Tensor]:
        return gmp_masks(weights, self.masks.masks, n_prune)


class FGGPPruner(GradualPruner):
    """FGGP: at each event, candidates by smallest |gradient|, pruned by smallest |w|."""

    name = "fggp"
    needs_gradient = True

    @property
    def selection(self) -> str:
        if self.cfg["rate_schedule"] == "cosine":
            return "gradient-first, cosine-annealed rate (an ablation; not FGGP, not the authors' annealed baseline)"
        return "gradient-first, fixed rate (FGGP)"

    def rate(self, t: int) -> float:
        if self.cfg["rate_schedule"] == "cosine":
            return cosine_rate(t, self.cfg["rate"], self.cfg["rate_final"], self.ctx.total_steps)
        return self.cfg["rate"]

    def select(self, weights: dict[str, torch.Tensor], n_prune: int, t: int, entry: dict) -> dict[str, torch.Tensor]:
        entry["rate"] = rate = self.rate(t)
        return fggp_masks(weights, self._grads, self.masks.masks, n_prune, rate)


class MagnitudeFirstPruner(FGGPPruner):
    """The FGGP authors' annealed baseline: at each event, candidates by smallest |w|, spared by
    largest |gradient|, with the rate cosine-annealed (by default) over the whole run."""

    name = "magfirst"

    @property
    def selection(self) -> str:
        schedule = "cosine-annealed" if self.cfg["rate_schedule"] == "cosine" else "fixed"
        return f"magnitude-first, gradient-spared, {schedule} rate (the FGGP authors' annealed baseline)"

    def select(self, weights: dict[str, torch.Tensor], n_prune: int, t: int, entry: dict) -> dict[str, torch.Tensor]:
        entry["rate"] = rate = self.rate(t)
        return magfirst_masks(weights, self._grads, self.masks.masks, n_prune, rate, self.cfg["candidates"])


# ---- config sections (keys and types; conf/pruner/{gmp,fggp,magfirst}.yaml hold the values) and checks


@dataclass
class GMPSection:
    name: str
    sparsity: float
    init_sparsity: float
    t_start: int | float  # int: a step count; float: a fraction of the run's steps
    t_end: int | float
    interval: int | None
    events: int | None
    layers: list[str]
    skip_first_conv: bool
    skip_last_linear: bool
    scope: str  # global | layer (gmp only)


@dataclass
class FGGPSection(GMPSection):
    rate: float
    rate_schedule: str  # fixed | cosine
    rate_final: float


@dataclass
class MagFirstSection(FGGPSection):
    candidates: str  # prune_plus_rest | alive


def _is_time(value) -> bool:
    if isinstance(value, bool):
        return False
    return (isinstance(value, int) and value >= 0) or (isinstance(value, float) and 0.0 <= value <= 1.0)


def check_gradual(cfg) -> list[str]:
    problems = []
    for key in ("t_start", "t_end"):
        if not _is_time(cfg.get(key)):
            problems.append(f"pruner.{key}: must be a step count (int >= 0) or a fraction of training (float in [0, 1]), got {cfg.get(key)!r}")
    both = [cfg.get("t_start"), cfg.get("t_end")]
    if all(_is_time(v) for v in both) and type(both[0]) is type(both[1]) and both[0] > both[1]:
        problems.append(f"pruner.t_start: {both[0]} comes after pruner.t_end ({both[1]})")
    if cfg.get("events") is None:
        problems += integer(cfg, "interval", "pruner")
    else:
        problems += integer(cfg, "events", "pruner", allow_none=True)
    sparsity, s_init = cfg.get("sparsity"), cfg.get("init_sparsity")
    if isinstance(sparsity, (int, float)) and isinstance(s_init, (int, float)) and s_init > sparsity:
        problems.append(f"pruner.init_sparsity: {s_init} is above pruner.sparsity ({sparsity}); masks only shrink")
    layers = list(cfg.get("layers") or [])
    if not layers or set(layers) - {"conv", "linear"}:
        problems.append(f"pruner.layers: must be a non-empty list of conv, linear; got {layers}")
    for key in ("skip_first_conv", "skip_last_linear"):
        problems += boolean(cfg, key, "pruner")
    scope_problems = choice(cfg, "scope", "pruner", SCOPES)
    problems += scope_problems
    if not scope_problems and cfg.get("scope") == "layer" and cfg.get("name") != "gmp":
        problems.append(f"pruner.scope: layer is offered for gmp only; {cfg.get('name')} ranks globally, as its authors do")
    return problems


def check_fggp(cfg) -> list[str]:
    problems = check_gradual(cfg)
    problems += in_range(cfg, "rate", "pruner", 0, 1, closed_high=True, closed_low=False)
    schedule_problems = choice(cfg, "rate_schedule", "pruner", ("fixed", "cosine"))
    problems += schedule_problems
    if not schedule_problems and cfg.get("rate_schedule") == "cosine":
        problems += in_range(cfg, "rate_final", "pruner", 0.0, 1.0, closed_high=True)
    return problems


def check_magfirst(cfg) -> list[str]:
    problems = check_fggp(cfg)
    return problems + choice(cfg, "candidates", "pruner", CANDIDATE_COUNTS)
