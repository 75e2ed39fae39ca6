"""Symmetries of a network's loss: the groups, their actions and generators, their discovery and their verification.

A :class:`SymmetryGroup` is a *family* of one-parameter symmetries, one per unit (a channel, a neuron, an input
unit of the logit layer). Each unit's symmetry acts on slices of one or more parameters: member ``m``'s tensor,
with axis ``m.dim`` moved first and reshaped to ``(num_units, -1)``, has unit ``u``'s slice as row ``u``
(:meth:`SymmetryGroup.slices`). With ``num_units=1`` the whole member is one unit (the bias translation of the
logits, a layer feeding a :class:`~torch.nn.LayerNorm`). Per unit the action :math:`Q(q,s)` is

* translation: :math:`Q=q+s\\,\\text{sign}\\,\\mathbf 1` on each member's slice,
* scale and rescale: :math:`Q=e^{\\text{sign}\\,s}\\,q` on each member's slice,

so the generator :math:`\\partial_sQ|_{s=0}` is ``sign * ones`` (translation) or ``sign * slice`` (scale, rescale).
The paper writes :math:`Q=(1+s)q` for the scale symmetry; it has the same generator, and the exponential form
composes exactly (:math:`Q(Q(q,s),t)=Q(q,s+t)`), so a factor ``c`` is the group parameter :math:`s=\\ln c`.

Under gradient flow each unit conserves (Eq. 13 of the paper, Euclidean case)

* scale and rescale: :math:`\\sum_{\\text{members}}\\text{sign}\\,\\lVert\\text{slice}\\rVert^2`,
* translation: :math:`\\sum_{\\text{members}}\\text{sign}\\,\\langle\\mathbf 1,\\text{slice}\\rangle`,

which :func:`conserved_quantity` evaluates for every unit at once.

:func:`find_symmetries` reads the groups off a model's graph (:mod:`torch.fx`); :func:`verify_symmetries` and
:func:`check_symmetry` prove them numerically on the model and raise :class:`SymmetryError` where one fails.
The action classes :class:`Translation`, :class:`Scale`, :class:`Rescale` and :class:`Rotation` act on plain
vectors (NumPy, torch or sympy) for toy models and for the kinetic-energy tests of :mod:`noether_lib.kinetic`.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import sympy as sp
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from noether_lib.tolerances import SYMMETRY_GRADIENT_COSINE, SYMMETRY_LOSS_RTOL

__all__ = [
    "SymmetryKind",
    "Member",
    "SymmetryGroup",
    "conserved_quantity",
    "SymmetryError",
    "Translation",
    "Scale",
    "Rescale",
    "Rotation",
    "VERIFICATION_PARAMETERS",
    "VERIFICATION_SPREAD",
    "apply_symmetry",
    "scale_filter_norms",
    "find_symmetries",
    "SymmetryCheck",
    "check_symmetry",
    "verify_symmetries",
]

SymmetryKind = Literal["translation", "scale", "rescale"]


class SymmetryError(ValueError):
    """A symmetry was asked for where it does not hold, or a model's graph cannot be analysed."""


