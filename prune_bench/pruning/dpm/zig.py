"""Zero-invariant groups (ZIGs) from Torch-Pruning's dependency groups (OTOv2, Chen et al.,
ICLR 2023, Sec. 3: a ZIG is a set of parameter entries that, once all zero, leave the network's
output unchanged whatever the entries that read them hold, so the structure can be removed).

Here a ZIG is one channel of one Torch-Pruning group (`channels.ChannelGroup`, built by
`channels.collect_groups` from `tp.DependencyGraph`; nothing in this module walks the graph):
- its *variables* are the producing-side slices of that channel: the output row (and bias entry)
  of every conv/linear layer that writes the channel, and the scale and shift entry of every
  BatchNorm in the group. The BatchNorms include those that *read* the channel in
  pre-activation nets (WRN: the next block's bn1), whose shift would otherwise turn a zero
  channel into a non-zero one;
- its *dependents* are the consumers' input columns (conv/linear in-channel slices). They are
  not part of the group's norm; they only multiply a zero input once the variables are zero,
  and they are removed with the channel.
Every Torch-Pruning handler that slices dim 0 of a parameter is a producing-side handler and
every one that slices dim 1 a consumer (checked at import against `channels.SLICED`), so the
split is by the slice's dimension.

Numbering: ZIG ids are global, 0..n-1, group after group in Torch-Pruning's order; the ids of
group g are offset(g) + channel. The ids change when channels are removed (build the set again).

Public API:
- `build_zigs(model, example_inputs, ignored_layers=None) -> ZIGSet`: the ZIGs of a model (the
  last linear layer's outputs are kept by default); raises ConfigError (one line) for what
  cannot be handled: grouped convolutions, and producer layers whose output channels
  Torch-Pruning couples only in part (e.g. a zero-pad shortcut, ResNet option A) or twice.
- `ZIGGroup`: the ZIGs of one Torch-Pruning group: `sq_norms()`, `scale_(factors)` over the
  variables only (an out-side view of the ChannelGroup), `kept_entries(channels)`,
  `remove(channels)` over all its slices (Torch-Pruning's removal).
- `ZIGSet`: all ZIGs. `len()`, `groups`, `ids(name)`, `locate(zig)`, `group_index()`, `numel()`, `sq_norms()`,
  `reduce(per_slice)` (per-ZIG sums of per-position statistics, one index_add per slice),
  `row_factors(values)`, `zero_rows(mask)`, `zero_(mask, extra=...)`, `scale_(factors)`,
  `variables(zig)`, `dependents(zig)`, `remove(zigs)`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch_pruning as tp

from ...errors import ConfigError
from .groups import (
    IN_HANDLERS,
    OUT_HANDLERS,
    SLICED,
    ChannelGroup,
    Slice,
    classifier,
    collect_groups,
)

PRODUCING_DIM, CONSUMING_DIM = 0, 1

# The split by dimension holds for every handler the channel groups know (see the docstring).
assert all(dim == PRODUCING_DIM for handler in (*OUT_HANDLERS, tp.prune_batchnorm_out_channels)
           for _, dim in SLICED[handler])
assert all(dim == CONSUMING_DIM for handler in IN_HANDLERS for _, dim in SLICED[handler])


@dataclass
class ZIGSlice:
    """A producing-side slice with the global ZIG id of each of its positions."""

    piece: Slice
    zig: torch.Tensor  # global ZIG id per position in piece.index
    whole: bool  # piece.index is 0..rows-1 in order: no gather needed

    def tensor(self) -> torch.Tensor:
        return self.piece.tensor()

    def rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """The slice's rows of `tensor` (shaped like the parameter), flattened to (positions, -1)."""
        picked = tensor if self.whole else tensor.index_select(0, self.piece.index)
        return picked.reshape(picked.shape[0], -1)

    def spread(self, values: torch.Tensor) -> torch.Tensor:
        """A per-row vector of the parameter: values[zig] at the slice's rows, 0 elsewhere."""
        per_position = values.index_select(0, self.zig)
        if self.whole:
            return per_position
        full = torch.zeros(self.tensor().shape[0], dtype=values.dtype, device=values.device)
        return full.index_copy_(0, self.piece.index, per_position)


