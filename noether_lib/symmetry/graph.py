"""Reading a model's :mod:`torch.fx` graph: tracing with clear errors, what each node does to a channel layout.

The search of ``noether_lib.symmetry.discovery`` follows a layer's output channels through the graph. A
*layout* says where those channels sit in a tensor (:class:`Layout`); the helpers here say how an operation moves
them, or why it cannot be followed. Nothing here decides a group.
"""

from __future__ import annotations

import copy
import inspect
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from noether_lib.symmetry.groups import SymmetryError

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
NORMS = (*BATCH_NORMS, *INSTANCE_NORMS, nn.GroupNorm, nn.LayerNorm)
# Element-wise maps that commute with a positive factor: relu(a x) = a relu(x) for a > 0.
_HOMOGENEOUS_MODULES = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
)
_HOMOGENEOUS_FUNCTIONS = {F.relu, torch.relu, F.leaky_relu, F.dropout, torch.dropout, F.prelu}
_HOMOGENEOUS_METHODS = {"relu", "relu_", "contiguous", "clone"}
# Maps that also commute with adding a constant (the walk of a translation): no ReLU.
_SHIFT_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_SHIFT_FUNCTIONS = {F.dropout, torch.dropout}
_SHIFT_METHODS = {"contiguous", "clone"}
# Pooling module or function -> number of pooled (trailing) axes.
_POOLS: dict[Any, int] = {}
for _k, _names in ((1, "1d"), (2, "2d"), (3, "3d")):
    for _kind in ("MaxPool", "AvgPool", "AdaptiveAvgPool", "AdaptiveMaxPool"):
        _POOLS[getattr(nn, _kind + _names)] = _k
    for _fn in ("max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool"):
        _POOLS[getattr(F, _fn + _names)] = _k
_RESHAPE_METHODS = {"view", "reshape", "flatten"}
_SHAPE_QUERIES = {"size", "dim"}
ADDS = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub}
_ADD_METHODS = {"add", "add_", "sub", "sub_"}
_MULS = {operator.mul, operator.imul, torch.mul, operator.truediv, torch.div}
LOG_SOFTMAX = {F.log_softmax, torch.log_softmax}


@dataclass(frozen=True)
class Layout:
    """Where a producer's channels sit in a tensor: along ``dim``, each channel a block of ``block`` entries,
    the first at ``offset`` (after a concatenation along ``dim``)."""

    dim: int
    block: int = 1
    offset: int = 0


def args(node: torch.fx.Node) -> tuple[Any, ...]:
    """The node's positional arguments, untyped (torch.fx types them as a union of everything)."""
    return tuple(node.args)


def kwargs(node: torch.fx.Node) -> dict[str, Any]:
    return dict(node.kwargs)