# ---------------------------------------------------------------------------------------------------------------
# Groups as data
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One parameter taking part in a symmetry group.

    Attributes:
        parameter: the parameter's name in ``model.named_parameters()``.
        dim: the axis of that parameter that indexes the group's units.
        sign: the generator's coefficient on this parameter (+1, or -1 for the outgoing side of a rescale).
    """

    parameter: str
    dim: int
    sign: int = 1


@dataclass(frozen=True)
class SymmetryGroup:
    """A family of ``num_units`` one-parameter symmetries of the same kind, acting on ``members``."""

    kind: SymmetryKind
    name: str
    members: tuple[Member, ...]
    num_units: int

    def slices(self, params: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each member's tensor reshaped to ``(num_units, -1)``: row ``u`` is unit ``u``'s slice."""
        return [params[m.parameter].movedim(m.dim, 0).reshape(self.num_units, -1) for m in self.members]

    def generator_slices(self, params: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """The generator :math:`\\partial_sQ|_{s=0}` laid out like :meth:`slices` (row ``u``: unit ``u``)."""
        return [
            m.sign * (torch.ones_like(s) if self.kind == "translation" else s)
            for m, s in zip(self.members, self.slices(params))
        ]

    def generator(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The generator :math:`\\partial_sQ|_{s=0}` of all units at once, as one tensor per member parameter."""
        out: dict[str, torch.Tensor] = {}
        for m in self.members:
            p = params[m.parameter]
            g = m.sign * (torch.ones_like(p) if self.kind == "translation" else p)
            out[m.parameter] = out.get(m.parameter, 0) + g
        return out

    @property
    def parameters(self) -> tuple[str, ...]:
        """The names of the member parameters, in order."""
        return tuple(m.parameter for m in self.members)


def conserved_quantity(group: SymmetryGroup, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per-unit quantity that gradient flow conserves for ``group`` (a vector of length ``num_units``)."""
    total = None
    for m, s in zip(group.members, group.slices(params)):
        term = s.sum(dim=1) if group.kind == "translation" else s.pow(2).sum(dim=1)
        total = m.sign * term if total is None else total + m.sign * term
    return total


# ---------------------------------------------------------------------------------------------------------------
# Actions Q(q, s) and generators on plain vectors (NumPy, torch, sympy)
# ---------------------------------------------------------------------------------------------------------------


def _exp(s: Any) -> Any:
    if isinstance(s, sp.Basic):
        return sp.exp(s)
    if isinstance(s, torch.Tensor):
        return torch.exp(s)
    return math.exp(s)


def _cos_sin(s: Any) -> tuple[Any, Any]:
    if isinstance(s, sp.Basic):
        return sp.cos(s), sp.sin(s)
    if isinstance(s, torch.Tensor):
        return torch.cos(s), torch.sin(s)
    return math.cos(s), math.sin(s)


def _copy(q: Any) -> Any:
    return q.clone() if isinstance(q, torch.Tensor) else q.copy()


@dataclass(frozen=True)
class Translation:
    """Translation along a fixed direction ``n``: :math:`Q(q,s)=q+s\\,n`, generator :math:`n` (softmax logits)."""

    direction: Any

    def __call__(self, q: Any, s: Any) -> Any:
        return q + s * self.direction

    def generator(self, q: Any) -> Any:
        return self.direction + 0 * q


@dataclass(frozen=True)
class Scale:
    """Scaling :math:`Q(q,s)=e^{ws}q`, generator :math:`wq` (``weight`` :math:`w=1`: normalization layers)."""

    weight: float = 1

    def __call__(self, q: Any, s: Any) -> Any:
        return _exp(self.weight * s) * q

    def generator(self, q: Any) -> Any:
        return self.weight * q


@dataclass(frozen=True)
class Rescale:
    """Opposite scalings :math:`Q_i(q,s)=e^{\\sigma_is}q_i` with signs :math:`\\sigma_i=\\pm1`, generator
    :math:`\\sigma\\odot q` (incoming :math:`+1` and outgoing :math:`-1` weights of a ReLU unit)."""

    signs: Sequence[int]

    def __call__(self, q: Any, s: Any) -> Any:
        out = _copy(q)
        for i, sign in enumerate(self.signs):
            out[i] = _exp(sign * s) * q[i]
        return out

    def generator(self, q: Any) -> Any:
        out = _copy(q)
        for i, sign in enumerate(self.signs):
            out[i] = sign * q[i]
        return out


@dataclass(frozen=True)
class Rotation:
    """Rotation by angle :math:`s` in the plane of coordinates ``(i, j)``: :math:`Q=R_{ij}(s)q`, generator
    :math:`Aq` with the skew matrix :math:`A=e_je_i^\\top-e_ie_j^\\top`."""

    i: int = 0
    j: int = 1

    def __post_init__(self) -> None:
        if self.i == self.j:
            raise ValueError(f"a rotation needs two different coordinates, got i = j = {self.i}")

    def __call__(self, q: Any, s: Any) -> Any:
        c, sn = _cos_sin(s)
        out = _copy(q)
        out[self.i] = c * q[self.i] - sn * q[self.j]
        out[self.j] = sn * q[self.i] + c * q[self.j]
        return out

    def generator(self, q: Any) -> Any:
        out = 0 * _copy(q)
        out[self.i] = -q[self.j]
        out[self.j] = q[self.i]
        return out


# ---------------------------------------------------------------------------------------------------------------
# Acting on networks
# ---------------------------------------------------------------------------------------------------------------

#: The finite group parameter ``s`` used by :func:`check_symmetry` for each kind: scale by 1.5, rescale by 1.7,
#: translate by 0.3 (each unit gets a multiple of it between 0.5 and 1.5 so that units are tested independently).
VERIFICATION_PARAMETERS: dict[str, float] = {"scale": math.log(1.5), "rescale": math.log(1.7), "translation": 0.3}
#: Verification moves unit ``u`` by ``s * m_u``, the multipliers ``m_u`` spread evenly over this range (period 5).
VERIFICATION_SPREAD: tuple[float, float] = (0.5, 1.5)


def _unit_parameters(group: SymmetryGroup, s: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(s, dtype=like.dtype, device=like.device)
    if s.ndim == 0:
        s = s.expand(group.num_units)
    if s.shape != (group.num_units,):
        raise ValueError(f"s must be a number or have shape ({group.num_units},), got {tuple(s.shape)}")
    return s.reshape(-1, 1)


def _act(group: SymmetryGroup, params: Mapping[str, torch.Tensor], s: float | torch.Tensor) -> dict[str, torch.Tensor]:
    out = dict(params)
    for m in group.members:
        p = out[m.parameter]
        rows = p.movedim(m.dim, 0).reshape(group.num_units, -1)
        su = _unit_parameters(group, s, p)
        if group.kind == "translation":
            moved = Translation(m.sign * torch.ones_like(rows))(rows, su)
        else:
            moved = Scale(m.sign)(rows, su)
        out[m.parameter] = moved.reshape(p.movedim(m.dim, 0).shape).movedim(0, m.dim)
    return out


def apply_symmetry(
    target: torch.nn.Module | Mapping[str, torch.Tensor], group: SymmetryGroup, s: float | torch.Tensor
) -> torch.nn.Module | dict[str, torch.Tensor]:
    """Apply the group action :math:`Q(q,s)` to every unit of ``group``.

    Args:
        target: a model (its parameters are changed in place and the model is returned) or a mapping of
            parameter names to tensors (a new dict is returned; the tensors are not modified).
        group: the symmetry group.
        s: the group parameter, one number for all units or a tensor with one entry per unit.
    """
    if isinstance(target, nn.Module):
        named = dict(target.named_parameters())
        missing = [m.parameter for m in group.members if m.parameter not in named]
        if missing:
            raise KeyError(f"group {group.name!r} names parameters the model does not have: {missing}")
        moved = _act(group, {m.parameter: named[m.parameter].detach() for m in group.members}, s)
        with torch.no_grad():
            for name, value in moved.items():
                named[name].copy_(value)
        return target
    return _act(group, target, s)


def scale_filter_norms(model: torch.nn.Module, groups: Sequence[SymmetryGroup], factor: float) -> torch.nn.Module:
    """Multiply the weights (and biases) of every scale-symmetric unit by ``factor`` in place.

    This is the scaled initialisation of the paper's motivating figure (conv filter norms times 10): the loss
    is unchanged (in train mode), the learning dynamics are not. Groups of other kinds are ignored.
    """
    if not factor > 0:
        raise ValueError(f"factor must be positive (a scale symmetry has positive factors), got {factor}")
    for group in groups:
        if group.kind == "scale":
            apply_symmetry(model, group, math.log(factor))
    return model


# ---------------------------------------------------------------------------------------------------------------
# Discovery from the model's graph
# ---------------------------------------------------------------------------------------------------------------

_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_PER_CHANNEL_NORMS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
)
_NORMS = (*_PER_CHANNEL_NORMS, nn.GroupNorm, nn.LayerNorm)
# Element-wise maps that commute with a positive per-channel factor: relu(a x) = a relu(x) for a > 0.
_ELEMENTWISE_MODULES = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_ELEMENTWISE_FUNCTIONS = {F.relu, torch.relu, F.leaky_relu, F.dropout, torch.dropout}
_ELEMENTWISE_METHODS = {"relu"}
# Pooling over spatial axes only (channel axis 1 untouched), positively homogeneous per channel.
_POOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
_POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "contiguous"}
_SHAPE_QUERY_METHODS = {"size", "dim"}


@dataclass(frozen=True)
class _Layout:
    """Where a producer's channels sit in a tensor: along ``dim``, each channel a block of ``block`` entries."""

    dim: int
    block: int = 1


@dataclass
class _Reach:
    """What a producer's output reaches: normalization layers, weight layers, or something that breaks symmetry."""

    norms: list[tuple[str, torch.nn.Module, int]] = field(default_factory=list)  # (name, module, number of units)
    consumers: list[tuple[str, torch.nn.Module]] = field(default_factory=list)
    through: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)


