"""Rescale symmetries of attention: query/key and value/output, per dimension.

In :math:`\\mathrm{softmax}(QK^\\top/\\sqrt d)V W_O`, dimension :math:`c` of the queries meets only dimension
:math:`c` of the keys, so :math:`W_{Q,c\\cdot}\\mapsto e^{s}W_{Q,c\\cdot}`, :math:`W_{K,c\\cdot}\\mapsto e^{-s}W_{K,c\\cdot}`
(with their biases) leaves every attention logit unchanged; dimension :math:`c` of the values reaches only input
:math:`c` of the output projection, so :math:`W_{V,c\\cdot}\\mapsto e^{s}W_{V,c\\cdot}`, :math:`W_{O,\\cdot c}\\mapsto
e^{-s}W_{O,\\cdot c}` leaves the output unchanged. The search replays the reshapes and transposes between the
projections and the products on a tensor of channel indices, so it finds these pairs whatever the head layout,
for separate ``q``/``k``/``v`` Linear layers feeding ``@`` (``torch.matmul``) or
:func:`torch.nn.functional.scaled_dot_product_attention`. A packed ``qkv`` projection is not handled: its groups
would act on slices of one parameter.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from noether_lib.symmetry import graph as G
from noether_lib.symmetry.groups import Member, SymmetryGroup
from noether_lib.symmetry.search import Search

__all__ = ["attention_groups"]

_MATMULS = {operator.matmul, torch.matmul, torch.bmm}


def _replay(node: torch.fx.Node, index: torch.Tensor, search: Search) -> torch.Tensor | None:
    """The channel-index tensor after ``node`` (a reshape, transpose, permute or scalar multiple), or None."""
    out = G.shape(node)
    if out is None:
        return None
    if G.is_reshape(node, search.modules) or (node.op == "call_method" and node.target == "contiguous"):
        return index.reshape(out) if index.numel() == torch.Size(out).numel() else None
    args = G.args(node)
    if node.op == "call_method" and node.target == "transpose":
        return index.transpose(int(args[1]), int(args[2]))
    if node.op == "call_method" and node.target == "permute":
        dims = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
        return index.permute(*[int(d) for d in dims])
    if G.scalar_multiple(node, args[0]):
        return index
    return None


def _to_product(search: Search, producer: torch.fx.Node) -> tuple[torch.fx.Node, torch.fx.Node, torch.Tensor] | None:
    """Follow a Linear layer's output through single-use layout ops to a product; its last node and index tensor."""
    out = G.shape(producer)
    if out is None:
        return None
    index = torch.arange(out[-1]).expand(out)
    node = producer
    while len(node.users) == 1:
        user = next(iter(node.users))
        if (
            (user.op == "call_function" and user.target in _MATMULS)
            or (user.op == "call_method" and user.target == "matmul")
            or (user.op == "call_function" and user.target is F.scaled_dot_product_attention)
        ):
            return node, user, index
        moved = _replay(user, index, search)
        if moved is None:
            return None
        node, index = user, moved
    return None


def _channels(index: torch.Tensor, along: int, constant: int) -> torch.Tensor | None:
    """The channel of each position along axis ``along`` if the index does not vary along ``constant``."""
    if not bool((index == index.narrow(constant, 0, 1)).all()):
        return None
    return index.narrow(constant, 0, 1).squeeze(constant).movedim(along if along < constant else along - 1, -1)


def _is_permutation(channels: torch.Tensor, size: int) -> bool:
    first = channels.reshape(channels.shape[0], -1)[0] if channels.ndim > 1 else channels
    same = bool((channels == channels[:1]).all()) if channels.ndim > 1 else True
    return same and torch.equal(first.sort().values, torch.arange(size))


def _members(search: Search, name: str, sign: int) -> list[Member] | None:
    out = []
    for attr in ("weight", "bias"):
        member = search.parameter(name, attr)
        if isinstance(member, str) or (isinstance(member, Member) and member.parameter != f"{name}.{attr}"):
            return None
        if member is not None:
            out.append(Member(member.parameter, 0, sign))
    return out


