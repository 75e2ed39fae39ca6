"""Data sets that need no network: scikit-learn's bundled digits, CIFAR-10 and Tiny ImageNet read from a local
folder in their published layouts, and random images for benchmarks.

Nothing is downloaded and torchvision is not needed: CIFAR-10's python batches are read with ``pickle`` and Tiny
ImageNet's JPEG files with Pillow. Image sets are returned as contiguous ``uint8`` tensors ``N x 3 x H x W`` inside a
:class:`Split`, so that a whole data set fits in (GPU) memory; :func:`channel_statistics` gives the per-channel mean
and standard deviation that standardise them. :func:`data_fingerprint` identifies a data set by its content (the
experiment runner keys its results by it), :func:`synthetic_images` makes random labelled images of any size and
:func:`random_crop_flip` augments a batch. (``noether_lib.datasets`` is another name for this module.)
"""

from __future__ import annotations

import hashlib
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "Split",
    "DatasetError",
    "DatasetNotFoundError",
    "CIFAR10_LAYOUT",
    "TINY_IMAGENET_LAYOUT",
    "load_digits",
    "load_cifar10",
    "load_tiny_imagenet",
    "data_fingerprint",
    "channel_statistics",
    "synthetic_images",
    "random_crop_flip",
]


@dataclass(frozen=True)
class Split:
    """Train and test tensors of one data set."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


# ----------------------------------------------------------------------------------------------- digits
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def load_digits(
    *, images: bool = True, test_fraction: float = 0.2, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Split:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), shipped with the package.

    Pixels are standardised with the training set's mean and standard deviation.

    Args:
        images: return ``N x 1 x 8 x 8`` images (for CNNs) instead of ``N x 64`` vectors.
        test_fraction: fraction held out as the test set, chosen by a seeded permutation.
        seed: the permutation's seed.
        dtype: floating dtype of the inputs.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    x, y = _digits_arrays()
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    if images:
        x = x.reshape(-1, 1, 8, 8)
    as_x = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    return Split(as_x(x[train]), torch.as_tensor(y[train]), as_x(x[test]), torch.as_tensor(y[test]), 10)


# ----------------------------------------------------------------------------------------------- image folders
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

_CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
_TINY_SIZE = 64


class DatasetError(ValueError):
    """A data file that cannot be used as it is; the message names the file."""


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
            try:
                with path.open("rb") as handle:
                    batch = pickle.load(handle, encoding="bytes")
                images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
            except Exception as error:  # a truncated or foreign file: name it
                raise DatasetError(f"{path}: not a CIFAR-10 python batch ({type(error).__name__}: {error})") from None
        return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))

    x_train, y_train = read(_CIFAR_BATCHES[:5])
    x_test, y_test = read(_CIFAR_BATCHES[5:])
    return Split(x_train, y_train, x_test, y_test, 10)


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError ... for broken files
        raise DatasetError(f"{path}: cannot be decoded as an image ({type(error).__name__}: {error})") from None
    if pixels.shape[:2] != (_TINY_SIZE, _TINY_SIZE):
        raise DatasetError(f"{path}: is {pixels.shape[1]} x {pixels.shape[0]} pixels, Tiny ImageNet's are 64 x 64")
    return pixels


def _read_all(paths: list[Path], workers: int) -> torch.Tensor:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # Pillow releases the GIL while decoding
        arrays = list(pool.map(_read_rgb, paths, chunksize=256))
    # channels first, as one contiguous block (a strided view would make evaluations differ in the last bits)
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2)))


def _tiny_imagenet_files(folder: Path) -> tuple[list[str], list[Path], list[int], list[Path], list[int]]:
    """The class ids, training files and labels, validation files and labels; every listed file checked to exist."""
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
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DatasetError(
                f"{annotations}, line {number}: expected tab-separated 'file<TAB>wnid<TAB>box', got {line!r}"
            )
        if fields[1] not in index:
            raise DatasetError(
                f"{annotations}, line {number}: class {fields[1]!r} of {fields[0]!r} is not listed in wnids.txt"
            )
        path = folder / "val" / "images" / fields[0]
        if not path.is_file():  # found before the training set is decoded
            raise DatasetNotFoundError(f"{path}: listed in {annotations} (line {number}) but missing")
        test_paths.append(path)
        test_labels.append(index[fields[1]])
    return wnids, train_paths, train_labels, test_paths, test_labels


def load_tiny_imagenet(root: str | Path, *, cache_dir: str | Path | None = None, workers: int = 8) -> Split:
    """Tiny ImageNet (100,000 training images, 200 classes, 64 x 64); its labelled validation set is the test set.

    Decoding the 110,000 JPEG files takes a minute; with ``cache_dir`` the decoded arrays are stored there once
    (about 1.4 GB), named after the content of the files (:func:`data_fingerprint`), so changed data are decoded
    again and another folder with the same files shares the cache.

    Args:
        root: a folder holding ``tiny-imagenet-200`` (or that folder itself).
        cache_dir: where to keep the decoded arrays, or ``None`` for no cache.
        workers: decoding threads.

    Raises:
        DatasetNotFoundError: the layout is incomplete (the message shows it), or a listed file is missing.
        DatasetError: a file that cannot be decoded, has the wrong size, or an annotation line that is not
            tab-separated; the message names the file.
    """
    folder = _locate(root, "tiny-imagenet-200", "wnids.txt", "Tiny ImageNet", TINY_IMAGENET_LAYOUT)
    wnids, train_paths, train_labels, test_paths, test_labels = _tiny_imagenet_files(folder)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"tiny-imagenet-200-{data_fingerprint('tiny-imagenet', folder)}.npz"
        if cache.is_file():
            with np.load(cache) as stored:
                tensors = [
                    torch.from_numpy(np.ascontiguousarray(stored[k]))
                    for k in ("x_train", "y_train", "x_test", "y_test")
                ]
            return Split(tensors[0], tensors[1], tensors[2], tensors[3], len(wnids))
    split = Split(
        _read_all(train_paths, workers),
        torch.tensor(train_labels, dtype=torch.int64),
        _read_all(test_paths, workers),
        torch.tensor(test_labels, dtype=torch.int64),
        len(wnids),
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.stem}.{os.getpid()}.partial.npz")
        np.savez(partial, **{k: getattr(split, k).numpy() for k in ("x_train", "y_train", "x_test", "y_test")})
        partial.replace(cache)
    return split


# ----------------------------------------------------------------------------------------------- fingerprints
_FINGERPRINTS: dict[tuple, str] = {}


def _content_hash(folder: Path, files: list[Path]) -> str:
    """Hash of the names (relative to ``folder``) and bytes of ``files``, remembered while their sizes and
    modification times stay the same."""
    stats = tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(folder.resolve()), stats)
    if key not in _FINGERPRINTS:
        digest = hashlib.blake2b(digest_size=8)
        for path, (name, size, _) in zip(files, stats):
            digest.update(f"{name}\0{size}\0".encode())
            digest.update(path.read_bytes())
        _FINGERPRINTS[key] = digest.hexdigest()
    return _FINGERPRINTS[key]


def data_fingerprint(dataset: str, data_dir: str | Path | None = None) -> str:
    """A short hash of a data set's content: its files' names and bytes for ``cifar10`` and ``tiny-imagenet``
    (read from ``data_dir``), scikit-learn's arrays for ``digits``; ``synthetic`` data are made by the code alone.

    Another folder with other files, or a changed file, gives another fingerprint; a copy of the same files the same.
    """
    if dataset == "synthetic":
        return "synthetic"
    if dataset == "digits":
        x, y = _digits_arrays()
        return hashlib.blake2b(x.tobytes() + y.tobytes(), digest_size=8).hexdigest()
    if data_dir is None:
        raise ValueError(f"dataset {dataset!r} is read from a local folder: give data_dir (--data-dir DIR)")
    if dataset == "cifar10":
        folder = _locate(data_dir, "cifar-10-batches-py", "test_batch", "CIFAR-10", CIFAR10_LAYOUT)
        files = [folder / name for name in _CIFAR_BATCHES if (folder / name).is_file()]
        return _content_hash(folder, files)
    if dataset == "tiny-imagenet":
        folder = _locate(data_dir, "tiny-imagenet-200", "wnids.txt", "Tiny ImageNet", TINY_IMAGENET_LAYOUT)
        _, train, _, test, _ = _tiny_imagenet_files(folder)
        return _content_hash(folder, [folder / "wnids.txt", folder / "val" / "val_annotations.txt", *train, *test])
    raise ValueError(f"unknown dataset {dataset!r}")


# ----------------------------------------------------------------------------------------------- tensors
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