def _shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _is_shape_query(node: torch.fx.Node) -> bool:
    if node.op == "call_method" and node.target in _SHAPE_QUERY_METHODS:
        return True
    return node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim")


def _reshaped(layout: _Layout, before: tuple[int, ...] | None, after: tuple[int, ...] | None) -> _Layout | None:
    """The layout after a reshape, or ``None`` if the reshape moves channels in a way not handled."""
    if before is None or after is None:
        return None
    if before == after:
        return layout
    flattens_channels_first = (
        layout.dim == 1 and len(before) >= 2 and len(after) == 2 and after[0] == before[0]
        and after[1] == math.prod(before[1:])
    )
    if flattens_channels_first:
        return _Layout(1, layout.block * math.prod(before[2:]))
    return None


def _norm_units(module: torch.nn.Module, layout: _Layout, shape: tuple[int, ...], channels: int) -> int | str:
    """Number of units a normalization layer makes scale-invariant, or the reason it does not."""
    ndim = len(shape)
    if isinstance(module, _PER_CHANNEL_NORMS):
        if layout.dim != 1:
            return "normalizes an axis other than the producer's channels"
        return channels
    if isinstance(module, nn.GroupNorm):
        if layout.dim != 1 or layout.block != 1:
            return "groups do not line up with the producer's channels"
        return module.num_groups
    # LayerNorm normalizes the last len(normalized_shape) axes of each sample jointly.
    if layout.dim >= ndim - len(module.normalized_shape):
        return 1
    return channels


