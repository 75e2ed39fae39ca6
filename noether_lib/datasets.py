"""Image data sets read from a local folder in their published layouts: CIFAR-10 and Tiny ImageNet.

Nothing is downloaded and torchvision is not needed: CIFAR-10's python batches are read with ``pickle`` and
Tiny ImageNet's JPEG files with Pillow. Images are returned as ``uint8`` tensors of shape ``N x 3 x H x W`` inside a
:class:`~noether_lib.data.Split`, so that a whole data set fits in (GPU) memory; :func:`channel_statistics` gives the
per-channel mean and standard deviation used to standardise them. :func:`synthetic_images` makes random labelled
images of any size for benchmarks and tests, and :func:`random_crop_flip` augments a batch.
"""
from __future__ import annotations

import hashlib
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from noether_lib.data import Split

__all__ = [
    "DatasetNotFoundError",
    "CIFAR10_LAYOUT",
    "TINY_IMAGENET_LAYOUT",
    "load_cifar10",
    "load_tiny_imagenet",
    "channel_statistics",
    "synthetic_images",
    "random_crop_flip",
]

CIFAR10_LAYOUT = """\
<data-dir>/cifar-10-batches-py/   (or <data-dir> itself)
    data_batch_1 ... data_batch_5   python pickles with b'data' (10000 x 3072 uint8) and b'labels'
    test_batch
  (the 'CIFAR-10 python version' archive from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)"""

TINY_IMAGENET_LAYOUT = """\
<data-dir>/tiny-imagenet-200/   (or <data-dir> itself)
    wnids.txt                          200 class ids (wnids), one per line
    train/<wnid>/images/*.JPEG         500 training images per class, 64 x 64
    val/images/*.JPEG                  10,000 validation images (used as the test set)
    val/val_annotations.txt            tab-separated: file name, wnid, bounding box
  (the archive tiny-imagenet-200.zip from http://cs231n.stanford.edu/, extracted)"""


class DatasetNotFoundError(FileNotFoundError):
    """A data set is missing from the folder it was looked for in; the message shows the expected layout."""


def _locate(root: str | Path, subdir: str, marker: str, name: str, layout: str) -> Path:
    root = Path(root).expanduser()
    for candidate in (root / subdir, root):
        if (candidate / marker).exists():
            return candidate
    raise DatasetNotFoundError(
        f"{name} was not found under {str(root)!r} (looked for {marker!r} in {str(root / subdir)!r} and in "
        f"{str(root)!r}). Nothing is downloaded; place the data set there in its standard layout:\n{layout}"
    )


