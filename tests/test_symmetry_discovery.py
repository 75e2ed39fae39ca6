"""Discovery of symmetric parameter groups from a model's graph, and their numerical verification."""

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from noether_lib import models
from noether_lib.symmetry import (
    Member,
    SymmetryError,
    SymmetryGroup,
    check_symmetry,
    find_symmetries,
    verify_symmetries,
)
from noether_lib.tolerances import (
    SYMMETRY_GRADIENT_COSINE,
    SYMMETRY_GRADIENT_COSINES,
    SYMMETRY_LOSS_RTOL,
    SYMMETRY_LOSS_RTOLS,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def batch(shape, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randint(0, classes, (shape[0],), generator=g)


def kinds(groups):
    return dict(Counter(g.kind for g in groups))


IMAGES = (4, 3, 32, 32)

# (model factory, input shape, expected counts of each kind)
ARCHITECTURES = {
    "mlp": (lambda: models.MLP(64, [32, 16], 10), (8, 64), {"rescale": 2, "translation": 2}),
    "mlp-bn": (
        lambda: models.MLP(64, [32, 16], 10, batch_norm=True),
        (8, 64),
        {"scale": 2, "rescale": 2, "translation": 4},
    ),
    "mlp-bn-no-bias": (
        lambda: models.MLP(64, [32], 10, batch_norm=True, bias=False),
        (8, 64),
        {"scale": 1, "rescale": 1, "translation": 2},
    ),
    "mlp-leaky": (lambda: models.MLP(64, [32], 10, activation="leaky_relu"), (8, 64), {"rescale": 1, "translation": 2}),
    "mlp-tanh": (lambda: models.MLP(64, [32], 10, activation="tanh"), (8, 64), {"translation": 2}),
    "vgg-tiny-bn": (
        lambda: models.VGG("tiny", in_channels=1, num_classes=10),
        (8, 1, 8, 8),
        {"scale": 3, "rescale": 3, "translation": 5},
    ),
    "vgg-tiny": (
        lambda: models.VGG("tiny", in_channels=1, num_classes=10, batch_norm=False),
        (8, 1, 8, 8),
        {"rescale": 3, "translation": 2},
    ),
    "vgg11-bn": (lambda: models.VGG("vgg11", num_classes=10), IMAGES, {"scale": 8, "rescale": 8, "translation": 10}),
    "vgg11-bn-no-bias": (
        lambda: models.VGG("vgg11", num_classes=10, conv_bias=False),
        IMAGES,
        {"scale": 8, "rescale": 8, "translation": 2},
    ),
    "vgg11": (lambda: models.VGG("vgg11", num_classes=10, batch_norm=False), IMAGES, {"rescale": 8, "translation": 2}),
    "vgg16-bn": (lambda: models.VGG("vgg16", num_classes=10), IMAGES, {"scale": 13, "rescale": 13, "translation": 15}),
    "vgg16-bn-no-bias": (
        lambda: models.VGG("vgg16", num_classes=10, conv_bias=False),
        IMAGES,
        {"scale": 13, "rescale": 13, "translation": 2},
    ),
    "vgg16": (lambda: models.VGG("vgg16", num_classes=10, batch_norm=False), IMAGES, {"rescale": 13, "translation": 2}),
    "vgg16-no-bias": (
        lambda: models.VGG("vgg16", num_classes=10, batch_norm=False, conv_bias=False),
        IMAGES,
        {"rescale": 13, "translation": 2},
    ),
    "resnet18": (lambda: models.resnet18(num_classes=10), IMAGES, {"scale": 20, "rescale": 12, "translation": 2}),
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_discovery_counts_on_full_size_models(name):
    factory, shape, expected = ARCHITECTURES[name]
    model = factory()
    groups = find_symmetries(model, batch(shape)[0])
    assert kinds(groups) == expected
    params = dict(model.named_parameters())
    for g in groups:
        for m in g.members:
            assert params[m.parameter].shape[m.dim] % g.num_units == 0 or g.num_units == 1
        assert all(s.shape[0] == g.num_units for s in g.slices(params))


def test_vgg16_groups_follow_the_channel_plan():
    model = models.VGG("vgg16", num_classes=10, conv_bias=False)
    groups = find_symmetries(model, batch(IMAGES)[0])
    channels = [c for c in models.VGG_CONFIGS["vgg16"] if c != "M"]
    assert [g.num_units for g in groups if g.kind == "scale"] == channels
    assert all(len(g.members) == 1 and g.members[0].parameter.endswith(".weight") for g in groups if g.kind == "scale")
    translations = [g for g in groups if g.kind == "translation"]
    assert [(g.num_units, g.members) for g in translations] == [
        (512, (Member("classifier.weight", 1, 1),)),
        (1, (Member("classifier.bias", 0, 1),)),
    ]


def test_rescale_members_and_names():
    model = models.VGG("tiny", in_channels=1, num_classes=10, batch_norm=False)
    rescale = [g for g in find_symmetries(model, batch((2, 1, 8, 8))[0]) if g.kind == "rescale"]
    assert rescale[0].members == (
        Member("features.0.weight", 0, 1),
        Member("features.0.bias", 0, 1),
        Member("features.3.weight", 1, -1),
    )
    assert rescale[0].name == "features.0 → features.3 (ReLU, MaxPool2d)"
    assert rescale[-1].members[-1] == Member("classifier.weight", 1, -1)


def test_resnet_joins_the_batch_norms_of_a_residual_stream_and_names_shortcuts():
    groups = find_symmetries(models.resnet18(num_classes=10, width=0.125), batch(IMAGES)[0])
    names = [g.name for g in groups if g.kind == "scale"]
    assert "stages.2.shortcut.0 → stages.2.shortcut.1 (BatchNorm2d)" in names
    stream = next(g for g in groups if g.kind == "rescale" and g.name.startswith("stem.1,"))
    assert stream.name.startswith("stem.1, stages.0.bn2, stages.1.bn2 → stages.0.conv1, stages.1.conv1, stages.2.conv1")
    assert (
        Member("stem.1.weight", 0, 1) in stream.members
        and Member("stages.2.shortcut.0.weight", 1, -1) in stream.members
    )
    assert sum(g.kind == "rescale" and g.name.endswith("(ReLU)") for g in groups) == 8  # bn1 -> ReLU -> conv2


@pytest.mark.parametrize(
    "name", ["mlp", "mlp-bn", "mlp-leaky", "vgg-tiny-bn", "vgg-tiny", "vgg11-bn-no-bias", "vgg16", "resnet18"]
)
def test_discovered_groups_verify(name):
    factory, shape, expected = ARCHITECTURES[name]
    torch.manual_seed(0)
    model = factory()
    if shape == IMAGES:  # verification runs in float64: a narrow copy of the same architecture
        model = {
            "vgg11-bn-no-bias": lambda: models.VGG("vgg11", num_classes=10, conv_bias=False, width=0.125),
            "vgg16": lambda: models.VGG("vgg16", num_classes=10, batch_norm=False, width=0.125),
            "resnet18": lambda: models.resnet18(num_classes=10, width=0.125),
        }[name]()
    x, y = batch(shape)
    groups = find_symmetries(model, x)
    table = verify_symmetries(model, groups, x, y)
    assert table["holds"].all() and len(table) == sum(expected.values())
    assert (table["loss_change"] <= table["kind"].map(SYMMETRY_LOSS_RTOLS)).all()
    assert (table["gradient_cosine"] <= table["kind"].map(SYMMETRY_GRADIENT_COSINES)).all()


def test_discovery_and_verification_leave_the_model_unchanged():
    model = models.VGG("tiny", in_channels=1, num_classes=10)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = batch((8, 1, 8, 8))
    verify_symmetries(model, find_symmetries(model, x), x, y)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---- custom architectures: normalization variants, reshapes, residuals -------------------------------------------


class LayerNormMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.norm, self.fc2 = nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.norm(self.fc1(x))))


class GroupNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm, self.fc = nn.Conv2d(2, 6, 3, bias=False), nn.GroupNorm(3, 6), nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(torch.relu(self.norm(self.conv(x))), 1).flatten(1))