def _trace(model: torch.nn.Module, example_input: torch.Tensor) -> torch.fx.GraphModule:
    try:
        graph_module = torch.fx.symbolic_trace(copy.deepcopy(model))
    except Exception as error:  # torch.fx raises many types: TraceError, TypeError, NotImplementedError...
        raise SymmetryError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(error).__name__}: {error}); symmetry "
            "discovery needs a graph: remove data-dependent control flow or build the groups by hand"
        ) from error
    graph_module.eval()
    with torch.no_grad():
        ShapeProp(graph_module).propagate(example_input)
    return graph_module


def _follow(graph_module: torch.fx.GraphModule, producer: torch.fx.Node, calls: Mapping[str, int]) -> _Reach:
    """Walk forward from ``producer`` through maps that commute with a positive per-channel factor."""
    modules = dict(graph_module.named_modules())
    reach = _Reach()
    module = modules[producer.target]
    channels = module.out_features if isinstance(module, nn.Linear) else module.out_channels
    out_shape = _shape(producer)
    start = _Layout(len(out_shape) - 1 if isinstance(module, nn.Linear) else 1)
    stack: list[tuple[torch.fx.Node, _Layout]] = [(producer, start)]
    seen: set[str] = set()
    while stack:
        node, layout = stack.pop()
        for user in node.users:
            if user.name in seen or _is_shape_query(user):
                continue
            seen.add(user.name)
            shape, label = _shape(user), _describe(user, modules)
            nxt: _Layout | None = None
            if user.op == "call_module" and isinstance(modules[user.target], _NORMS):
                units = _norm_units(modules[user.target], layout, _shape(node), channels)
                if isinstance(units, str):
                    reach.broken.append(f"{label}: {units}")
                else:
                    reach.norms.append((user.target, modules[user.target], units))
                continue
            if user.op == "call_module" and isinstance(modules[user.target], _WEIGHT_LAYERS):
                consumer = modules[user.target]
                if calls[user.target] != 1:
                    reach.broken.append(f"{label}: module called {calls[user.target]} times (shared weights)")
                elif isinstance(consumer, nn.Linear):
                    if layout.dim != len(_shape(node)) - 1 or consumer.in_features != channels * layout.block:
                        reach.broken.append(f"{label}: its input axis is not the producer's channels")
                    else:
                        reach.consumers.append((user.target, consumer))
                elif consumer.groups != 1 or layout != _Layout(1):
                    reach.broken.append(f"{label}: grouped convolution or channels not on axis 1")
                else:
                    reach.consumers.append((user.target, consumer))
                continue
            others = [a for a in (*user.args[1:], *user.kwargs.values()) if isinstance(a, torch.fx.Node)]
            if user.args[0] is not node or any(_shape(a) is not None for a in others):
                reach.broken.append(f"{label}: combines the channels with another tensor")
                continue
            if _is_elementwise(user, modules):
                nxt = layout
            elif _is_pool(user, modules):
                nxt = layout if layout == _Layout(1) and len(shape) >= 3 else None
            elif _is_reshape(user, modules):
                nxt = _reshaped(layout, _shape(node), shape)
            if nxt is None:
                reach.broken.append(label)
            else:
                reach.through.append(_op_name(user, modules))
                stack.append((user, nxt))
    return reach


