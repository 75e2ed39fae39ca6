"""CIFAR-10 and Tiny ImageNet read from fake folders in their published layouts; augmentation; synthetic data."""

import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from noether_lib import datasets


def make_cifar(root, per_batch=6, seed=0):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    expected = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, handle)
        expected[name] = (data, labels)
    return expected


def make_tiny_imagenet(root, wnids=("n01", "n02", "n03"), per_class=2):
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    rng = np.random.default_rng(1)
    for wnid in wnids:
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(images / f"{wnid}_{i}.JPEG")
    lines = []
    for i, wnid in enumerate(list(wnids) * 2):
        name = f"val_{i}.JPEG"
        pixels = rng.integers(0, 256, (64, 64), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "val" / "images" / name)  # a grayscale file, as in the real set
        lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_cifar10_reads_the_python_batches(tmp_path):
    expected = make_cifar(tmp_path)
    split = datasets.load_cifar10(tmp_path)
    assert split.x_train.shape == (30, 3, 32, 32) and split.x_train.dtype == torch.uint8
    assert split.x_test.shape == (6, 3, 32, 32) and split.num_classes == 10
    data, labels = expected["data_batch_2"]
    assert np.array_equal(split.x_train[6:12].numpy().reshape(6, -1), data)
    assert split.y_train[6:12].tolist() == labels
    # the red plane comes first in CIFAR's rows
    assert np.array_equal(split.x_test[0, 0].numpy().ravel(), expected["test_batch"][0][0, :1024])
    assert torch.equal(datasets.load_cifar10(tmp_path / "cifar-10-batches-py").y_test, split.y_test)


def test_cifar10_missing_names_the_layout(tmp_path):
    with pytest.raises(datasets.DatasetNotFoundError, match="data_batch_1 ... data_batch_5"):
        datasets.load_cifar10(tmp_path)
    make_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match="data_batch_3"):
        datasets.load_cifar10(tmp_path)


def test_tiny_imagenet_reads_the_standard_layout(tmp_path):
    folder = make_tiny_imagenet(tmp_path)
    split = datasets.load_tiny_imagenet(tmp_path, workers=2)
    assert split.x_train.shape == (6, 3, 64, 64) and split.x_train.dtype == torch.uint8
    assert split.y_train.tolist() == [0, 0, 1, 1, 2, 2] and split.num_classes == 3
    assert split.y_test.tolist() == [0, 1, 2, 0, 1, 2]
    # grayscale files become three equal channels; JPEG decoding matches Pillow's
    assert torch.equal(split.x_test[0, 0], split.x_test[0, 2])
    with Image.open(folder / "train" / "n02" / "images" / "n02_1.JPEG") as image:
        assert np.array_equal(split.x_train[3].numpy().transpose(1, 2, 0), np.asarray(image.convert("RGB")))


def test_tiny_imagenet_cache_round_trip(tmp_path):
    make_tiny_imagenet(tmp_path / "data")
    first = datasets.load_tiny_imagenet(tmp_path / "data", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    second = datasets.load_tiny_imagenet(tmp_path / "data", cache_dir=tmp_path / "cache")
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    assert second.num_classes == 3


def test_tiny_imagenet_errors_name_the_layout(tmp_path):
    with pytest.raises(datasets.DatasetNotFoundError, match=r"train/<wnid>/images/\*\.JPEG"):
        datasets.load_tiny_imagenet(tmp_path)
    folder = make_tiny_imagenet(tmp_path)
    (folder / "val" / "val_annotations.txt").unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match="val_annotations.txt"):
        datasets.load_tiny_imagenet(tmp_path)


def test_tiny_imagenet_rejects_unknown_validation_class(tmp_path):
    folder = make_tiny_imagenet(tmp_path)
    with open(folder / "val" / "val_annotations.txt", "a") as handle:
        handle.write("val_0.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match="n99"):
        datasets.load_tiny_imagenet(tmp_path)


def test_channel_statistics_against_numpy():
    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    mean, std = datasets.channel_statistics(images)
    x = images.numpy().astype(np.float64) / 255
    assert np.allclose(mean.numpy(), x.mean(axis=(0, 2, 3)), atol=1e-6)
    assert np.allclose(std.numpy(), x.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1, ddof=1), atol=1e-6)
    with pytest.raises(ValueError, match="N x C x H x W"):
        datasets.channel_statistics(images[0])