def _output_consumer(search: Search, product: torch.fx.Node, index: torch.Tensor) -> str | None:
    """The Linear layer the product's channels reach, in their own order, through layout ops; else None."""
    node = product
    while len(node.users) == 1:
        user = next(iter(node.users))
        module = G.module_of(user, search.modules)
        if isinstance(module, nn.Linear) and search.calls[str(user.target)] == 1:
            expected = torch.arange(module.in_features).expand(index.shape)
            return str(user.target) if index.shape[-1] == module.in_features and torch.equal(index, expected) else None
        moved = _replay(user, index, search)
        if moved is None:
            return None
        node, index = user, moved
    return None


def _ancestors(node: torch.fx.Node) -> set[str]:
    seen, stack = set(), [node]
    while stack:
        for a in stack.pop().all_input_nodes:
            if a.name not in seen:
                seen.add(a.name)
                stack.append(a)
    return seen


def attention_groups(search: Search) -> list[SymmetryGroup]:
    """The query/key and value/output rescale groups of every attention the search can follow."""
    reach: dict[str, tuple[torch.fx.Node, torch.fx.Node, torch.Tensor]] = {}
    for node in search.nodes:
        module = G.module_of(node, search.modules)
        if isinstance(module, nn.Linear) and search.calls[str(node.target)] == 1:
            found = _to_product(search, node)
            if found is not None:
                reach[node.name] = found
    groups = []
    by_last = {last.name: (name, product, index) for name, (last, product, index) in reach.items()}
    for product in dict.fromkeys(p for _, p, _ in reach.values()):
        args: list[Any] = list(G.args(product))
        sdpa = product.target is F.scaled_dot_product_attention
        operands = [by_last.get(a.name) if isinstance(a, torch.fx.Node) else None for a in args[: 3 if sdpa else 2]]
        if sdpa or (operands[0] is not None and operands[1] is not None):  # queries and keys
            q, k = operands[0], operands[1]
            if q is not None and k is not None:
                iq, ik = q[2], (k[2].transpose(-2, -1) if sdpa else k[2])
                cq, ck = _channels(iq, iq.ndim - 1, iq.ndim - 2), _channels(ik, ik.ndim - 2, ik.ndim - 1)
                size = iq.max().item() + 1
                if cq is not None and ck is not None and torch.equal(cq, ck) and _is_permutation(cq, int(size)):
                    mq, mk = _members(search, _target(search, q[0]), 1), _members(search, _target(search, k[0]), -1)
                    if mq and mk:
                        groups.append(
                            SymmetryGroup(
                                "rescale",
                                f"{_target(search, q[0])} ↔ {_target(search, k[0])} (attention logits, per dimension)",
                                tuple(mq + mk),
                                int(size),
                            )
                        )
        v = operands[2] if sdpa else operands[1] if operands[0] is None else None
        if v is not None:
            iv = v[2]
            cv = _channels(iv, iv.ndim - 1, iv.ndim - 2)
            weights = args[0] if not sdpa else None
            independent = weights is None or _target_node(search, v[0]).name not in _ancestors(weights)
            if cv is not None and independent:
                out_index = iv.narrow(iv.ndim - 2, 0, 1).expand(*G.shape(product))  # type: ignore[misc]
                consumer = _output_consumer(search, product, out_index)
                mv = _members(search, _target(search, v[0]), 1)
                if consumer is not None and mv:
                    groups.append(
                        SymmetryGroup(
                            "rescale",
                            f"{_target(search, v[0])} → {consumer} (attention values, per dimension)",
                            tuple(mv + [Member(f"{consumer}.weight", 1, -1)]),
                            int(iv.max().item() + 1),
                        )
                    )
    return groups


def _target_node(search: Search, node_name: str) -> torch.fx.Node:
    return next(n for n in search.nodes if n.name == node_name)


def _target(search: Search, node_name: str) -> str:
    return str(_target_node(search, node_name).target)