def _op_name(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> str:
    if node.op == "call_module":
        return type(modules[node.target]).__name__
    return node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))


def _describe(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> str:
    if node.op == "call_module":
        return f"{node.target} ({_op_name(node, modules)})"
    return "the model's output" if node.op == "output" else f"{_op_name(node, modules)} ({node.op})"


def _is_elementwise(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _ELEMENTWISE_MODULES)
    if node.op == "call_function":
        return node.target in _ELEMENTWISE_FUNCTIONS
    return node.op == "call_method" and node.target in _ELEMENTWISE_METHODS


def _is_pool(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _POOL_MODULES)
    return node.op == "call_function" and node.target in _POOL_FUNCTIONS


def _is_reshape(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], nn.Flatten)
    if node.op == "call_function":
        return node.target in (torch.flatten, torch.reshape)
    return node.op == "call_method" and node.target in _RESHAPE_METHODS


def find_symmetries(model: torch.nn.Module, example_input: torch.Tensor) -> list[SymmetryGroup]:
    """Discover the symmetric parameter groups of ``model`` from its :mod:`torch.fx` graph.

    The model is traced (a copy; the model is not changed) and ``example_input`` is run through the copy in
    eval mode to learn every tensor's shape. For each :class:`~torch.nn.Linear` or ``Conv1d/2d/3d`` layer (the
    *producer*) the graph is followed forward through maps that commute with a positive per-channel factor
    (ReLU, LeakyReLU, dropout, identity, max/average pooling over spatial axes, and a flatten that keeps the
    channels as the leading block). Whatever that walk reaches decides the group:

    * ``"scale"``: every path ends in a normalization layer. Units: one per channel for BatchNorm and
      InstanceNorm; one per group of channels for GroupNorm; for LayerNorm, which normalizes all of a
      sample's features jointly, the whole layer is **one** unit (``num_units=1``) when the channels are among
      the normalized axes. Members: weight (dim 0) and bias (dim 0, if any), sign +1.
    * ``"rescale"``: every path ends in Linear/Conv layers, with no normalization in between. Members: the
      producer's weight and bias (dim 0, sign +1) and each consumer's weight (dim 1, sign -1); after a flatten
      a conv channel owns a contiguous block of the linear layer's inputs, which the reshape to
      ``(num_units, -1)`` captures.
    * none, if any path reaches anything else: a residual sum or concatenation (a rescale holds across a sum
      only if every branch scales; such groups are not built), a non-homogeneous activation (tanh), the
      model's output, a module called more than once (shared weights), a grouped convolution as consumer.

    ``"translation"``: if the model's output is a :class:`~torch.nn.Linear` layer, the logits are assumed to
    feed a softmax cross-entropy, whose loss is unchanged when a constant is added to every logit. Two groups:
    one unit per input unit ``j`` of that layer (member weight, dim 1: adding :math:`s\\mathbf 1` to column
    ``j`` adds :math:`s h_j` to every logit) and, with a bias, the bias as one unit (``num_units=1``).

    Args:
        model: any :class:`torch.nn.Module` that :func:`torch.fx.symbolic_trace` can trace.
        example_input: one batch of inputs (at least two samples if the model has BatchNorm1d).

    Returns:
        The groups in graph order, translations last.

    Raises:
        SymmetryError: the model cannot be traced.
    """
    graph_module = _trace(model, example_input)
    modules = dict(graph_module.named_modules())
    nodes = list(graph_module.graph.nodes)
    calls: dict[str, int] = {}
    for node in nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    groups: list[SymmetryGroup] = []
    for node in nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], _WEIGHT_LAYERS) or calls[node.target] != 1:
            continue
        module = modules[node.target]
        reach = _follow(graph_module, node, calls)
        if reach.broken:
            continue
        incoming = [Member(f"{node.target}.weight", 0, 1)]
        if module.bias is not None:
            incoming.append(Member(f"{node.target}.bias", 0, 1))
        channels = module.out_features if isinstance(module, nn.Linear) else module.out_channels
        if reach.norms and not reach.consumers:
            units = 0
            for _, _, n in reach.norms:
                units = math.gcd(units, n)
            names = ", ".join(f"{name} ({type(m).__name__})" for name, m, _ in reach.norms)
            groups.append(SymmetryGroup("scale", f"{node.target} → {names}", tuple(incoming), units))
        elif reach.consumers and not reach.norms:
            outgoing = [Member(f"{name}.weight", 1, -1) for name, _ in reach.consumers]
            via = ", ".join(dict.fromkeys(reach.through)) or "identity"
            names = ", ".join(name for name, _ in reach.consumers)
            groups.append(SymmetryGroup("rescale", f"{node.target} → {names} ({via})", tuple(incoming + outgoing), channels))
    groups.extend(_translations(graph_module, modules, calls))
    return groups