def load_cifar10(root: str | Path) -> Split:
    """CIFAR-10 (50,000 training and 10,000 test images, 32 x 32, 10 classes) from its python batches.

    Args:
        root: a folder holding ``cifar-10-batches-py`` (or that folder itself). Only open files you trust:
            the batches are Python pickles.
    """
    folder = _locate(root, "cifar-10-batches-py", "test_batch", "CIFAR-10", CIFAR10_LAYOUT)

    def read(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for name in names:
            path = folder / name
            if not path.is_file():
                raise DatasetNotFoundError(
                    f"CIFAR-10 batch {str(path)!r} is missing. Expected layout:\n{CIFAR10_LAYOUT}"
                )
            with path.open("rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))

    x_train, y_train = read([f"data_batch_{i}" for i in range(1, 6)])
    x_test, y_test = read(["test_batch"])
    return Split(x_train, y_train, x_test, y_test, 10)


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)


def _read_all(paths: list[Path], workers: int) -> torch.Tensor:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # Pillow releases the GIL while decoding
        arrays = list(pool.map(_read_rgb, paths, chunksize=256))
    return torch.from_numpy(np.stack(arrays))


def load_tiny_imagenet(root: str | Path, *, cache_dir: str | Path | None = None, workers: int = 8) -> Split:
    """Tiny ImageNet (100,000 training images, 200 classes, 64 x 64); its labelled validation set is the test set.

    Decoding the 110,000 JPEG files takes a minute; with ``cache_dir`` the decoded arrays are stored there once
    (about 1.4 GB, named after the data folder) and read back on later calls. Delete the cache if the data change.

    Args:
        root: a folder holding ``tiny-imagenet-200`` (or that folder itself).
        cache_dir: where to keep the decoded arrays, or ``None`` for no cache.
        workers: decoding threads.
    """
    folder = _locate(root, "tiny-imagenet-200", "wnids.txt", "Tiny ImageNet", TINY_IMAGENET_LAYOUT)
    cache = None
    if cache_dir is not None:
        key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
        cache = Path(cache_dir) / f"tiny-imagenet-200-{key}.npz"
        if cache.is_file():
            with np.load(cache) as stored:
                tensors = [torch.from_numpy(stored[k]) for k in ("x_train", "y_train", "x_test", "y_test")]
            return Split(*tensors, num_classes=int(tensors[1].max()) + 1)

    wnids = [line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip()]
    index = {wnid: i for i, wnid in enumerate(wnids)}
    train_paths: list[Path] = []
    train_labels: list[int] = []
    for wnid in wnids:
        files = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not files:
            raise DatasetNotFoundError(
                f"Tiny ImageNet class {wnid} has no images in {str(folder / 'train' / wnid / 'images')!r}. "
                f"Expected layout:\n{TINY_IMAGENET_LAYOUT}"
            )
        train_paths += files
        train_labels += [index[wnid]] * len(files)
    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DatasetNotFoundError(f"{str(annotations)!r} is missing. Expected layout:\n{TINY_IMAGENET_LAYOUT}")
    test_paths: list[Path] = []
    test_labels: list[int] = []
    for line in annotations.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        if fields[1] not in index:
            raise ValueError(f"{annotations}: class {fields[1]!r} of {fields[0]!r} is not listed in wnids.txt")
        test_paths.append(folder / "val" / "images" / fields[0])
        test_labels.append(index[fields[1]])
    split = Split(
        _read_all(train_paths, workers),
        torch.tensor(train_labels, dtype=torch.int64),
        _read_all(test_paths, workers),
        torch.tensor(test_labels, dtype=torch.int64),
        len(wnids),
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".partial.npz")
        np.savez(partial, **{k: getattr(split, k).numpy() for k in ("x_train", "y_train", "x_test", "y_test")})
        partial.replace(cache)
    return split


def channel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of ``N x C x H x W`` images, on the scale of ``images / 255``
    for ``uint8`` input (computed in float64, one channel at a time to bound memory)."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape N x C x H x W, got {tuple(images.shape)}")
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    means, stds = [], []
    for c in range(images.shape[1]):
        channel = images[:, c].to(torch.float64) / scale
        means.append(channel.mean())
        stds.append(channel.std())
    return torch.stack(means).float(), torch.stack(stds).float()


def synthetic_images(
    num_train: int, num_test: int, *, channels: int = 3, size: int = 64, num_classes: int = 200, seed: int = 0
) -> Split:
    """Random ``uint8`` images with random labels: the shape of a real data set, for benchmarks and tests."""
    if min(num_train, num_test, channels, size, num_classes) < 1:
        raise ValueError("num_train, num_test, channels, size and num_classes must all be positive")
    generator = torch.Generator().manual_seed(seed)

    def images(n: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, channels, size, size), generator=generator, dtype=torch.uint8)

    def labels(n: int) -> torch.Tensor:
        return torch.randint(0, num_classes, (n,), generator=generator)

    return Split(images(num_train), labels(num_train), images(num_test), labels(num_test), num_classes)


def random_crop_flip(images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Random crops and horizontal flips of a batch, given its random numbers (so that they can be seeded).

    Each ``N x C x H x W`` image is zero-padded by ``padding`` pixels, cropped back to ``H x W`` at offset
    ``shifts[n] = (row, column)`` (each in ``[0, 2 * padding]``) and mirrored left-right where ``flips[n]``.
    """
    n, _, height, width = images.shape
    if shifts.shape != (n, 2) or flips.shape != (n,):
        raise ValueError(
            f"shifts must have shape ({n}, 2) and flips ({n},), got {tuple(shifts.shape)} and {tuple(flips.shape)}"
        )
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    rows = torch.arange(height, device=images.device)[None, :] + shifts[:, :1]
    cols = torch.arange(width, device=images.device)[None, :] + shifts[:, 1:]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