class PreActivation(nn.Module):
    """conv -> ReLU -> max-pool -> BatchNorm: the scale passes through the homogeneous maps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.bn(F.max_pool2d(F.relu(self.conv(x)), 2)), 1), 1))


class FlattenNet(nn.Module):
    """conv -> ReLU -> flatten (x.view(x.size(0), -1)) -> linear: a channel owns a block of linear inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 3, 3), nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        h = F.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


class Residual(nn.Module):
    """fc0 -> ReLU -> fc1 keeps its rescale; fc1 -> ReLU -> (+ skip) -> fc2: the sum breaks fc1's."""

    def __init__(self) -> None:
        super().__init__()
        self.fc0, self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(F.relu(self.fc0(x)))) + x)


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.out(F.relu(self.fc(F.relu(self.fc(x)))))


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


class BoundedOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.tanh(self.fc(x))


def test_layer_norm_makes_the_whole_layer_one_unit():
    model = LayerNormMLP()
    x, y = batch((8, 6), 3)
    groups = find_symmetries(model, x)
    scale = [g for g in groups if g.kind == "scale"]
    assert [(g.num_units, g.parameters) for g in scale] == [(1, ("fc1.weight", "fc1.bias"))]
    assert verify_symmetries(model, groups, x, y)["holds"].all()
    per_channel = SymmetryGroup("scale", "per channel", scale[0].members, 5)
    with pytest.raises(SymmetryError, match=r"fc1\.weight.*fc1\.bias"):
        check_symmetry(model, per_channel, x, y)