def _translations(
    graph_module: torch.fx.GraphModule, modules: Mapping[str, torch.nn.Module], calls: Mapping[str, int]
) -> list[SymmetryGroup]:
    output = next(n for n in graph_module.graph.nodes if n.op == "output")
    logits = output.args[0]
    if not isinstance(logits, torch.fx.Node) or logits.op != "call_module":
        return []
    layer = modules[logits.target]
    if not isinstance(layer, nn.Linear) or calls[logits.target] != 1 or len(logits.users) != 1:
        return []
    groups = [
        SymmetryGroup(
            "translation", f"{logits.target} (logit weights, per input unit)",
            (Member(f"{logits.target}.weight", 1, 1),), layer.in_features,
        )
    ]
    if layer.bias is not None:
        groups.append(
            SymmetryGroup("translation", f"{logits.target}.bias (all logits)", (Member(f"{logits.target}.bias", 0, 1),), 1)
        )
    return groups


# ---------------------------------------------------------------------------------------------------------------
# Numerical verification
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SymmetryCheck:
    """The numerical evidence for one group.

    Attributes:
        group: the group's name.
        kind: its kind.
        num_units: its number of units.
        s: the group parameter applied (units get multiples of it between 0.5 and 1.5).
        loss: the loss at the model's parameters.
        loss_change: :math:`|f(Q(q,s))-f(q)|/|f(q)|`.
        gradient_cosine: the largest, over units, :math:`|\\langle\\nabla f,\\partial_sQ\\rangle|/(\\lVert\\nabla
            f\\rVert\\lVert\\partial_sQ\\rVert)` (0 for a unit with zero gradient).
        holds: both are under their tolerances.
    """

    group: str
    kind: str
    num_units: int
    s: float
    loss: float
    loss_change: float
    gradient_cosine: float
    holds: bool