class ZIGGroup:
    """The ZIGs of one Torch-Pruning group, one per channel of its root layer."""

    def __init__(self, channels: ChannelGroup, offset: int):
        self.channels = channels
        self.name, self.size, self.offset = channels.name, channels.size, offset
        self.dependents = [piece for piece in channels.slices if piece.dim == CONSUMING_DIM]
        # An out-side view of the same group: ChannelGroup's per-channel norms and scaling over
        # the variables alone.
        self.out_side = copy.copy(channels)
        self.out_side.slices = [piece for piece in channels.slices if piece.dim == PRODUCING_DIM]
        self.variables = self.out_side.slices

    @property
    def layer_changes(self):
        """How removing a channel changes each layer's shape (the whole group's, ChannelGroup)."""
        return self.channels.layer_changes

    def sq_norms(self, of: str = "weight") -> torch.Tensor:
        """Per channel: the squared L2 norm of its variables (of="grad": of their gradients)."""
        return self.out_side.sq_norms(of)

    def scale_(self, factors: torch.Tensor) -> None:
        """Multiply the variables of channel c by factors[c] (1 leaves them bitwise unchanged)."""
        self.out_side.scale_(factors)

    def kept_entries(self, channels: list[int]) -> dict[str, list[tuple[int, torch.Tensor]]]:
        """Variables and dependents: the entries each shrunk parameter keeps after removing `channels`."""
        return self.channels.kept_entries(channels)

    def remove(self, channels: list[int]) -> None:
        """Remove `channels`, variables and dependents, through Torch-Pruning."""
        self.channels.remove(channels)