def test_random_crop_flip_against_a_loop():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=generator)
    shifts = torch.randint(0, 5, (6, 2), generator=generator)
    flips = torch.tensor([True, False, True, False, False, True])
    out = datasets.random_crop_flip(images, shifts, flips, padding=2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for n in range(6):
        r, c = shifts[n].tolist()
        crop = padded[n, :, r : r + 8, c : c + 8]
        assert torch.equal(out[n], crop.flip(-1) if flips[n] else crop)
    with pytest.raises(ValueError, match="shifts"):
        datasets.random_crop_flip(images, shifts[:3], flips)


def test_synthetic_images_are_seeded():
    a = datasets.synthetic_images(8, 4, size=16, num_classes=5, seed=3)
    b = datasets.synthetic_images(8, 4, size=16, num_classes=5, seed=3)
    assert a.x_train.shape == (8, 3, 16, 16) and torch.equal(a.x_test, b.x_test) and int(a.y_train.max()) < 5
    with pytest.raises(ValueError, match="positive"):
        datasets.synthetic_images(0, 4)


def test_noether_lib_data_and_datasets_are_one_module():
    from noether_lib import data

    assert datasets.load_tiny_imagenet is data.load_tiny_imagenet and datasets.Split is data.Split
    assert set(datasets.__all__) == set(data.__all__)


def test_tiny_imagenet_arrays_are_contiguous_also_from_the_cache(tmp_path):
    make_tiny_imagenet(tmp_path / "data")
    for _ in range(2):  # decoded, then read from the cache
        split = datasets.load_tiny_imagenet(tmp_path / "data", cache_dir=tmp_path / "cache", workers=1)
        assert split.x_train.is_contiguous() and split.x_test.is_contiguous()


def test_the_decode_cache_is_keyed_by_content(tmp_path):
    folder = make_tiny_imagenet(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first = datasets.load_tiny_imagenet(tmp_path / "a", cache_dir=tmp_path / "cache", workers=1)
    datasets.load_tiny_imagenet(tmp_path / "b", cache_dir=tmp_path / "cache", workers=1)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1, "a copy of the same files shares the cache"
    image = folder / "train" / "n01" / "images" / "n01_0.JPEG"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(image)
    changed = datasets.load_tiny_imagenet(tmp_path / "a", cache_dir=tmp_path / "cache", workers=1)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2 and not torch.equal(changed.x_train, first.x_train)
    assert int(changed.x_train[0].max()) == 0


def test_data_fingerprints_follow_the_content(tmp_path):
    make_cifar(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "same")
    make_cifar(tmp_path / "b", seed=1)
    fingerprint = datasets.data_fingerprint
    assert fingerprint("cifar10", tmp_path / "a") == fingerprint("cifar10", tmp_path / "same")
    assert fingerprint("cifar10", tmp_path / "a") != fingerprint("cifar10", tmp_path / "b")
    assert fingerprint("digits") == fingerprint("digits") and fingerprint("synthetic") == "synthetic"


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncated", "n02_1.JPEG: cannot be decoded"),
        ("small", "n02_1.JPEG: is 32 x 32 pixels"),
        ("spaces", r"val_annotations.txt, line 1: expected tab-separated"),
        ("missing", r"val_3.JPEG: listed in .*val_annotations.txt \(line 4\) but missing"),
    ],
)
def test_data_errors_name_the_bad_file(tmp_path, damage, message, monkeypatch):
    folder = make_tiny_imagenet(tmp_path)
    image = folder / "train" / "n02" / "images" / "n02_1.JPEG"
    annotations = folder / "val" / "val_annotations.txt"
    if damage == "truncated":
        image.write_bytes(image.read_bytes()[:200])
    elif damage == "small":
        Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    elif damage == "spaces":
        annotations.write_text(annotations.read_text().replace("\t", " "))
    else:
        (folder / "val" / "images" / "val_3.JPEG").unlink()
        from noether_lib import data

        monkeypatch.setattr(data, "_read_all", lambda paths, workers: pytest.fail("decoded before the check"))
    with pytest.raises((datasets.DatasetError, datasets.DatasetNotFoundError), match=message):
        datasets.load_tiny_imagenet(tmp_path, workers=1)
