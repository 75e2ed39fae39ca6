"""False-positive probes for the symmetry search: models where a naive search would report a group that does not exist,
parameters that named_parameters() does not list, compiled models, extra forward arguments, untraceable layers."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from noether_lib.symmetry import (
    Member,
    SymmetryError,
    SymmetryGroup,
    check_symmetry,
    find_symmetries,
    loss_kind,
    verify_symmetries,
)
from noether_lib.tolerances import SYMMETRY_LOSS_RTOLS


def data(shape=(8, 6), classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randint(0, classes, (shape[0],), generator=g)


def kinds(groups):
    return sorted((g.kind, g.num_units) for g in groups)


def mlp(outputs):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, outputs))


def test_translation_only_for_a_softmax_over_several_logits():
    x, _ = data()
    assert kinds(find_symmetries(mlp(3), x)) == [("rescale", 5), ("translation", 1), ("translation", 5)]
    for model, loss in (
        (mlp(1), "cross_entropy"),
        (mlp(1), F.binary_cross_entropy_with_logits),
        (mlp(3), nn.MSELoss()),
        (mlp(3), "nll"),
        (mlp(3), lambda out, y: out.pow(2).mean()),
    ):
        groups = find_symmetries(model, x, loss=loss)
        assert kinds(groups) == [("rescale", 5)], loss
    assert loss_kind(nn.CrossEntropyLoss()) == "cross_entropy" and loss_kind(F.mse_loss) == "mse"
    with pytest.raises(ValueError, match="loss must be one of"):
        find_symmetries(mlp(3), x, loss="hinge")


def test_a_logit_translation_is_false_under_mse_and_true_under_cross_entropy():
    x, y = data()
    model = mlp(3)
    bias = SymmetryGroup("translation", "bias", (Member("2.bias", 0),), 1)
    true = check_symmetry(model, bias, x, y)
    false = check_symmetry(model, bias, x, F.one_hot(y, 3).double(), loss_fn=F.mse_loss, raise_on_failure=False)
    print(f"logit shift: cross-entropy {true.loss_change:.1e}, MSE {false.loss_change:.1e}")
    assert true.loss_change <= SYMMETRY_LOSS_RTOLS["translation"] < false.loss_change


class LogSoftmaxNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(6, 5), nn.Linear(5, 3)

    def forward(self, x):
        return F.log_softmax(self.out(F.relu(self.fc(x))), dim=-1)


def test_log_probabilities_keep_their_translation_with_nll():
    x, y = data()
    model = LogSoftmaxNet()
    groups = find_symmetries(model, x, loss="nll")
    assert kinds(groups) == [("rescale", 5), ("translation", 1), ("translation", 5)]
    assert verify_symmetries(model, groups, x, y, loss_fn=F.nll_loss)["holds"].all()
    module = nn.Sequential(nn.Linear(6, 3), nn.LogSoftmax(dim=1))
    assert kinds(find_symmetries(module, x, loss=nn.NLLLoss())) == [("translation", 1), ("translation", 6)]


class UnbatchedInstanceNorm(nn.Module):
    """InstanceNorm1d on a 2-d input reads it as (channels, length): it normalizes each sample over its features."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.norm, self.out = nn.Linear(6, 5), nn.InstanceNorm1d(8), nn.Linear(5, 3)

    def forward(self, x):
        return self.out(F.relu(self.norm(self.fc(x))))


class PoolOverChannels(nn.Module):
    """A 2-d max-pool on a Conv1d's (N, C, L) output pools over channels and length together."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.out = nn.Conv1d(2, 3, 3), nn.Linear(3, 3)

    def forward(self, x):
        return self.out(F.max_pool2d(F.relu(self.conv(x)), 2).flatten(1))


@pytest.mark.parametrize(
    "model, shape, layer",
    [(UnbatchedInstanceNorm(), (8, 6), "fc"), (PoolOverChannels(), (8, 2, 8), "conv")],
    ids=["instance-norm-unbatched", "pool-over-channels"],
)
def test_no_per_channel_group_where_channels_are_mixed(model, shape, layer):
    x, y = data(shape)
    groups = find_symmetries(model, x)
    mine = [g for g in groups if g.members[0].parameter == f"{layer}.weight" and g.kind != "translation"]
    assert len(mine) == 1 and mine[0].num_units == 1  # the whole layer, one factor: true
    assert verify_symmetries(model, groups, x, y)["holds"].all()
    channels = getattr(model, layer).weight.shape[0]
    per_channel = SymmetryGroup(mine[0].kind, "per channel", mine[0].members, channels)
    result = check_symmetry(model, per_channel, x, y, raise_on_failure=False)
    print(f"{layer}: one unit holds; per channel changes the loss by {result.loss_change:.1e}")
    assert result.loss_change > SYMMETRY_LOSS_RTOLS[mine[0].kind]


class PackedAttention(nn.Module):
    """nn.MultiheadAttention packs W_Q, W_K, W_V into one in_proj_weight: groups on its slices are not built."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.attn, self.out = (
            nn.Linear(6, 8),
            nn.MultiheadAttention(8, 2, batch_first=True),
            nn.Linear(8, 3),
        )

    def forward(self, x):
        h = self.embed(x)
        return self.out(self.attn(h, h, h, need_weights=False)[0].mean(1))