class ZIGSet:
    """Every ZIG of a model, numbered globally; see the module docstring."""

    def __init__(self, model: nn.Module, groups: dict[str, ChannelGroup]):
        self.model = model
        self.groups: dict[str, ZIGGroup] = {}
        offset = 0
        for name, channels in groups.items():
            self.groups[name] = ZIGGroup(channels, offset)
            offset += channels.size
        self.n = offset
        self.slices: list[ZIGSlice] = []
        for group in self.groups.values():
            for piece in group.variables:
                rows = piece.tensor().shape[0]
                whole = len(piece.index) == rows and bool(
                    torch.equal(piece.index.cpu(), torch.arange(rows)))
                self.slices.append(ZIGSlice(piece, piece.root + group.offset, whole))
        self.stale = False
        self._check_coverage()

    def _check_coverage(self) -> None:
        """Each producer row in exactly one ZIG: rows left out mean Torch-Pruning coupled the
        channels in part (a parameter-free channel op such as a zero-pad shortcut), so zeroing a
        group would not zero a channel; rows in two ZIGs would make the groups overlap."""
        coverage: dict[int, tuple[str, torch.Tensor]] = {}
        for zig_slice in self.slices:
            piece = zig_slice.piece
            rows = piece.tensor().shape[0]
            name, count = coverage.get(id(piece.tensor()), (piece.name, torch.zeros(rows, dtype=torch.long)))
            coverage[id(piece.tensor())] = (name, count + torch.bincount(piece.index.cpu(), minlength=rows))
        for name, count in coverage.values():
            if bool((count == 0).any()):
                raise ConfigError(
                    f"otov2: Torch-Pruning couples only {int((count > 0).sum())} of the {len(count)} output channels of "
                    f"{name} (a parameter-free channel op such as a zero-pad shortcut); zero-invariant groups need all "
                    "of them (for the CIFAR ResNets use model.shortcut=B)")
            if bool((count > 1).any()):
                raise ConfigError(f"otov2: output channels of {name} belong to two Torch-Pruning groups; "
                                  "zero-invariant groups must not overlap")

    # ------------------------------------------------------------------ numbering
    def __len__(self) -> int:
        return self.n

    def ids(self, name: str) -> range:
        """The global ids of group `name`'s ZIGs (channel c is ids(name)[c])."""
        group = self.groups[name]
        return range(group.offset, group.offset + group.size)

    def locate(self, zig: int) -> tuple[str, int]:
        """(group name, channel) of a global ZIG id."""
        for group in self.groups.values():
            if group.offset <= zig < group.offset + group.size:
                return group.name, zig - group.offset
        raise IndexError(f"ZIG {zig} out of range 0..{self.n - 1}")

    def group_index(self) -> torch.Tensor:
        """Per ZIG, the position of its Torch-Pruning group in `groups` (CPU, long)."""
        return torch.cat([torch.full((g.size,), i, dtype=torch.long) for i, g in enumerate(self.groups.values())])

    # ------------------------------------------------------------------ batched statistics
    def _check_fresh(self) -> None:
        if self.stale:
            raise RuntimeError("ZIGSet: channels were removed; build the ZIGs again")

    @torch.no_grad()
    def reduce(self, per_slice: Callable[[ZIGSlice], torch.Tensor | None], columns: int) -> torch.Tensor:
        """Per-ZIG sums: `per_slice(s)` gives a (positions, columns) tensor of per-position values
        (or None to skip the slice); the result is (n, columns), one index_add per slice."""
        self._check_fresh()
        total = None
        for zig_slice in self.slices:
            values = per_slice(zig_slice)
            if values is None:
                continue
            if total is None:
                total = torch.zeros(self.n, columns, dtype=values.dtype, device=values.device)
            total.index_add_(0, zig_slice.zig, values)
        if total is None:
            device = self.slices[0].tensor().device if self.slices else None
            total = torch.zeros(self.n, columns, device=device)
        return total

    def sq_norms(self) -> torch.Tensor:
        """Per ZIG: the squared L2 norm of its variables."""
        return self.reduce(lambda s: s.rows(s.tensor()).pow(2).sum(1, keepdim=True), 1)[:, 0]

    def numel(self) -> torch.Tensor:
        """Per ZIG: how many variable entries it has."""
        def count(s: ZIGSlice):
            per_row = s.tensor()[0].numel() if s.tensor().dim() > 1 else 1
            return torch.full((len(s.zig), 1), float(per_row), device=s.zig.device)
        return self.reduce(count, 1)[:, 0]

    def row_factors(self, values: torch.Tensor) -> list[tuple[ZIGSlice, torch.Tensor]]:
        """For each slice: a per-row vector of its parameter, values[zig] on the slice's rows."""
        self._check_fresh()
        return [(s, s.spread(values)) for s in self.slices]

    def zero_rows(self, mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(parameter, its row positions) for the variables of the ZIGs in `mask` (bool, n);
        parameters with none are left out."""
        self._check_fresh()
        out = []
        for zig_slice in self.slices:
            hit = mask.to(zig_slice.zig.device).index_select(0, zig_slice.zig)
            rows = zig_slice.piece.index[hit]
            if rows.numel():
                out.append((zig_slice.tensor(), rows))
        return out

    @torch.no_grad()
    def zero_(self, mask: torch.Tensor, extra: Callable[[torch.Tensor], Iterable[torch.Tensor]] | None = None) -> None:
        """Set the variables of the ZIGs in `mask` to exactly 0, and the same rows of every tensor
        `extra(parameter)` yields (optimizer state shaped like the parameter)."""
        for tensor, rows in self.zero_rows(mask):
            tensor.index_fill_(0, rows, 0)
            for other in (extra(tensor) if extra else ()):
                other.index_fill_(0, rows, 0)

    @torch.no_grad()
    def scale_(self, factors: torch.Tensor) -> None:
        """Multiply the variables of ZIG z by factors[z] (1 leaves them bitwise unchanged)."""
        for zig_slice, per_row in self.row_factors(factors):
            tensor = zig_slice.tensor()
            tensor.mul_(per_row.to(tensor.dtype).view(-1, *([1] * (tensor.dim() - 1))))

    # ------------------------------------------------------------------ one ZIG's entries
    def variables(self, zig: int) -> list[tuple[torch.Tensor, int, torch.Tensor]]:
        """(parameter, dim, positions) of one ZIG's variables."""
        name, channel = self.locate(zig)
        return _entries(self.groups[name].variables, channel)

    def dependents(self, zig: int) -> list[tuple[torch.Tensor, int, torch.Tensor]]:
        """(parameter, dim, positions) of one ZIG's dependents (the consumers' input columns)."""
        name, channel = self.locate(zig)
        return _entries(self.groups[name].dependents, channel)

    # ------------------------------------------------------------------ removal
    def remove(self, zigs: Iterable[int]) -> dict[str, list[tuple[int, torch.Tensor]]]:
        """Remove these ZIGs (variables and dependents) through Torch-Pruning. Returns, per
        shrunk parameter name, (dim, kept positions), for re-shaping optimizer state. The set is
        stale afterwards: build the ZIGs of the smaller model again."""
        self._check_fresh()
        by_group: dict[str, list[int]] = {}
        for zig in sorted(set(int(z) for z in zigs)):
            name, channel = self.locate(zig)
            by_group.setdefault(name, []).append(channel)
        kept: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for name, channels in by_group.items():
            if len(channels) >= self.groups[name].size:
                raise ValueError(f"ZIGSet.remove: all {len(channels)} channels of {name} would go; keep at least one")
            for param, entries in self.groups[name].kept_entries(channels).items():
                kept.setdefault(param, []).extend(entries)
        for name, channels in by_group.items():
            self.groups[name].remove(channels)
        self.stale = True
        return kept


def _entries(pieces: list[Slice], channel: int) -> list[tuple[torch.Tensor, int, torch.Tensor]]:
    out = []
    for piece in pieces:
        positions = piece.index[piece.root == channel]
        if positions.numel():
            out.append((piece.tensor(), piece.dim, positions))
    return out


def build_zigs(model: nn.Module, example_inputs: torch.Tensor,
               ignored_layers: list[nn.Module] | None = None) -> ZIGSet:
    """The ZIGs of `model`, from Torch-Pruning's dependency graph traced with `example_inputs`.
    `ignored_layers` keep their output channels (default: the last linear layer, the classifier).
    The model's train/eval mode is kept."""
    names = {module: name for name, module in model.named_modules()}
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ConfigError(f"otov2: grouped convolution {names[module]} (groups={module.groups}) is not supported")
    ignored = [classifier(model)] if ignored_layers is None else list(ignored_layers)
    was_training = model.training
    try:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    finally:
        model.train(was_training)
    return ZIGSet(model, collect_groups(graph, model, ignored))


__all__ = ["ZIGGroup", "ZIGSet", "ZIGSlice", "build_zigs"]