def test_group_norm_units_are_groups_and_bias_free_convs_work():
    model = GroupNormNet()
    x, y = batch((4, 2, 6, 6), 4)
    groups = find_symmetries(model, x)
    scale = [g for g in groups if g.kind == "scale"]
    assert [(g.num_units, g.parameters) for g in scale] == [(3, ("conv.weight",))]
    assert verify_symmetries(model, groups, x, y)["holds"].all()
    with pytest.raises(SymmetryError, match="conv.weight"):
        check_symmetry(model, SymmetryGroup("scale", "per channel", scale[0].members, 6), x, y)


def test_scale_passes_through_homogeneous_maps_before_batch_norm():
    model = PreActivation()
    x, y = batch((4, 2, 8, 8), 3)
    groups = find_symmetries(model, x)
    assert kinds(groups) == {"scale": 1, "rescale": 1, "translation": 2}  # the batch norm's affine -> fc
    assert verify_symmetries(model, groups, x, y)["holds"].all()


def test_flatten_maps_a_channel_to_a_block_of_linear_inputs():
    model = FlattenNet()
    x, y = batch((4, 1, 6, 6), 5)
    groups = find_symmetries(model, x)
    rescale = [g for g in groups if g.kind == "rescale"]
    assert len(rescale) == 1 and rescale[0].num_units == 3 and rescale[0].members[-1] == Member("fc.weight", 1, -1)
    assert verify_symmetries(model, groups, x, y)["holds"].all()


def test_residual_sum_is_excluded_and_really_breaks_rescale():
    model = Residual()
    x, y = batch((8, 4), 3)
    groups = find_symmetries(model, x)
    rescale = {g.members[0].parameter for g in groups if g.kind == "rescale"}
    assert rescale == {"fc0.weight"}
    wrong = SymmetryGroup(
        "rescale",
        "fc1 across the sum",
        (Member("fc1.weight", 0), Member("fc1.bias", 0), Member("fc2.weight", 1, -1)),
        4,
    )
    with pytest.raises(SymmetryError, match="does not hold"):
        check_symmetry(model, wrong, x, y)


def test_shared_weights_and_bounded_outputs_give_no_groups():
    assert kinds(find_symmetries(Shared(), batch((4, 4))[0])) == {"translation": 2}
    assert find_symmetries(BoundedOutput(), batch((4, 4))[0]) == []


def test_untraceable_model_gives_a_clear_error():
    with pytest.raises(SymmetryError, match="cannot trace Untraceable"):
        find_symmetries(Untraceable(), batch((4, 4))[0])


