"""Discovery of a network's symmetry groups from its :mod:`torch.fx` graph: :func:`find_symmetries`.

The walks themselves live in ``noether_lib.symmetry.search``; this module turns what they reach into groups,
adds the translations (logits of a softmax loss, biases and rows normalized away), refuses every group that would
name something ``model.named_parameters()`` does not list, and explains, per weight, where the search stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from noether_lib.symmetry import graph as G
from noether_lib.symmetry.attention import attention_groups
from noether_lib.symmetry.groups import Member, SymmetryGroup
from noether_lib.symmetry.search import Cluster, Search, gcd_all

__all__ = ["LossKind", "FoundSymmetries", "find_symmetries", "loss_kind", "weight_coverage"]

#: The losses :func:`find_symmetries` knows: only the softmax ones are invariant under a shift of the logits.
LossKind = Literal["cross_entropy", "nll", "binary_cross_entropy", "mse", "other"]
_LOSS_KINDS: tuple[str, ...] = ("cross_entropy", "nll", "binary_cross_entropy", "mse", "other")
_LOSS_FUNCTIONS: dict[Any, LossKind] = {
    F.cross_entropy: "cross_entropy",
    nn.CrossEntropyLoss: "cross_entropy",
    F.nll_loss: "nll",
    nn.NLLLoss: "nll",
    F.binary_cross_entropy: "binary_cross_entropy",
    F.binary_cross_entropy_with_logits: "binary_cross_entropy",
    nn.BCELoss: "binary_cross_entropy",
    nn.BCEWithLogitsLoss: "binary_cross_entropy",
    F.mse_loss: "mse",
    nn.MSELoss: "mse",
}


def loss_kind(loss: str | Callable[..., torch.Tensor]) -> LossKind:
    """The kind of a loss given by name, by function (``F.cross_entropy``) or by module (``nn.MSELoss()``)."""
    if isinstance(loss, str):
        if loss not in _LOSS_KINDS:
            raise ValueError(f"loss must be one of {', '.join(_LOSS_KINDS)}; got {loss!r}")
        return loss  # type: ignore[return-value]
    key = type(loss) if isinstance(loss, torch.nn.Module) else loss
    return _LOSS_FUNCTIONS.get(key, "other")


class FoundSymmetries(list[SymmetryGroup]):
    """The groups :func:`find_symmetries` found (a plain list of them), with ``explanation``: one row per weight
    tensor of a Linear/Conv/normalization layer saying which groups hold it, or where the search stopped and why."""

    explanation: pd.DataFrame


def _cluster_group(search: Search, cluster: Cluster, per_channel: bool) -> SymmetryGroup | None:
    if not cluster.norms and not cluster.consumers:
        return None
    units = gcd_all(cluster.units) if per_channel else 1
    members = [m for p in cluster.producers for m in p.members]
    names = ", ".join(p.name for p in cluster.producers)
    if cluster.consumers:
        via = ", ".join(dict.fromkeys(cluster.through)) or "identity"
        ends = ", ".join(dict.fromkeys([*cluster.consumers_named, *cluster.norms]))
        return SymmetryGroup(
            "rescale", f"{names} → {ends} ({via})", tuple(members + list(cluster.consumers.values())), units
        )
    return SymmetryGroup("scale", f"{names} → {', '.join(dict.fromkeys(cluster.norms))}", tuple(members), units)


def _multiplicative(search: Search, why: dict[str, str]) -> list[SymmetryGroup]:
    groups: list[SymmetryGroup] = []
    done: set[str] = set()
    for node in search.nodes:
        if node.name not in search.producers or node.name in done:
            continue
        seed = search.producers[node.name]
        cluster, per_channel = search.cluster(seed, per_channel=True), True
        if cluster.broken is not None:
            whole = search.cluster(seed, per_channel=False)
            if whole.broken is None and (whole.norms or whole.consumers):
                for p in whole.producers:
                    why[p.name] = f"channel by channel: stopped at {cluster.broken}; the whole layer is one unit"
                cluster, per_channel = whole, False
            else:
                for p in cluster.producers:
                    why.setdefault(p.name, f"stopped at {cluster.broken}")
                    done.add(p.node.name)
                continue
        done.update(p.node.name for p in cluster.producers)
        group = _cluster_group(search, cluster, per_channel)
        if group is None:
            why.setdefault(seed.name, "its output is not used")
        else:
            groups.append(group)
    return groups


def _weight_norm_directions(search: Search) -> list[SymmetryGroup]:
    """w = g v/‖v‖ does not change when a row of the direction v is scaled: a scale group on v itself."""
    groups = []
    for name, module in search.model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            plist = module.parametrizations["weight"]
            if len(plist) == 1 and type(plist[0]).__name__ == "_WeightNorm" and plist[0].dim == 0:
                v = f"{name}.parametrizations.weight.original1"
                rows = search.params[v].shape[0]
                groups.append(SymmetryGroup("scale", f"{name} weight-norm direction", (Member(v, 0),), rows))
    return groups


def _shift_translations(search: Search, why: dict[str, str]) -> list[SymmetryGroup]:
    groups = []
    for p in search.producers.values():
        module = search.modules.get(p.name)
        bias = [m for m in p.members if m.parameter.endswith("bias")]
        if not isinstance(module, G.WEIGHT_LAYERS) or not bias:
            continue
        found = search.shift_units(p)
        if isinstance(found, str):
            continue
        units, layer_norm_only = found
        groups.append(SymmetryGroup("translation", f"{p.name}.bias (normalized away)", (bias[0],), gcd_all(units)))
        weight = p.members[0]
        if layer_norm_only and isinstance(module, nn.Linear) and weight.parameter.endswith(".weight"):
            groups.append(
                SymmetryGroup(
                    "translation",
                    f"{p.name}.weight (+ a row, normalized away)",
                    (Member(weight.parameter, 1),),
                    module.in_features,
                )
            )
    return groups


def _logit_translations(search: Search, kind: LossKind, why: dict[str, str]) -> list[SymmetryGroup]:
    output = next(n for n in search.nodes if n.op == "output")
    logits = output.args[0]
    through_log_softmax = False
    if isinstance(logits, torch.fx.Node) and G.is_log_softmax(logits, search.modules) and len(logits.users) == 1:
        dim = G.softmax_dim(logits, search.modules)
        out = G.shape(logits)
        if out is not None and dim is not None and int(dim) % len(out) == len(out) - 1:
            logits, through_log_softmax = logits.args[0], True
    if not isinstance(logits, torch.fx.Node) or logits.op != "call_module" or len(logits.users) != 1:
        return []
    name = str(logits.target)
    layer = search.modules[name]
    if not isinstance(layer, nn.Linear) or search.calls[name] != 1:
        return []
    if kind not in ("cross_entropy", "nll") or (kind == "nll" and not through_log_softmax):
        why[f"{name}.logits"] = f"no translation of the logits: the loss is {kind}, not a softmax over the logits"
        return []
    if layer.out_features < 2:
        why[f"{name}.logits"] = "no translation of the logits: a single logit (softmax over one class is constant)"
        return []
    groups = []
    for attr, dim, units, label in (
        ("weight", 1, layer.in_features, "logit weights, per input unit"),
        ("bias", 0, 1, "all logits"),
    ):
        member = search.parameter(name, attr)
        if isinstance(member, Member) and member.parameter != f"{name}.{attr}":
            member = f"{name}.{attr} is weight-normalized: its columns cannot be translated through g and v"
        if isinstance(member, Member):
            title = f"{name} ({label})" if attr == "weight" else f"{name}.bias ({label})"
            groups.append(SymmetryGroup("translation", title, (Member(member.parameter, dim),), units))
        elif isinstance(member, str):
            why[f"{name}.{attr}"] = member
    return groups


def _explain(search: Search, groups: Sequence[SymmetryGroup], why: Mapping[str, str]) -> pd.DataFrame:
    holders: dict[str, list[str]] = {}
    for g in groups:
        for m in g.members:
            holders.setdefault(m.parameter, []).append(f"{g.kind}: {g.name}")
    rows = []
    for name, module in search.model.named_modules():
        if (
            not isinstance(module, (*G.WEIGHT_LAYERS, *G.NORMS, nn.Embedding))
            or getattr(module, "weight", None) is None
        ):
            continue
        weight = next((n for n in holders if n.startswith(f"{name}.") and "weight" in n.removeprefix(name)), None)
        held = [h for n, hs in holders.items() if n.startswith(f"{name}.") for h in hs]
        reason = why.get(name) or next((r for k, r in search.refused.items() if r.startswith(name)), "")
        rows.append(
            {
                "layer": name,
                "type": type(module).__name__,
                "in_group": weight is not None,
                "groups": "; ".join(dict.fromkeys(held)),
                "stopped": "" if held and not reason else reason,
            }
        )
    return pd.DataFrame(rows, columns=["layer", "type", "in_group", "groups", "stopped"])


def find_symmetries(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    *,
    loss: str | Callable[..., torch.Tensor] = "cross_entropy",
    concrete_args: Mapping[str, Any] | None = None,
    explain: bool = False,
) -> FoundSymmetries:
    """Discover the symmetric parameter groups of ``model`` from its :mod:`torch.fx` graph.

    The model is traced (a copy; the model is not changed; a :func:`torch.compile` wrapper is unwrapped, so names
    are the original module's) and ``example_input`` is run through the copy in eval mode to learn every shape.
    Each Linear/Conv layer and each normalization layer's affine :math:`(\\gamma,\\beta)` is followed forward
    through maps that commute with a positive per-channel factor (ReLU, leaky ReLU, PReLU, dropout, identity,
    max/average pooling over spatial axes, reshapes keeping the channels, multiplication by a number), joining
    the producers of every operand of a residual sum (``noether_lib.symmetry.search``):

    * ``"scale"``: every path ends in a normalization layer. Units: one per channel for BatchNorm and
      InstanceNorm, one per group for GroupNorm, one for the whole layer where LayerNorm normalizes the channels
      jointly. Members: the producers' weights and biases (or :math:`\\gamma,\\beta`), dim 0, sign +1.
    * ``"rescale"``: some paths end in Linear/Conv layers, the others in normalizations. Members: the producers'
      as above and the consumers' weights, dim 1 (dim 0 for a depthwise convolution), sign -1.
    * ``"translation"``: with a softmax loss (``loss`` ``"cross_entropy"``, or ``"nll"`` on a ``log_softmax``
      output) over more than one logit, the logit layer's weight per input unit and its bias; a bias whose
      every path ends in normalizations that subtract its mean; and with LayerNorm over a Linear layer's
      outputs, one row vector added to every row of its weight.

    Anything else (a tanh or GELU, the model's output, a module called twice, a tied or parametrized tensor
    other than weight norm's magnitude, a grouped convolution as consumer) stops the search; a weight-norm
    layer's direction tensor gets its own scale group.

    Args:
        model: any :class:`torch.nn.Module` that :func:`torch.fx.symbolic_trace` can trace.
        example_input: one batch of inputs (at least two samples if the model has BatchNorm1d).
        loss: the training loss, by name (``"cross_entropy"``, ``"nll"``, ``"binary_cross_entropy"``, ``"mse"``,
            ``"other"``) or as the function or module itself; it decides the translation of the logits.
        concrete_args: values for ``forward``'s extra arguments (passed to :func:`torch.fx.symbolic_trace`).
        explain: print, for every weight, its groups or where the search stopped and why (the same table is
            always in the result's ``explanation``).

    Returns:
        The groups in graph order, translations last, as a list with an ``explanation`` attribute.

    Raises:
        SymmetryError: the model cannot be traced or the example cannot be run; the message says what failed.
    """
    kind = loss_kind(loss)
    search = Search(model, example_input, concrete_args)
    why: dict[str, str] = {}
    groups = [*_multiplicative(search, why), *attention_groups(search), *_weight_norm_directions(search)]
    groups += [*_shift_translations(search, why), *_logit_translations(search, kind, why)]
    listed = set(search.params)
    kept = []
    for g in groups:
        bad = [m.parameter for m in g.members if m.parameter not in listed or m.parameter in search.tied]
        if bad:
            why[g.name] = f"refused: names {bad}, not a parameter of its own in named_parameters()"
        else:
            kept.append(g)
    found = FoundSymmetries(kept)
    found.explanation = _explain(search, kept, why)
    if explain:
        print(found.explanation.to_string(index=False))
    return found


def weight_coverage(model: torch.nn.Module, groups: Sequence[SymmetryGroup]) -> tuple[int, int]:
    """How many Linear/Conv weight tensors of ``model`` some group acts on, and how many there are."""
    model = G.unwrap(model)
    acted = {m.parameter for g in groups for m in g.members}
    names = []
    for name, module in model.named_modules():
        if isinstance(module, G.WEIGHT_LAYERS):
            if parametrize.is_parametrized(module, "weight"):
                names.append([f"{name}.parametrizations.weight.original0", f"{name}.parametrizations.weight.original1"])
            else:
                names.append([f"{name}.weight"])
    return sum(any(n in acted for n in ns) for ns in names), len(names)
