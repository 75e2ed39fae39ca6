"""The walks of the symmetry search on a traced graph (used by :func:`~noether_lib.symmetry.find_symmetries`).

A *producer* is a layer whose output channels can be scaled one by one through its own parameters: a
Linear/Conv layer (weight and bias, dim 0) or the affine :math:`(\\gamma,\\beta)` of a normalization layer. The search
follows a producer's output forward through maps that commute with a positive factor per channel. Where a residual
sum (or a concatenation along another axis) joins it with another tensor, that tensor must be scaled alike: the
search walks back from it to *its* producers and adds them to the same cluster, whose output is followed as well.
A cluster whose every path ends in normalization layers is a **scale** group; one whose paths end in
Linear/Conv layers (its *consumers*, whose input columns take the inverse factor; normalizations may absorb other
paths) is a **rescale** group. When the channels cannot be followed one by one (a transposed token-mixing layer,
a pooling over the channel axis), the cluster is tried once more as a whole: one unit, the same factor on all
channels. Translations come from biases feeding a normalization and from the logits of a softmax loss.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.nn.utils import parametrize

from noether_lib.symmetry import graph as G
from noether_lib.symmetry.groups import Member

__all__: list[str] = []


@dataclass(frozen=True)
class Producer:
    node: torch.fx.Node
    name: str
    channels: int
    members: tuple[Member, ...]
    layout: G.Layout


@dataclass
class Cluster:
    producers: list[Producer] = field(default_factory=list)
    units: list[int] = field(default_factory=list)
    consumers: dict[str, Member] = field(default_factory=dict)
    norms: list[str] = field(default_factory=list)
    through: list[str] = field(default_factory=list)
    broken: str | None = None

    @property
    def consumers_named(self) -> list[str]:
        return [name.rsplit(".", 1)[0] for name in self.consumers]


class Search:
    """The traced graph and everything the walks need about it."""

    def __init__(self, model: torch.nn.Module, example_input: torch.Tensor, concrete_args: Mapping[str, Any] | None):
        self.model = G.unwrap(model)
        self.gm = G.trace(self.model, example_input, concrete_args)
        self.modules = dict(self.gm.named_modules())
        self.nodes = list(self.gm.graph.nodes)
        self.calls: dict[str, int] = {}
        for node in self.nodes:
            if node.op == "call_module":
                self.calls[str(node.target)] = self.calls.get(str(node.target), 0) + 1
        self.params = dict(self.model.named_parameters())
        names: dict[int, list[str]] = {}
        for name, p in self.model.named_parameters(remove_duplicate=False):
            names.setdefault(id(p), []).append(name)
        self.tied = {n: ns for ns in names.values() if len(ns) > 1 for n in ns}
        self.producers: dict[str, Producer] = {}
        self.refused: dict[str, str] = {}
        for node in self.nodes:
            made = self._producer(node)
            if isinstance(made, Producer):
                self.producers[node.name] = made
            elif made:
                self.refused[node.name] = made

    def label(self, node: torch.fx.Node) -> str:
        return G.describe(node, self.modules)

    def parameter(self, module_name: str, attr: str) -> Member | str | None:
        """The real parameter behind ``module.attr``: itself, the magnitude of a weight norm, or a refusal."""
        module = self.modules[module_name]
        full = f"{module_name}.{attr}" if module_name else attr
        if parametrize.is_parametrized(module, attr):
            plist = module.parametrizations[attr]
            if len(plist) == 1 and type(plist[0]).__name__ == "_WeightNorm" and plist[0].dim == 0:
                return Member(f"{full.rsplit('.', 1)[0]}.parametrizations.{attr}.original0", 0)
            return (
                f"{full} is computed by {type(plist[0]).__name__} (torch.nn.utils.parametrize); no group is built on it"
            )
        if getattr(module, attr, None) is None:
            return None
        if full not in self.params:
            return f"{full} is not listed by named_parameters() (computed by a hook, e.g. the old weight_norm)"
        if full in self.tied:
            return f"{full} is tied to {', '.join(n for n in self.tied[full] if n != full)} (shared parameter)"
        return Member(full, 0)

    def _producer(self, node: torch.fx.Node) -> Producer | str | None:
        if node.op == "get_attr" and str(node.target) in self.params:  # a tensor parameter (a token, an embedding)
            name = str(node.target)
            if name in self.tied:
                return f"{name} is tied to {', '.join(n for n in self.tied[name] if n != name)} (shared parameter)"
            p = self.params[name]
            return Producer(node, name, p.shape[-1], (Member(name, p.ndim - 1),), G.Layout(p.ndim - 1))
        module = G.module_of(node, self.modules)
        if isinstance(module, nn.Embedding) and G.shape(node) is not None:  # a lookup: column c feeds channel c
            name = str(node.target)
            if self.calls[name] != 1:
                return f"{name}: module called {self.calls[name]} times (shared weights)"
            member = self.parameter(name, "weight")
            if not isinstance(member, Member):
                return member
            return Producer(
                node, name, module.embedding_dim, (Member(member.parameter, 1),), G.Layout(len(G.shape(node) or ()) - 1)
            )
        if module is None or not isinstance(module, (*G.WEIGHT_LAYERS, *G.NORMS)):
            return None
        name = str(node.target)
        if isinstance(module, G.NORMS):
            affine = getattr(module, "affine", getattr(module, "elementwise_affine", False))
            if not affine or module.weight is None:
                return None
            if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
                return f"{name}: affine over {len(module.normalized_shape)} axes, not followed"
        if self.calls[name] != 1:
            return f"{name}: module called {self.calls[name]} times (shared weights)"
        members = []
        for attr in ("weight", "bias"):
            member = self.parameter(name, attr)
            if isinstance(member, str):
                return member
            if member is not None:
                members.append(member)
        out = G.shape(node)
        if out is None:
            return f"{name}: no tensor shape recorded"
        if isinstance(module, nn.Linear):
            channels, dim = module.out_features, len(out) - 1
        elif isinstance(module, nn.LayerNorm):
            channels, dim = module.normalized_shape[0], len(out) - 1
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            channels, dim = module.out_channels, 1 if len(out) == module.weight.ndim else 0
        else:
            channels, dim = module.weight.shape[0], G.channel_axis(module, len(out))
        return Producer(node, name, channels, tuple(members), G.Layout(dim))

    def consumer(self, node: torch.fx.Node, layout: G.Layout | None, channels: int) -> Member | str:
        """The consumer's input-side member (sign -1) for channels in ``layout`` (None: the whole input)."""
        name = str(node.target)
        module = self.modules[name]
        if self.calls[name] != 1:
            return f"module called {self.calls[name]} times (shared weights)"
        member = self.parameter(name, "weight")
        if not isinstance(member, Member):
            return member or "no weight"
        if member.parameter.endswith("original0"):
            return "its weight is weight-normalized: its input columns cannot be rescaled through g and v"
        if layout is None:
            return Member(member.parameter, 1, -1)
        in_shape = G.shape(node.args[0])
        if isinstance(module, nn.Linear):
            whole = layout.offset == 0 and module.in_features == channels * layout.block
            if in_shape is None or layout.dim != len(in_shape) - 1:
                return "it mixes another axis than the producer's channels"
            return Member(member.parameter, 1, -1) if whole else "reads a slice of its input columns (concatenation)"
        if (
            layout.dim != (1 if in_shape is not None and len(in_shape) == module.weight.ndim else 0)
            or layout.block != 1
        ):
            return "the producer's channels are not its input channels"
        if layout.offset != 0 or module.in_channels != channels:
            return "reads a slice of its input channels (concatenation)"
        if module.groups == 1:
            return Member(member.parameter, 1, -1)
        if module.groups == module.in_channels:
            return Member(member.parameter, 0, -1)  # depthwise: input channel c feeds output block c
        return f"grouped convolution ({module.groups} groups)"

    # ---- the multiplicative walk (scale and rescale) -------------------------------------------------------

    def cluster(self, seed: Producer, per_channel: bool) -> Cluster:
        result = Cluster(producers=[seed])
        seen: dict[str, G.Layout | None] = {}
        queue: list[tuple[torch.fx.Node, G.Layout | None]] = [(seed.node, seed.layout if per_channel else None)]
        channels = seed.channels
        while queue and result.broken is None:
            node, layout = queue.pop()
            for user in node.users:
                if G.is_shape_query(user):
                    continue
                arrived = _aligned(layout, G.shape(user), G.shape(node)) if G.is_add(user) else layout
                if user.name in seen:
                    if per_channel and seen[user.name] != arrived and not G.is_cat(user):
                        result.broken = f"{self.label(user)}: reached with two channel layouts"
                    continue
                seen[user.name] = arrived
                step = self._step(user, node, layout, channels, result, per_channel)
                if isinstance(step, str):
                    result.broken = f"{self.label(user)}: {step}"
                    break
                if not isinstance(step, bool):
                    queue.append((user, step))
                    result.through.append(G.op_name(user, self.modules))
            for p in result.producers:  # producers joined by a sum start walks of their own
                if p.node.name not in seen:
                    seen[p.node.name] = p.layout if per_channel else None
                    queue.append((p.node, p.layout if per_channel else None))
        return result

    def _join(
        self,
        others: list[torch.fx.Node],
        layout: G.Layout | None,
        total: tuple[int, ...] | None,
        result: Cluster,
        per_channel: bool,
    ) -> str | None:
        for other in others:
            found = self._backward(other, _aligned(layout, G.shape(other), total), per_channel)
            if isinstance(found, str):
                return found
            for p in found:
                if p not in result.producers:
                    if per_channel and p.channels != result.producers[0].channels:
                        return f"joins {p.name} with {p.channels} channels to {result.producers[0].channels}"
                    result.producers.append(p)
        return None

    def _step(
        self,
        user: torch.fx.Node,
        node: torch.fx.Node,
        layout: G.Layout | None,
        channels: int,
        result: Cluster,
        per_channel: bool,
    ) -> G.Layout | None | str | bool:
        module = G.module_of(user, self.modules)
        in_shape = G.shape(node)
        if isinstance(module, G.NORMS):
            units = 1 if layout is None else G.norm_units(module, layout, in_shape or (), channels)
            if isinstance(units, str):
                return units
            result.units.append(units)
            result.norms.append(f"{user.target} ({type(module).__name__})")
            return False
        if isinstance(module, G.WEIGHT_LAYERS):
            member = self.consumer(user, layout, channels)
            if isinstance(member, str):
                return member
            result.consumers[member.parameter] = member
            result.units.append(channels if layout is not None else 1)
            return False
        if user.op == "output":
            return "the loss sees the factor"
        others = [a for a in G.tensor_args(user) if a is not node]
        if G.is_add(user) and not all(isinstance(a, torch.fx.Node) for a in G.args(user)[:2]):
            return "adds a constant, which does not scale"
        if G.is_cat(user) and sum(a is node for a in G.tensor_args(user)) > 1:
            return "concatenates the same channels twice"
        if G.is_add(user) or (G.is_cat(user) and (layout is None or G.cat_dim(user) != layout.dim)):
            total = G.shape(user)
            out = _aligned(layout, total, in_shape)  # the sum may broadcast the operand to more axes
            if G.is_add(user) and any(self._broadcasts(a, total, out) for a in [node, *others]):
                return "a sum that broadcasts over the producer's channels"
            joined = self._join(others, out, total, result, per_channel)
            return joined if joined is not None else out
        if G.is_cat(user):
            assert layout is not None
            before = 0
            for a in G.tensor_args(user):
                if a is node:
                    break
                before += (G.shape(a) or (0,) * (layout.dim + 1))[layout.dim]
            return G.Layout(layout.dim, layout.block, layout.offset + before)
        if others and not G.scalar_multiple(user, node):
            return "combines the channels with another tensor"
        if G.is_homogeneous(user, self.modules) or G.scalar_multiple(user, node):
            return layout
        pooled = G.pooled_axes(user, self.modules)
        if pooled is not None:
            return layout if layout is None else G.pool_layout(layout, len(in_shape or ()), pooled)
        if user.op == "call_method" and user.target == "expand" and len(G.shape(user) or ()) == len(in_shape or ()):
            return layout
        if G.is_reshape(user, self.modules):
            if layout is None:
                return None
            moved = G.reshape_layout(layout, in_shape, G.shape(user))
            return moved if moved is not None else "reshapes the channel axis"
        moved_layout = G.permute_layout(user, layout) if layout is not None else None
        if moved_layout is not None:
            return moved_layout
        if layout is None and (
            user.op == "call_method"
            and user.target in ("transpose", "permute", "mean", "sum")
            or user.target is operator.getitem
        ):
            return None
        return "not positively homogeneous (or not followed)"

    @staticmethod
    def _broadcasts(operand: torch.fx.Node, total: tuple[int, ...] | None, layout: G.Layout | None) -> bool:
        """Broadcasting along other axes than the channels commutes with scaling them."""
        a = G.shape(operand)
        if a is None or total is None or a == total or layout is None:
            return False
        axis = layout.dim - (len(total) - len(a))
        return axis < 0 or a[axis] != total[layout.dim]

    def _backward(self, node: torch.fx.Node, layout: G.Layout | None, per_channel: bool) -> list[Producer] | str:
        """The producers whose scaling scales ``node`` alike (through homogeneous maps and sums)."""
        if node.name in self.producers:
            p = self.producers[node.name]
            if per_channel and layout is not None and (p.layout != layout):
                return f"{p.name}'s channels do not line up across the sum"
            return [p]
        if node.name in self.refused:
            return self.refused[node.name]
        expand = node.op == "call_method" and node.target == "expand"
        if G.is_homogeneous(node, self.modules) or G.pooled_axes(node, self.modules) is not None or expand:
            return self._backward(G.args(node)[0], layout, per_channel)
        layout_op = node.op == "call_method" and node.target in ("transpose", "permute")
        if layout_op or (G.is_reshape(node, self.modules) and not per_channel):
            if layout is None or not per_channel:
                return self._backward(G.args(node)[0], None, per_channel)
            args = G.args(node)
            ndim = len(G.shape(node) or ())
            if node.target == "transpose":
                i, j = (int(x) % ndim for x in args[1:3])
                dim = j if layout.dim == i else i if layout.dim == j else layout.dim
            else:
                dims = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
                dim = int(dims[layout.dim]) % ndim
            return self._backward(args[0], G.Layout(dim, layout.block, layout.offset), per_channel)
        if G.is_add(node):
            out: list[Producer] = []
            for a in G.tensor_args(node):
                found = self._backward(a, layout, per_channel)
                if isinstance(found, str):
                    return found
                out += found
            return out
        return f"the other operand comes from {self.label(node)}, which the search cannot scale"

    # ---- the additive walk (translations into a normalization) ---------------------------------------------

    def shift_units(self, p: Producer) -> tuple[list[int], bool] | str:
        """Units of a shift of ``p``'s output that every path normalizes away, and whether all end in LayerNorm
        over exactly ``p``'s channels (then a row vector added to its weight is a translation too)."""
        units: list[int] = []
        layer_norm_only = True
        queue, seen = [(p.node, p.layout)], set()
        while queue:
            node, layout = queue.pop()
            for user in node.users:
                if G.is_shape_query(user) or user.name in seen:
                    continue
                seen.add(user.name)
                module = G.module_of(user, self.modules)
                if isinstance(module, G.NORMS):
                    u = G.norm_units(module, layout, G.shape(node) or (), p.channels)
                    if isinstance(u, str):
                        return f"{self.label(user)}: {u}"
                    units.append(u)
                    in_shape = G.shape(node) or ()
                    layer_norm_only &= (
                        isinstance(module, nn.LayerNorm)
                        and len(module.normalized_shape) == 1
                        and layout == G.Layout(len(in_shape) - 1)
                        and in_shape[-1] == p.channels
                    )
                    continue
                if G.is_add(user):
                    queue.append((user, layout))
                    continue
                pooled = G.pooled_axes(user, self.modules)
                nxt: G.Layout | str | None = None
                if G.is_homogeneous(user, self.modules, shift=True) or G.scalar_multiple(user, node):
                    nxt = layout
                elif pooled is not None:
                    nxt = G.pool_layout(layout, len(G.shape(node) or ()), pooled)
                elif G.is_reshape(user, self.modules):
                    nxt = G.reshape_layout(layout, G.shape(node), G.shape(user))
                else:
                    nxt = G.permute_layout(user, layout)
                if not isinstance(nxt, G.Layout):
                    return f"{self.label(user)}: does not commute with adding a constant"
                queue.append((user, nxt))
        return (units, layer_norm_only) if units else "reaches no normalization"


def _aligned(layout: G.Layout | None, to: tuple[int, ...] | None, frm: tuple[int, ...] | None) -> G.Layout | None:
    """The layout of a tensor of shape ``frm`` seen in a broadcast partner of shape ``to`` (axes align at the right)."""
    if layout is None or to is None or frm is None:
        return layout
    return G.Layout(layout.dim + len(to) - len(frm), layout.block, layout.offset)


def gcd_all(values: list[int]) -> int:
    """The finest partition of the channels into contiguous units that every requirement allows."""
    out = 0
    for v in values:
        out = math.gcd(out, v)
    return out