def test_packed_attention_gets_no_group_on_its_slices():
    x, y = data((4, 5, 6))
    model = PackedAttention()
    groups = find_symmetries(model, x)
    assert not [m for g in groups for m in g.members if m.parameter.startswith("attn.")]
    assert kinds(groups) == [("translation", 1), ("translation", 8)]
    assert verify_symmetries(model, groups, x, y)["holds"].all()


class ShiftedResidual(nn.Module):
    """relu(fc(x)) + 1: a constant added to the channels does not scale with them."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(6, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.out(F.relu(self.fc(x)) + 1.0)


def test_a_constant_added_to_the_channels_breaks_their_rescale():
    x, y = data()
    model = ShiftedResidual()
    groups = find_symmetries(model, x)
    assert not [g for g in groups if g.kind == "rescale"]
    wrong = SymmetryGroup(
        "rescale", "fc", (Member("fc.weight", 0), Member("fc.bias", 0), Member("out.weight", 1, -1)), 5
    )
    assert check_symmetry(model, wrong, x, y, raise_on_failure=False).loss_change > SYMMETRY_LOSS_RTOLS["rescale"]


class TokenModel(nn.Module):
    """Token and position embeddings summed into a stream that only layer norms read (a text transformer's start)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(11, 8), nn.Embedding(5, 8)
        self.norm, self.fc, self.head = nn.LayerNorm(8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, ids):
        h = self.tokens(ids) + self.positions(torch.arange(ids.shape[1]))
        return self.head(F.relu(self.fc(self.norm(h))).mean(1))


def test_embeddings_written_into_a_normalized_stream_scale_together():
    ids, y = torch.randint(0, 11, (4, 5), generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0])
    model = TokenModel()
    groups = find_symmetries(model, ids)
    stream = next(g for g in groups if g.kind == "scale")
    assert stream.parameters == ("tokens.weight", "positions.weight") and stream.num_units == 1
    assert verify_symmetries(model, groups, ids, y, control=True)["holds"].all()
    alone = SymmetryGroup("scale", "tokens alone", (Member("tokens.weight", 1),), 1)
    assert check_symmetry(model, alone, ids, y, raise_on_failure=False).loss_change > SYMMETRY_LOSS_RTOLS["scale"]


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(5, 5), nn.Linear(5, 5), nn.Linear(5, 3)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.out(F.relu(self.b(F.relu(self.a(x)))))


def test_tied_weights_get_no_group_and_say_why():
    x, _ = data((8, 5))
    model = Tied()
    found = find_symmetries(model, x)
    assert not {"a.weight", "b.weight"} & {m.parameter for g in found for m in g.members}
    assert found.explanation.set_index("layer").loc["a", "stopped"].endswith("(shared parameter)")


class WeightNormed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        wn = torch.nn.utils.parametrizations.weight_norm
        self.a, self.b, self.out = wn(nn.Linear(6, 5)), nn.Linear(5, 4), wn(nn.Linear(4, 3))

    def forward(self, x):
        return self.out(F.relu(self.b(F.relu(self.a(x)))))


def test_weight_norm_groups_act_on_the_real_parameters():
    x, y = data()
    model = WeightNormed()
    groups = find_symmetries(model, x)
    listed = set(dict(model.named_parameters()))
    assert all(m.parameter in listed for g in groups for m in g.members)
    names = {g.name for g in groups}
    assert {"a weight-norm direction", "out weight-norm direction"} <= names
    magnitude = next(g for g in groups if g.members[0].parameter == "a.parametrizations.weight.original0")
    assert magnitude.kind == "rescale" and magnitude.members[-1] == Member("b.weight", 1, -1)
    assert not any("out.parametrizations" in m.parameter and m.dim == 1 for g in groups for m in g.members)
    assert verify_symmetries(model, groups, x, y)["holds"].all()


def test_old_weight_norm_hooks_are_refused_with_the_way_out():
    x, _ = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = nn.Sequential(torch.nn.utils.weight_norm(nn.Linear(6, 5)), nn.ReLU(), nn.Linear(5, 3))
        model(x)  # the hook has computed .weight, a non-leaf tensor
    with pytest.raises(SymmetryError, match="parametrizations.weight_norm"):
        find_symmetries(model, x)


@pytest.mark.slow  # importing torch's compiler takes seconds
def test_compiled_models_keep_their_parameter_names():
    x, y = data()
    model = mlp(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = torch.compile(model)  # lazy: nothing is compiled until it is called
    groups = find_symmetries(compiled, x)
    assert groups == find_symmetries(model, x)
    assert verify_symmetries(compiled, groups, x, y)["holds"].all()


class ExtraArgument(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(6, 5), nn.Linear(5, 3)

    def forward(self, x, hidden=True):
        return self.out(F.relu(self.fc(x))) if hidden else self.out(x[:, :5])


class ShapeArithmetic(nn.Module):
    """What an einops-style layer does: Python computes with the tensor's concrete size."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(x.reshape(len(x), -1))


def test_tracing_errors_say_what_failed():
    x, _ = data()
    with pytest.raises(SymmetryError, match=r"forward also takes hidden: fix them with concrete_args"):
        find_symmetries(ExtraArgument(), x)
    assert kinds(find_symmetries(ExtraArgument(), x, concrete_args={"hidden": True}))[0] == ("rescale", 5)
    with pytest.raises(SymmetryError, match=r"cannot be traced symbolically .*einops") as error:
        find_symmetries(ShapeArithmetic(), x)
    assert "control flow" not in str(error.value)
    with pytest.raises(SymmetryError, match="running example_input"):
        find_symmetries(mlp(3), torch.randn(4, 7))
