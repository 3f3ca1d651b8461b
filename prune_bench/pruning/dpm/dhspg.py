"""DHSPG, the Dual Half-Space Projected Gradient optimizer of OTOv2 (Chen et al., "OTOv2:
Automatic, Generic, User-Friendly", ICLR 2023, Sec. 4 and Alg. 2-3), over the zero-invariant
groups of `zig.py` (ZIGs).

Every parameter takes the base step x_hat = x - lr * d, d the base optimizer's direction for the
current gradient (SGD with momentum, dampening, Nesterov and L2 weight decay exactly as
torch.optim.SGD; or Adam with L2 weight decay, torch.optim.Adam's moments). On top of that, per ZIG
g with variables x_g (all its producing-side entries, flattened) and direction d_g:

- Partition, once, at step index `partition_step` (0-based count of completed steps), with the
  direction of that step: score_g = 1/2 cos(x_g, d_g) / ||cos||_2 + 1/2 r_g / ||r||_2 with
  r_g = 1 / (||x_g|| / numel_g + 1e-6), the vectors taken over all ZIGs. The highest scores form
  G_p (to be driven to zero), K = int(n * min(s + tol, max_partition_fraction)) of them (and at
  least the target count), filled in score order while every Torch-Pruning group keeps
  `min_kept_per_group` channels outside G_p; the rest form G_np (trained by the base step alone).
- While fewer than the target count ceil(s * n) of ZIGs are zero (or, with projection="defer",
  zero or handed to an external rule), every live G_p group takes a group-norm step:
  x_hat_g -= lr * lambda_g * x_g / (||x_g|| + 1e-8), where lambda_g = lmbda, and, from step
  `adapt_step` on, for groups with <x_g, d_g> < 0 (the base step would grow the group):
      lo = -<x_g, d_g> / ||x_g||,  hi = -||d_g||^2 ||x_g|| / <x_g, d_g>
      lambda_g = clip(lmbda_amplify * lo, lmbda, lmbda * hat_lmbda_coeff), and
      lambda_g = (lo + hi) / 2 where that value is >= hi
  (lo: the least lambda that shrinks the group; hi: the largest that keeps -d - lambda x/||x|| a
  descent direction; Alg. 2 of the paper).
- Half-space projection, from step `projection_step` (and `adapt_step`) on: a live G_p group with
  <x_hat_g, x_g> < epsilon ||x_g||^2 is set to zero. <x_hat_g, x_g> is evaluated in closed form,
  ||x||^2 - lr <x, d> - lr lambda ||x||^2 / (||x|| + 1e-8). When more groups qualify than the
  target still allows, those deepest in the half-space (smallest <x_hat, x> / ||x||^2;
  overflow="ratio") or a seeded random subset (overflow="random") are taken, so the zero count
  never exceeds the target.
- Zero groups stay exactly zero: after every step their variables and the same rows of the
  optimizer state (momentum, Adam moments) are set to 0.

Where this differs from the authors' code (only_train_once, DHSPG, v2.0.16):
- Stop rule. They stop once zeros / total >= s, with total the number of groups plus 1e-6 per
  group type (six types), summed in float32. For n <= 63 groups and s * n a whole number the
  1e-6 survives the rounding, so s * n zero groups are not yet enough and they need s * n + 1
  (1,813 of the 1,953 pairs with 2 <= n <= 63); for n >= 64, and whenever s * n is not whole,
  the rule equals ours. Here the target is T = ceil(s * n) exactly, and the projection never
  takes more than T (theirs is bounded only by an upper sparsity of 1.0 per component, so the
  last projecting step can overshoot).
- Partition size. Their G_p holds K = int(n * min(s + tol, 0.999)) groups, which with a small
  tolerance can be fewer than the zero groups their stop rule needs (n = 41, s = 0.5, tol = 0:
  K = 20 of the 21 needed; with s * n whole and n <= 63, K = s * n at tol = 0). Only G_p groups
  are projected, so they never reach s and penalise G_p to the end. Here |G_p| = max(K, T).
  They also take the global top K and then hand back to G_np the lowest-scored channel of any
  group taken whole (so |G_p| can fall below K); here the fill skips such channels.
- Adam. Both of their moments start at the first gradient (m_1 = g_1, v_1 = g_1^2, then
  bias-corrected as usual), so their first step is sqrt(1 - beta2) / (1 - beta1) times torch's
  (0.316 at the defaults 0.9, 0.999), and their second moment weighs g_1^2 1 / (1 - beta2) times
  (1000x) as much as torch's, a difference that fades only as beta2^t. Here Adam is
  torch.optim.Adam's (moments start at 0).
- Their zero groups are those with ||x|| == 0 at the start of a step (any group); here the zero
  set is explicit (projected or `mark_zero`). Their momentum buffers of zero groups keep
  accumulating; here they are zeroed. Their weight_decay_type="l1_norm" acts only with AdamW;
  it is not offered here.

Hooks for DPM (Yang et al. 2024) on this host, as plain methods:
- `redundant_groups()` (G_p ids), `important_groups()` (G_np), `zero_groups()`,
  `pending_groups()`, `partition_scores()`, `last_selected()`, `last_lambdas()`,
  `target_zero_count`, `zero_count()`, `group_sparsity()`, `penalising()`;
- projection="defer": a group the projection condition selects is not zeroed but becomes
  *pending* (no group-norm step, never selected again; it counts against the target) and is
  listed by `last_selected()`; an external rule (DPM's Smooth Pruning decays its norm to 0 over
  N steps with `ZIGSet.scale_`) calls `mark_zero(zigs)` when done, which zeroes it exactly;
- `release(zigs)`: a G_p group goes back to G_np (DPM's Self-Rectifying) and the best-scored
  G_np group that may move takes its place, so |G_p| holds; released groups never re-enter G_p;
  a group no G_np group can replace is not released (the target would be out of reach);
- `state_dict()` / `load_state_dict()`: partition, scores, zero / pending / released sets, last
  lambdas, step count, overflow generator and the per-parameter state, so a resumed run
  continues bitwise equal on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ...optim.groupwise import closure_loss
from .zig import ZIGSet, ZIGSlice

VARIANTS = ("sgd", "adam")
OVERFLOWS = ("ratio", "random")
PROJECTIONS = ("zero", "defer")
# The authors' defaults per variant (only_train_once/optimizer/hyperparameter.py).
LAMBDA_DEFAULTS = {"sgd": (1e-3, 2.0, 10.0), "adam": (1e-2, 20.0, 1e3)}
NORM_GUARD = 1e-8  # added to ||x|| in x / ||x|| (the authors' safe guard)
SCORE_GUARD = 1e-6  # added to the per-entry norm before inverting it (as the authors do)
COS_GUARD = 1e-8
STATS = 5  # per-ZIG statistics: ||x||^2, <x,d>, ||d||^2, sum lr <x,d>, sum lr ||x||^2


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"DHSPG: {message}")


class DHSPG(torch.optim.Optimizer):
    """DHSPG over `params` (all of the model's trainable parameters, or param groups) and the
    ZIGs `zigs`, whose variables must be among them. See the module docstring for the step.

    Per param group (schedulers may change lr): lr, momentum, dampening, nesterov, weight_decay
    (sgd); lr, betas, eps, weight_decay (adam). Global: the sparsity target and the group-norm
    and projection settings below.

    target_group_sparsity s in [0, 1): the fraction of ZIGs to zero; target = ceil(s * n).
    tolerance_group_sparsity >= 0: G_p holds int(n * min(s + tol, max_partition_fraction)) ZIGs.
    max_partition_fraction in (0, 1]: the authors' cap 0.999.
    min_kept_per_group >= 1: channels of each Torch-Pruning group kept out of G_p.
    partition_step >= 0: the 0-based step at which G_p / G_np are formed (authors:
    start_pruning_steps). projection_step >= partition_step (default: partition_step): the first
    step that projects (the authors' half_space_project_steps h is projection_step h - 1).
    adapt_step: the first step that adapts lambda and projects (authors' warm_up_steps w is
    adapt_step w - 1; default 0). lmbda, lmbda_amplify, hat_lmbda_coeff: default per variant
    (sgd 1e-3, 2, 10; adam 1e-2, 20, 1e3). epsilon in [0, 1): the half-space margin.
    overflow: "ratio" | "random" (seeded by `seed`). projection: "zero" | "defer".
    """

    def __init__(self, params, zigs: ZIGSet, lr: float = 0.1, *, variant: str = "sgd",
                 momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 target_group_sparsity: float = 0.5, tolerance_group_sparsity: float = 0.05,
                 max_partition_fraction: float = 0.999, min_kept_per_group: int = 1,
                 partition_step: int = 0, projection_step: int | None = None, adapt_step: int = 0,
                 lmbda: float | None = None, lmbda_amplify: float | None = None,
                 hat_lmbda_coeff: float | None = None, epsilon: float = 0.0,
                 overflow: str = "ratio", seed: int = 0, projection: str = "zero"):
        _check(variant in VARIANTS, f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        default_lmbda, default_amplify, default_hat = LAMBDA_DEFAULTS[variant]
        lmbda = default_lmbda if lmbda is None else lmbda
        lmbda_amplify = default_amplify if lmbda_amplify is None else lmbda_amplify
        hat_lmbda_coeff = default_hat if hat_lmbda_coeff is None else hat_lmbda_coeff
        projection_step = partition_step if projection_step is None else projection_step
        _check(lr >= 0, f"lr must be >= 0, got {lr}")
        _check(0 <= momentum < 1, f"momentum must be in [0, 1), got {momentum}")
        _check(0 <= dampening <= 1, f"dampening must be in [0, 1], got {dampening}")
        _check(not nesterov or (momentum > 0 and dampening == 0), "nesterov needs momentum > 0 and dampening 0")
        _check(len(betas) == 2 and all(0 <= b < 1 for b in betas), f"betas must be two values in [0, 1), got {betas}")
        _check(eps > 0, f"eps must be > 0, got {eps}")
        _check(weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}")
        _check(0 <= target_group_sparsity < 1, f"target_group_sparsity must be in [0, 1), got {target_group_sparsity}")
        _check(tolerance_group_sparsity >= 0, f"tolerance_group_sparsity must be >= 0, got {tolerance_group_sparsity}")
        _check(0 < max_partition_fraction <= 1, f"max_partition_fraction must be in (0, 1], got {max_partition_fraction}")
        _check(isinstance(min_kept_per_group, int) and min_kept_per_group >= 1,
               f"min_kept_per_group must be an integer >= 1, got {min_kept_per_group}")
        for key, value in (("partition_step", partition_step), ("projection_step", projection_step),
                           ("adapt_step", adapt_step)):
            _check(isinstance(value, int), f"{key} must be an integer, got {value!r}")
        _check(partition_step >= 0, f"partition_step must be >= 0, got {partition_step}")
        _check(projection_step >= partition_step,
               f"projection_step ({projection_step}) must not come before partition_step ({partition_step})")
        _check(lmbda >= 0, f"lmbda must be >= 0, got {lmbda}")
        _check(lmbda_amplify > 0, f"lmbda_amplify must be > 0, got {lmbda_amplify}")
        _check(hat_lmbda_coeff >= 1, f"hat_lmbda_coeff must be >= 1, got {hat_lmbda_coeff}")
        _check(0 <= epsilon < 1, f"epsilon must be in [0, 1), got {epsilon}")
        _check(overflow in OVERFLOWS, f"overflow must be one of {', '.join(OVERFLOWS)}, got {overflow!r}")
        _check(projection in PROJECTIONS, f"projection must be one of {', '.join(PROJECTIONS)}, got {projection!r}")
        _check(isinstance(zigs, ZIGSet), "zigs must be a ZIGSet (zig.build_zigs)")
        _check(not zigs.stale, "zigs are stale (channels were removed); build them again")
        _check(len(zigs) > 0, "the model has no zero-invariant groups")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov, betas=tuple(betas),
                        eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)
        in_optimizer = {id(p) for group in self.param_groups for p in group["params"]}
        missing = [s.piece.name for s in zigs.slices if id(s.tensor()) not in in_optimizer]
        _check(not missing, f"ZIG variables not among the optimizer's parameters: {', '.join(missing[:3])}")

        self.zigs = zigs
        self.variant = variant
        self.target_group_sparsity = target_group_sparsity
        self.tolerance_group_sparsity = tolerance_group_sparsity
        self.max_partition_fraction = max_partition_fraction
        self.min_kept_per_group = min_kept_per_group
        self.partition_step, self.projection_step, self.adapt_step = partition_step, projection_step, adapt_step
        self.lmbda, self.lmbda_amplify, self.hat_lmbda_coeff = lmbda, lmbda_amplify, hat_lmbda_coeff
        self.epsilon, self.overflow, self.projection = epsilon, overflow, projection

        n = len(zigs)
        self.group_of = zigs.group_index()
        self.group_sizes = torch.tensor([g.size for g in zigs.groups.values()], dtype=torch.long)
        capacity = int((self.group_sizes - min_kept_per_group).clamp_min(0).sum())
        # The least count with count / n >= s (the authors' stop rule), robust to float rounding.
        self.target_zero_count = math.ceil(round(target_group_sparsity * n, 9))
        _check(self.target_zero_count <= capacity,
               f"target_group_sparsity {target_group_sparsity} asks for {self.target_zero_count} zero groups of {n}, "
               f"but with min_kept_per_group={min_kept_per_group} at most {capacity} can be zeroed")
        self.partition_count = min(max(int(n * min(target_group_sparsity + tolerance_group_sparsity,
                                                   max_partition_fraction)), self.target_zero_count), capacity)
        self.device = zigs.slices[0].tensor().device
        self.numel = zigs.numel().to(self.device)
        self.generator = torch.Generator().manual_seed(seed)
        self.step_count = 0
        self.partitioned = False
        self.in_gp = torch.zeros(n, dtype=torch.bool)  # CPU copies: host logic; device copies below
        self.zero = torch.zeros(n, dtype=torch.bool)
        self.pending = torch.zeros(n, dtype=torch.bool)
        self.released = torch.zeros(n, dtype=torch.bool)
        self.scores: torch.Tensor | None = None
        self.lambdas = torch.zeros(n)
        self.selected: list[int] = []
        self._masks_changed()

    # ------------------------------------------------------------------ bookkeeping
    def _masks_changed(self) -> None:
        """Refresh what depends on the sets: device copies and the rows to keep at zero."""
        self.zero_device = self.zero.to(self.device)
        self.live_device = (self.in_gp & ~self.zero & ~self.pending).to(self.device)
        self.zero_rows = self.zigs.zero_rows(self.zero) if bool(self.zero.any()) else []

    def _group_by_param(self) -> dict[int, dict]:
        return {id(p): group for group in self.param_groups for p in group["params"]}

    def zero_count(self) -> int:
        return int(self.zero.sum())

    def group_sparsity(self) -> float:
        return self.zero_count() / len(self.zigs)

    def penalising(self) -> bool:
        """Whether G_p still takes group-norm steps: partitioned and the target not yet met by
        the zero groups plus the pending ones."""
        return self.partitioned and self.zero_count() + int(self.pending.sum()) < self.target_zero_count

    def redundant_groups(self) -> list[int]:
        """G_p: ZIG ids to be driven to zero (zero and pending ones included)."""
        return self.in_gp.nonzero().flatten().tolist()

    def important_groups(self) -> list[int]:
        """G_np: ZIG ids trained by the base step alone (empty before the partition)."""
        return (~self.in_gp).nonzero().flatten().tolist() if self.partitioned else []

    def zero_groups(self) -> list[int]:
        return self.zero.nonzero().flatten().tolist()

    def pending_groups(self) -> list[int]:
        """projection="defer": groups selected by the projection, handed to an external rule."""
        return self.pending.nonzero().flatten().tolist()

    def partition_scores(self) -> torch.Tensor | None:
        """The scores of the partition (CPU, per ZIG), None before it."""
        return None if self.scores is None else self.scores.clone()

    def last_selected(self) -> list[int]:
        """The ZIGs the projection took in the last step (zeroed, or made pending)."""
        return list(self.selected)

    def last_lambdas(self) -> torch.Tensor:
        """lambda_g of the last step per ZIG (0: no group-norm step)."""
        return self.lambdas.clone()

    # ------------------------------------------------------------------ the step
    def _direction(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        """The base optimizer's direction d (the step is x - lr d), updating its state."""
        grad = p.grad
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        state = self.state[p]
        if self.variant == "sgd":
            momentum = group["momentum"]
            if momentum == 0:
                return grad
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = torch.clone(grad).detach()
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            return grad.add(buf, alpha=momentum) if group["nesterov"] else buf
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias1 = 1 - beta1 ** state["step"]
        bias2 = 1 - beta2 ** state["step"]
        denom = (state["exp_avg_sq"].sqrt() / math.sqrt(bias2)).add_(group["eps"])
        return state["exp_avg"].div(denom).div_(bias1)

    def _state_of(self, p: torch.Tensor) -> list[torch.Tensor]:
        state = self.state.get(p, {})
        return [state[key] for key in ("momentum_buffer", "exp_avg", "exp_avg_sq") if key in state]

    def _statistics(self, directions: dict[int, torch.Tensor], groups: dict[int, dict]) -> torch.Tensor:
        """(n, 5) per ZIG: ||x||^2, <x,d>, ||d||^2, sum over slices of lr <x,d> and lr ||x||^2."""
        def per_slice(s: ZIGSlice):
            p = s.tensor()
            x = s.rows(p)
            d = directions.get(id(p))
            xx = torch.linalg.vecdot(x, x, dim=1)
            lr = groups[id(p)]["lr"]
            if d is None:
                zeros = torch.zeros_like(xx)
                return torch.stack([xx, zeros, zeros, zeros, lr * xx], 1)
            d = s.rows(d)
            xd = torch.linalg.vecdot(x, d, dim=1)
            return torch.stack([xx, xd, torch.linalg.vecdot(d, d, dim=1), lr * xd, lr * xx], 1)
        return self.zigs.reduce(per_slice, STATS)

    def _partition(self, stats: torch.Tensor) -> None:
        """Split the ZIGs into G_p and G_np by the OTOv2 score (see the module docstring)."""
        norm = stats[:, 0].sqrt()
        cos = stats[:, 1] / (norm * stats[:, 2].sqrt()).clamp_min(COS_GUARD)
        inverse = 1.0 / (norm / self.numel + SCORE_GUARD)
        scores = 0.5 * cos / cos.norm().clamp_min(1e-12) + 0.5 * inverse / inverse.norm().clamp_min(1e-12)
        self.scores = scores.detach().float().cpu()
        order = torch.sort(self.scores, descending=True, stable=True).indices.tolist()
        room = (self.group_sizes - self.min_kept_per_group).tolist()
        group_of = self.group_of.tolist()
        taken = 0
        for zig in order:
            if taken == self.partition_count:
                break
            if room[group_of[zig]] > 0:
                room[group_of[zig]] -= 1
                self.in_gp[zig] = True
                taken += 1
        self.partitioned = True

    def _lambdas(self, stats: torch.Tensor, adapt: bool) -> torch.Tensor:
        """lambda_g per ZIG (0 off the live G_p groups), Alg. 2 of the paper."""
        live = self.live_device
        lambdas = torch.where(live, torch.full_like(stats[:, 0], self.lmbda), torch.zeros_like(stats[:, 0]))
        if not adapt:
            return lambdas
        xx, xd, dd = stats[:, 0], stats[:, 1], stats[:, 2]
        adjust = live & (xd < 0)  # the base step alone would grow these groups
        norm = xx.sqrt().clamp_min(torch.finfo(xx.dtype).tiny)
        safe_xd = torch.where(adjust, xd, -torch.ones_like(xd))
        lower = -safe_xd / norm
        upper = -dd * norm / safe_xd
        adapted = (self.lmbda_amplify * lower).clamp(min=self.lmbda, max=self.lmbda * self.hat_lmbda_coeff)
        adapted = torch.where(adapted >= upper, (lower + upper) / 2, adapted)
        return torch.where(adjust, adapted, lambdas)

    def _project(self, stats: torch.Tensor, per_norm: torch.Tensor) -> list[int]:
        """The live G_p groups in the half-space <x_hat, x> < epsilon ||x||^2, at most as many
        as the target still allows."""
        xx = stats[:, 0]
        inner = xx - stats[:, 3] - per_norm * stats[:, 4]
        candidates = self.live_device & (inner < self.epsilon * xx)
        count = int(candidates.sum())
        if count == 0:
            return []
        room = self.target_zero_count - self.zero_count() - int(self.pending.sum())
        ids = candidates.nonzero().flatten()
        if count > room:
            if self.overflow == "ratio":
                ratio = (inner / xx.clamp_min(torch.finfo(xx.dtype).tiny)).index_select(0, ids).cpu()
                ids = ids.cpu()[torch.sort(ratio, stable=True).indices[:room]]
            else:
                ids = ids.cpu()[torch.randperm(count, generator=self.generator)[:room]]
        return sorted(ids.tolist())

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        groups = self._group_by_param()
        directions = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    directions[id(p)] = self._direction(p, group)
        t = self.step_count
        self.selected = []
        if not self.partitioned and t >= self.partition_step:
            self._partition(self._statistics(directions, groups))
            self._masks_changed()
        shrink: dict[int, torch.Tensor] = {}  # per parameter: lr * lambda / (||x|| + 1e-8) per row
        chosen: list[int] = []
        if self.penalising():
            stats = self._statistics(directions, groups)
            adapt = t >= self.adapt_step
            lambdas = self._lambdas(stats, adapt)
            norm = stats[:, 0].sqrt()
            per_norm = torch.where(norm > 0, lambdas / (norm + NORM_GUARD), torch.zeros_like(norm))
            if adapt and t >= self.projection_step:
                chosen = self._project(stats, per_norm)
            self.lambdas = lambdas.detach().float().cpu()
            for zig_slice, per_row in self.zigs.row_factors(per_norm):
                p = zig_slice.tensor()
                factor = groups[id(p)]["lr"] * per_row
                shrink[id(p)] = shrink[id(p)] + factor if id(p) in shrink else factor
        else:
            self.lambdas = torch.zeros(len(self.zigs))
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) in shrink:
                    # x - lr lambda x / (||x|| + 1e-8) - lr d, as (1 - lr lambda / (||x|| + 1e-8)) x - lr d:
                    # the group-norm step acts on x before the base step; rows off G_p are scaled by 1
                    p.mul_((1 - shrink[id(p)]).to(p.dtype).view(-1, *([1] * (p.dim() - 1))))
                if id(p) in directions:
                    p.add_(directions[id(p)], alpha=-group["lr"])
        if chosen:
            self.selected = chosen
            if self.projection == "zero":
                self.zero[chosen] = True
            else:
                self.pending[chosen] = True
            self._masks_changed()
        self._hold_zero()
        self.step_count += 1
        return loss

    @torch.no_grad()
    def _hold_zero(self) -> None:
        for tensor, rows in self.zero_rows:
            tensor.index_fill_(0, rows, 0)
            for other in self._state_of(tensor):
                other.index_fill_(0, rows, 0)

    # ------------------------------------------------------------------ hooks for an external rule
    def _as_ids(self, zigs: Iterable[int]) -> list[int]:
        ids = sorted(set(int(z) for z in zigs))
        bad = [z for z in ids if not 0 <= z < len(self.zigs)]
        if bad:
            raise ValueError(f"DHSPG: ZIG ids out of range 0..{len(self.zigs) - 1}: {bad[:5]}")
        return ids

    @torch.no_grad()
    def mark_zero(self, zigs: Iterable[int]) -> None:
        """An external rule drove these G_p groups to zero: set their variables and optimizer
        state rows to exactly 0 and keep them there."""
        ids = self._as_ids(zigs)
        not_gp = [z for z in ids if not bool(self.in_gp[z])]
        if not_gp:
            raise ValueError(f"DHSPG.mark_zero: ZIGs {not_gp[:5]} are not in G_p")
        new = [z for z in ids if not bool(self.zero[z])]
        if self.zero_count() + len(new) > self.target_zero_count:
            raise ValueError(f"DHSPG.mark_zero: {self.zero_count() + len(new)} zero groups would exceed the target "
                             f"{self.target_zero_count}")
        self.zero[ids] = True
        self.pending[ids] = False
        self._masks_changed()
        self._hold_zero()

    def release(self, zigs: Iterable[int], costs: torch.Tensor | None = None) -> list[int | None]:
        """Move these (non-zero) G_p groups back to G_np; for each, the best-scored G_np group
        that has never been released and whose Torch-Pruning group keeps `min_kept_per_group`
        channels outside G_p joins G_p instead. With `costs` (one value per ZIG, e.g. its MACs)
        the replacement is the best-scored of those candidates whose cost is closest to the
        released group's. A group with no such replacement stays in G_p (released, it would
        leave the target out of reach). Returns the replacements in the order of `zigs`, None
        for a group that stayed."""
        ids = [int(z) for z in zigs]  # the caller's order: the answers are matched to it
        if len(set(ids)) != len(ids):
            raise ValueError(f"DHSPG.release: ZIGs named twice: {sorted({z for z in ids if ids.count(z) > 1})[:5]}")
        self._as_ids(ids)  # range check
        if not self.partitioned:
            raise ValueError("DHSPG.release: nothing to release before the partition")
        wrong = [z for z in ids if not bool(self.in_gp[z]) or bool(self.zero[z])]
        if wrong:
            raise ValueError(f"DHSPG.release: ZIGs {wrong[:5]} are not live G_p groups (not in G_p, or already zero)")
        replacements: list[int | None] = []
        for zig in ids:
            self.in_gp[zig] = False
            in_gp_per_group = torch.bincount(self.group_of[self.in_gp], minlength=len(self.group_sizes))
            room = self.group_sizes - self.min_kept_per_group - in_gp_per_group
            movable = ~self.in_gp & ~self.released & ~self.zero & (room[self.group_of] > 0)
            movable[zig] = False
            if not bool(movable.any()):
                self.in_gp[zig] = True
                replacements.append(None)
                continue
            if costs is not None:
                gap = torch.where(movable, (costs - costs[zig]).abs(), torch.full_like(costs, math.inf))
                movable &= gap == gap.min()
            self.pending[zig] = False
            self.released[zig] = True
            masked = torch.where(movable, self.scores, torch.full_like(self.scores, -math.inf))
            best = int(torch.argmax(masked))  # first of the best (lowest id) on ties
            self.in_gp[best] = True
            replacements.append(best)
        self._masks_changed()
        return replacements

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["dhspg"] = {
            "n_zigs": len(self.zigs), "step_count": self.step_count, "partitioned": self.partitioned,
            "in_gp": self.in_gp.clone(), "zero": self.zero.clone(), "pending": self.pending.clone(),
            "released": self.released.clone(), "lambdas": self.lambdas.clone(),
            "scores": None if self.scores is None else self.scores.clone(),
            "selected": list(self.selected), "generator": self.generator.get_state(),
        }
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("dhspg", None)
        if extra is None:
            raise ValueError("DHSPG.load_state_dict: no 'dhspg' entry (not a DHSPG state)")
        if extra["n_zigs"] != len(self.zigs):
            raise ValueError(f"DHSPG.load_state_dict: saved for {extra['n_zigs']} ZIGs, this model has {len(self.zigs)}")
        super().load_state_dict(state_dict)
        self.step_count, self.partitioned = int(extra["step_count"]), bool(extra["partitioned"])
        for key in ("in_gp", "zero", "pending", "released"):
            setattr(self, key, extra[key].clone().cpu().bool())
        self.lambdas = extra["lambdas"].clone().cpu()
        self.scores = None if extra["scores"] is None else extra["scores"].clone().cpu()
        self.selected = list(extra["selected"])
        self.generator.set_state(extra["generator"])
        self._masks_changed()


__all__ = ["DHSPG", "LAMBDA_DEFAULTS", "OVERFLOWS", "PROJECTIONS", "VARIANTS"]