def shape(node: Any) -> tuple[int, ...] | None:
    """The tensor shape ShapeProp recorded for ``node`` (None for non-tensors)."""
    if not isinstance(node, torch.fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def describe(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> str:
    """A node as a user reads it: ``layer1.0.conv2 (Conv2d)``, ``add (call_function)``, the model's output."""
    if node.op == "call_module":
        return f"{node.target} ({type(modules[str(node.target)]).__name__})"
    if node.op == "output":
        return "the model's output"
    if node.op == "placeholder":
        return f"the model's input {node.target!r}"
    if node.op == "get_attr":
        return f"tensor attribute {node.target}"
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{name} ({node.op})"


def op_name(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> str:
    """The operation's short name: the module's class, or the function's or method's name."""
    if node.op == "call_module":
        return type(modules[str(node.target)]).__name__
    return node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module a :func:`torch.compile` wrapper (``OptimizedModule``) compiles, so that names stay the original."""
    while hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
        model = model._orig_mod
    return model


def trace(
    model: torch.nn.Module, example_input: torch.Tensor, concrete_args: Mapping[str, Any] | None = None
) -> torch.fx.GraphModule:
    """Trace a copy of ``model`` and record every tensor's shape on ``example_input`` (in eval mode).

    Raises:
        SymmetryError: naming what failed: data-dependent control flow, extra ``forward`` arguments (pass
            ``concrete_args``), an operation torch.fx cannot trace, or running the example through the copy.
    """
    name = type(model).__name__
    try:
        duplicate = copy.deepcopy(model)
    except RuntimeError as error:
        raise SymmetryError(
            f"cannot copy {name} ({error}); torch.nn.utils.weight_norm's hooks prevent copies: use "
            "torch.nn.utils.parametrizations.weight_norm"
        ) from error
    try:
        graph_module = torch.fx.symbolic_trace(duplicate, concrete_args=dict(concrete_args or {}))
    except Exception as error:  # torch.fx raises many types: TraceError, TypeError, NotImplementedError...
        text = f"{type(error).__name__}: {error}"
        if "control flow" in str(error) or "iterate" in str(error) or "__bool__" in str(error):
            hint = "the forward branches or loops on tensor values; remove that data-dependent control flow"
        elif isinstance(error, TypeError) and "argument" in str(error):
            hint = "forward takes arguments besides the input; fix them with concrete_args={'name': value}"
        else:
            hint = (
                "an operation in forward cannot be traced symbolically (a layer computing with concrete "
                "shapes, e.g. einops-style rearrange, or a non-torch library call); make it a leaf "
                "module or build the groups by hand"
            )
        extra = [a for a in list(inspect.signature(model.forward).parameters)[1:] if a not in (concrete_args or {})]
        if extra:
            hint += f"; forward also takes {', '.join(extra)}: fix them with concrete_args={{'{extra[0]}': value}}"
        raise SymmetryError(f"cannot trace {name} with torch.fx ({text}): {hint}") from error
    graph_module.eval()
    try:
        with torch.no_grad():
            ShapeProp(graph_module).propagate(example_input)  # concrete arguments keep their defaults
    except Exception as error:
        raise SymmetryError(
            f"traced {name}, but running example_input (shape {tuple(example_input.shape)}) through the traced "
            f"copy failed ({type(error).__name__}: {error}); pass one batch the model accepts"
        ) from error
    return graph_module


def is_shape_query(node: torch.fx.Node) -> bool:
    if node.op == "call_method" and node.target in _SHAPE_QUERIES:
        return True
    return node.op == "call_function" and node.target is getattr and args(node)[1] in ("shape", "ndim", "dtype")


def module_of(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> torch.nn.Module | None:
    return modules[str(node.target)] if node.op == "call_module" else None


def is_homogeneous(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module], shift: bool = False) -> bool:
    """An element-wise map commuting with a positive factor (``shift``: also with adding a constant)."""
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], _SHIFT_MODULES if shift else _HOMOGENEOUS_MODULES)
    if node.op == "call_function":
        return node.target in (_SHIFT_FUNCTIONS if shift else _HOMOGENEOUS_FUNCTIONS)
    return node.op == "call_method" and node.target in (_SHIFT_METHODS if shift else _HOMOGENEOUS_METHODS)


def is_add(node: torch.fx.Node) -> bool:
    return (node.op == "call_function" and node.target in ADDS) or (
        node.op == "call_method" and node.target in _ADD_METHODS
    )


def is_cat(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and node.target in (torch.cat, torch.concat)


def is_log_softmax(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], nn.LogSoftmax)
    return (node.op == "call_function" and node.target in LOG_SOFTMAX) or (
        node.op == "call_method" and node.target == "log_softmax"
    )


def softmax_dim(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> Any:
    if node.op == "call_module":
        return getattr(modules[str(node.target)], "dim", None)
    return args(node)[1] if len(node.args) > 1 else kwargs(node).get("dim")


def tensor_args(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The node's arguments that are tensors (flattening the list of a ``torch.cat``)."""
    values = list(args(node)[0]) if is_cat(node) else list(args(node))
    values += list(kwargs(node).values())
    return [a for a in values if isinstance(a, torch.fx.Node) and shape(a) is not None]


def cat_dim(node: torch.fx.Node) -> int:
    dim = args(node)[1] if len(args(node)) > 1 else kwargs(node).get("dim", 0)
    out = shape(node)
    return int(dim) % len(out) if out is not None else int(dim)


def scalar_multiple(node: torch.fx.Node, source: torch.fx.Node) -> bool:
    """``source * c`` or ``source / c`` with a number ``c`` (or a tensor that no parameter path produces)."""
    if not (node.op == "call_function" and node.target in _MULS) and not (
        node.op == "call_method" and node.target in ("mul", "div", "mul_", "div_")
    ):
        return False
    others = [a for a in args(node) if a is not source]
    if node.target in (operator.truediv, torch.div, "div", "div_") and args(node)[0] is not source:
        return False
    return len(others) == 1 and (not isinstance(others[0], torch.fx.Node) or others[0].op == "get_attr")


def pooled_axes(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> int | None:
    """Number of trailing axes a pooling node pools over, or None if it is no pooling."""
    key: Any = type(modules[str(node.target)]) if node.op == "call_module" else node.target
    if node.op not in ("call_module", "call_function"):
        return None
    try:
        return _POOLS.get(key)
    except TypeError:  # unhashable targets
        return None


def pool_layout(layout: Layout, ndim: int, pooled: int) -> Layout | str:
    """A pool keeps the channel axis only if it is not among the pooled trailing axes (spatial rank check)."""
    if layout.dim >= ndim - pooled:
        return f"pools over the producer's channel axis (a {pooled}-d pool on a {ndim}-d tensor)"
    return layout


def reshape_layout(layout: Layout, before: tuple[int, ...] | None, after: tuple[int, ...] | None) -> Layout | None:
    """The layout after a reshape, or None if the reshape moves channels in a way not handled."""
    if before is None or after is None:
        return None
    if before == after:
        return layout
    d = layout.dim
    if len(after) > d and before[: d + 1] == after[: d + 1]:
        return layout  # only axes after the channel axis are merged or split
    if d == 1 and len(before) >= 2 and len(after) == 2 and after[0] == before[0] and after[1] == math.prod(before[1:]):
        inner = math.prod(before[2:])
        return Layout(1, layout.block * inner, layout.offset * inner)
    return None


def permute_layout(node: torch.fx.Node, layout: Layout) -> Layout | None:
    """The layout after ``transpose``/``permute``/``mean``/``sum``/``getitem``, None if not one of them."""
    out = shape(node)
    ndim = len(out) if out is not None else 0
    if node.op == "call_method" and node.target in ("transpose", "permute"):
        raw: Any = args(node)[1:]
        axes = [int(a) for a in (raw[0] if len(raw) == 1 and isinstance(raw[0], (list, tuple)) else raw)]
        if node.target == "transpose":
            a, b = (x % ndim for x in axes)
            return replace(layout, dim=b if layout.dim == a else a if layout.dim == b else layout.dim)
        return replace(layout, dim=[x % ndim for x in axes].index(layout.dim))
    reduce = (node.op == "call_method" and node.target in ("mean", "sum")) or (
        node.op == "call_function" and node.target in (torch.mean, torch.sum)
    )
    if reduce:
        before = shape(args(node)[0])
        raw = args(node)[1] if len(args(node)) > 1 else kwargs(node).get("dim")
        if before is None or raw is None:
            return None
        dims = {int(a) % len(before) for a in (raw if isinstance(raw, (list, tuple)) else [raw])}
        if layout.dim in dims:
            return None
        keep = kwargs(node).get("keepdim", args(node)[2] if len(args(node)) > 2 else False)
        return layout if keep else replace(layout, dim=layout.dim - sum(d < layout.dim for d in dims))
    if node.op == "call_function" and node.target is operator.getitem and isinstance(args(node)[1], tuple):
        index = args(node)[1]
        if any(i is Ellipsis or i is None or isinstance(i, torch.fx.Node) for i in index):
            return None
        if layout.dim < len(index) and index[layout.dim] != slice(None):
            return None
        return replace(layout, dim=layout.dim - sum(isinstance(i, int) for i in index[: layout.dim]))
    return None


def is_reshape(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], nn.Flatten)
    if node.op == "call_function":
        return node.target in (torch.flatten, torch.reshape)
    return node.op == "call_method" and node.target in _RESHAPE_METHODS


def channel_axis(module: torch.nn.Module, ndim: int) -> int:
    """The channel axis of a normalization layer's ``ndim``-d input: 0 when it reads the input as unbatched."""
    if isinstance(module, (*BATCH_NORMS, *INSTANCE_NORMS)):
        spatial = int(type(module).__name__[-2])
        batched = ndim == spatial + 2 or (isinstance(module, nn.BatchNorm1d) and ndim == 2)
        return 1 if batched else 0
    return 1 if isinstance(module, nn.GroupNorm) else ndim - 1


def norm_units(module: torch.nn.Module, layout: Layout, in_shape: tuple[int, ...], channels: int) -> int | str:
    """Number of units a normalization layer makes scale-invariant, or the reason it does not.

    BatchNorm normalizes each channel (axis 1) over the batch and spatial axes; InstanceNorm each channel over
    the spatial axes (axis 0 is its channel axis when it reads its input as unbatched); GroupNorm contiguous
    groups of channels; LayerNorm the trailing ``normalized_shape`` axes jointly.
    """
    ndim = len(in_shape)
    if isinstance(module, (*BATCH_NORMS, *INSTANCE_NORMS)):
        axis = channel_axis(module, ndim)
        if layout.dim == axis:
            return channels
        if layout.dim == 0:
            return "normalizes across the producer's channels as samples (input read as batch or unbatched)"
        return 1
    if isinstance(module, nn.GroupNorm):
        size = in_shape[1] // module.num_groups
        if layout.dim != 1 or layout.block != 1 or layout.offset % size or channels % size:
            return "groups do not line up with the producer's channels"
        return channels // size
    assert isinstance(module, nn.LayerNorm)
    return 1 if layout.dim >= ndim - len(module.normalized_shape) else channels