# ---- asking for a symmetry that does not hold ---------------------------------------------------------------------


def test_absent_rescale_on_tanh_is_rejected_with_names():
    model = models.MLP(8, [6], 3, activation="tanh")
    x, y = batch((8, 8), 3)
    wrong = SymmetryGroup(
        "rescale", "tanh unit", (Member("net.1.weight", 0), Member("net.1.bias", 0), Member("net.3.weight", 1, -1)), 6
    )
    with pytest.raises(SymmetryError, match=r"rescale symmetry 'tanh unit'.*net\.1\.weight.*net\.3\.weight"):
        check_symmetry(model, wrong, x, y)
    result = check_symmetry(model, wrong, x, y, raise_on_failure=False)
    assert not result.holds and result.loss_change > 10 * SYMMETRY_LOSS_RTOL


def test_absent_scale_without_batch_norm_is_rejected():
    model = models.VGG("tiny", in_channels=1, num_classes=10, batch_norm=False)
    x, y = batch((8, 1, 8, 8))
    wrong = SymmetryGroup("scale", "no norm", (Member("features.0.weight", 0), Member("features.0.bias", 0)), 16)
    with pytest.raises(SymmetryError, match="features.0.weight"):
        verify_symmetries(model, [wrong], x, y)


def test_batch_norm_scale_symmetry_needs_batch_statistics():
    model = models.VGG("tiny", in_channels=1, num_classes=10)
    x, y = batch((8, 1, 8, 8))
    model.train()
    for _ in range(3):  # running statistics that differ from the batch's
        model(2 * x + 1)
    groups = [g for g in find_symmetries(model, x) if g.kind == "scale"]
    assert verify_symmetries(model, groups, x, y, mode="train")["holds"].all()
    with pytest.raises(SymmetryError, match="eval mode"):
        verify_symmetries(model, groups, x, y, mode="eval")
    table = verify_symmetries(model, groups, x, y, mode="eval", raise_on_failure=False)
    assert not table["holds"].any()


def test_bad_arguments():
    model = models.MLP(4, [3], 2)
    x, y = batch((4, 4), 2)
    group = find_symmetries(model, x)[0]
    with pytest.raises(ValueError, match="mode"):
        check_symmetry(model, group, x, y, mode="test")
    with pytest.raises(SymmetryError, match="lacks"):
        check_symmetry(model, SymmetryGroup("scale", "ghost", (Member("nope.weight", 0),), 3), x, y)


# ---- invariance and orthogonality against finite differences -----------------------------------------------------


def directional_derivative(model, params, direction, x, y, h=1e-5):
    def loss(sign):
        moved = {k: v + sign * h * direction.get(k, 0) for k, v in params.items()}
        return F.cross_entropy(torch.func.functional_call(model, moved, (x,)), y)

    return float((loss(1) - loss(-1)) / (2 * h))


@pytest.mark.parametrize("name", ["mlp", "mlp-bn", "vgg-tiny", "vgg-tiny-bn"])
def test_generators_are_flat_directions_by_finite_differences(name):
    factory, shape, _ = ARCHITECTURES[name]
    torch.manual_seed(1)
    model = factory().double().train()
    x, y = batch(shape)
    x = x.double()
    params = {k: v.detach() for k, v in model.named_parameters()}
    scale = max(abs(directional_derivative(model, params, {k: torch.randn_like(v)}, x, y)) for k, v in params.items())
    assert scale > 1e-3  # the loss does change along random directions
    for group in find_symmetries(model, x):
        for unit in (0, group.num_units - 1):  # one unit's generator at a time
            direction = {}
            for m, xi in zip(group.members, group.generator_slices(params)):
                mask = torch.zeros_like(xi)
                mask[unit] = 1
                full = (xi * mask).reshape(params[m.parameter].movedim(m.dim, 0).shape).movedim(0, m.dim)
                direction[m.parameter] = direction.get(m.parameter, 0) + full
            assert abs(directional_derivative(model, params, direction, x, y)) <= SYMMETRY_GRADIENT_COSINE * scale