def _loss(
    model: torch.nn.Module, params: Mapping[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    buffers = {k: v.clone() for k, v in model.named_buffers()}  # batch statistics must not leak between calls
    return loss_fn(torch.func.functional_call(model, {**params, **buffers}, (inputs,)), targets)


class _Verifier:
    """A float64 twin of the model with its loss and gradient at the current parameters, computed once."""

    def __init__(
        self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], mode: Literal["train", "eval"],
    ) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.model_name, self.mode, self.loss_fn = type(model).__name__, mode, loss_fn
        self.twin = copy.deepcopy(model).double()
        self.twin.train(mode == "train")
        for module in self.twin.modules():
            if isinstance(module, nn.modules.dropout._DropoutNd):
                module.eval()  # the loss must be a deterministic function of the parameters
        self.inputs, self.targets = inputs.double(), targets
        self.params = {k: v.detach().requires_grad_(True) for k, v in self.twin.named_parameters()}
        loss = _loss(self.twin, self.params, self.inputs, targets, loss_fn)
        grads = torch.autograd.grad(loss, list(self.params.values()), allow_unused=True)
        self.loss = loss.detach()
        self.grads = {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(self.params.items(), grads)}
        self.params = {k: v.detach() for k, v in self.params.items()}

    def check(self, group: SymmetryGroup, s: float | None, rtol: float, cosine_tol: float, raise_on_failure: bool) -> SymmetryCheck:
        missing = [p for p in group.parameters if p not in self.params]
        if missing:
            raise SymmetryError(f"group {group.name!r} names parameters that {self.model_name} lacks: {missing}")
        s = VERIFICATION_PARAMETERS[group.kind] if s is None else s
        low, high = VERIFICATION_SPREAD
        spread = s * (low + (high - low) * (torch.arange(group.num_units, dtype=torch.float64) % 5) / 4)
        with torch.no_grad():
            moved = _loss(self.twin, _act(group, self.params, spread), self.inputs, self.targets, self.loss_fn)
        loss_change = float((moved - self.loss).abs() / self.loss.abs().clamp_min(torch.finfo(torch.float64).tiny))
        grads, gens = group.slices(self.grads), group.generator_slices(self.params)
        dot = sum((g * x).sum(1) for g, x in zip(grads, gens))
        norms = sum(g.pow(2).sum(1) for g in grads).sqrt() * sum(x.pow(2).sum(1) for x in gens).sqrt()
        cosine = torch.where(norms > 0, dot.abs() / norms.clamp_min(1e-300), torch.zeros_like(dot))
        worst = int(cosine.argmax())
        result = SymmetryCheck(
            group.name, group.kind, group.num_units, float(s), float(self.loss), loss_change, float(cosine[worst]),
            loss_change <= rtol and float(cosine[worst]) <= cosine_tol,
        )
        if raise_on_failure and not result.holds:
            acting = ", ".join(f"{m.parameter} (dim {m.dim}, sign {m.sign:+d})" for m in group.members)
            raise SymmetryError(
                f"{group.kind} symmetry {group.name!r} does not hold on {self.model_name} in {self.mode} mode: "
                f"acting on {acting} with s = {s:.3g} changed the loss by a relative {loss_change:.2e} "
                f"(tolerance {rtol:.0e}); the gradient of unit {worst} has cosine {result.gradient_cosine:.2e} "
                f"with the generator (tolerance {cosine_tol:.0e})"
            )
        return result


def check_symmetry(
    model: torch.nn.Module,
    group: SymmetryGroup,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    mode: Literal["train", "eval"] = "train",
    s: float | None = None,
    rtol: float = SYMMETRY_LOSS_RTOL,
    cosine_tol: float = SYMMETRY_GRADIENT_COSINE,
    raise_on_failure: bool = True,
) -> SymmetryCheck:
    """Prove numerically that ``group`` is a symmetry of the loss of ``model`` on one batch.

    The check runs on a float64 copy of the model (the model is not changed) in ``mode``: ``"train"`` (the
    default) normalizes with batch statistics, under which BatchNorm is scale-invariant up to its
    :math:`\\epsilon`; in ``"eval"`` mode BatchNorm uses fixed running statistics, an affine map, and the scale
    symmetry does not hold. Dropout is switched off in both. Two conditions must hold:

    * invariance: :math:`|f(Q(q,s))-f(q)|\\le` ``rtol`` :math:`|f(q)|`, each unit moved by its own finite
      :math:`s_u\\in[s/2,3s/2]` (``s`` from :data:`VERIFICATION_PARAMETERS` by default);
    * orthogonality: :math:`|\\langle\\nabla f,\\partial_sQ\\rangle|\\le` ``cosine_tol``
      :math:`\\lVert\\nabla f\\rVert\\lVert\\partial_sQ\\rVert` for every unit.

    Raises:
        SymmetryError: a condition fails (with ``raise_on_failure``): the message names the group, its
            parameters and the size of the violation.
    """
    return _Verifier(model, inputs, targets, loss_fn, mode).check(group, s, rtol, cosine_tol, raise_on_failure)


def verify_symmetries(
    model: torch.nn.Module,
    groups: Sequence[SymmetryGroup],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    mode: Literal["train", "eval"] = "train",
    rtol: float = SYMMETRY_LOSS_RTOL,
    cosine_tol: float = SYMMETRY_GRADIENT_COSINE,
    raise_on_failure: bool = True,
) -> pd.DataFrame:
    """Run :func:`check_symmetry` on every group; one row per group (the fields of :class:`SymmetryCheck`).

    Raises:
        SymmetryError: with ``raise_on_failure``, if any group fails; the message lists every failure.
    """
    verifier = _Verifier(model, inputs, targets, loss_fn, mode)
    rows = [verifier.check(g, None, rtol, cosine_tol, raise_on_failure=False) for g in groups]
    table = pd.DataFrame([r.__dict__ for r in rows], columns=list(SymmetryCheck.__dataclass_fields__))
    failed = table[~table["holds"]]
    if raise_on_failure and len(failed):
        by_name = {g.name: g for g in groups}
        lines = "; ".join(
            f"{r.kind} {r.group!r} on {', '.join(by_name[r.group].parameters)}: loss change {r.loss_change:.2e}, "
            f"gradient cosine {r.gradient_cosine:.2e}"
            for r in failed.itertuples()
        )
        raise SymmetryError(
            f"{len(failed)} of {len(table)} symmetries do not hold in {mode} mode (tolerances: loss {rtol:.0e}, "
            f"cosine {cosine_tol:.0e}): {lines}"
        )
    return table
