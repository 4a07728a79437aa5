"""Image datasets as plain NumPy arrays, read from keras-style ``.npz`` archives.

An archive holds ``x_train``, ``y_train``, ``x_test`` and ``y_test``: uint8 images shaped
(N, H, W) or (N, H, W, C) and integer labels shaped (N,). The built-in datasets live in a data
root as ``<root>/mnist.npz`` and ``<root>/cifar10.npz``; when one is missing it is downloaded
once through torchvision and stored there. Any other archive with the same keys can be loaded
by its path. Every load is validated, so bad data fails here with a ``DataError`` that says
what is wrong instead of somewhere deep inside training.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cl_binvae.suite.atomic import atomic_path

BUILTIN = ("mnist", "cifar10")
KEYS = ("x_train", "y_train", "x_test", "y_test")
_TORCHVISION_CLASSES = {"mnist": "MNIST", "cifar10": "CIFAR10"}


class DataError(ValueError):
    """Raised for missing, corrupt or malformed data; message says what is wrong and how to fix it."""


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """Return the data root: ``root`` if given, else env ``CL_BINVAE_DATA``, else a cache folder.

    The cache folder is ``$XDG_CACHE_HOME/cl_binvae``, or ``~/.cache/cl_binvae`` when
    ``XDG_CACHE_HOME`` is unset. Empty environment variables count as unset.
    """
    if root is not None:
        return Path(root).expanduser()
    if env := os.environ.get("CL_BINVAE_DATA"):
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "cl_binvae"


# eq=False: generated equality would compare arrays, which have no single truth value.
@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A train/test split of uint8 images, (N, H, W) or (N, H, W, C), with int64 labels (N,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_classes(self) -> int:
        """Largest label over train and test, plus one."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Channels-first (C, H, W) shape of one image; C = 1 for grayscale (N, H, W) data."""
        h, w, *c = self.x_train.shape[1:]
        return (c[0] if c else 1, h, w)


def load_dataset(name: str, root: str | os.PathLike | None = None) -> ArrayDataset:
    """Load and validate a dataset.

    ``name`` is a built-in dataset (``'mnist'`` or ``'cifar10'``), read from
    ``<root>/<name>.npz`` and downloaded there first if missing (``root`` as in
    ``resolve_data_root``), or a path to a ``.npz`` file with the same keys, named after the
    file's stem. Raises ``DataError`` when the data cannot be found, read or validated.
    """
    if name in BUILTIN:
        folder = resolve_data_root(root)
        path = folder / f"{name}.npz"
        if folder.exists() and not folder.is_dir():
            raise DataError(f"the data root {folder} is a file, not a folder; point "
                            "--data-root / CL_BINVAE_DATA at the folder that holds "
                            f"{path.name}")
        if not path.exists():
            _check_can_download(folder, path.name)
            _download(name, path)
        return _validate(name, _read_npz(path), path)
    if name.endswith(".npz"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise DataError(f"dataset file {path} does not exist; check the path")
        return _validate(path.stem, _read_npz(path), path)
    raise DataError(
        f"unknown dataset {name!r}; choose one of {', '.join(BUILTIN)} "
        f"or give the path of a .npz file with the keys {', '.join(KEYS)}"
    )


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf on this platform
        return None


def export_torchvision_mnist(data: ArrayDataset, root: str | os.PathLike) -> Path:
    """Write MNIST arrays as torchvision's raw IDX files under ``<root>/MNIST/raw``.

    torchvision (and so Avalanche's classic ``SplitMNIST``) then reads ``root`` without a
    download: the bridge for running Avalanche's own benchmarks offline. Returns ``root``.
    """
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, x, y in (("train", data.x_train, data.y_train),
                         ("t10k", data.x_test, data.y_test)):
        for kind, array in (("images", x), ("labels", y)):
            # IDX header: two zero bytes, type code 0x08 (unsigned byte), rank; then the sizes.
            header = struct.pack(f">I{array.ndim}I", 0x08 << 8 | array.ndim, *array.shape)
            with atomic_path(raw / f"{prefix}-{kind}-idx{array.ndim}-ubyte") as tmp:
                tmp.write_bytes(header + array.astype(np.uint8).tobytes())
    return Path(root)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an .npz archive into memory, so no file handle outlives the call."""
    # np.load reports damage in many ways: not a zip at all, a truncated zip, a bad CRC, a
    # broken compressed stream or pickled data it refuses to load.
    try:
        _check_fits_in_memory(path)
        archive = np.load(path, allow_pickle=False)
        if isinstance(archive, np.lib.npyio.NpzFile):
            with archive:
                return {key: archive[key] for key in archive.files}
        reason = "it holds a single .npy array, not named arrays"
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        reason = str(exc)
    raise DataError(
        f"{path} is corrupt or not a valid .npz archive ({reason}); replace it with one written "
        "by numpy.savez (a built-in dataset file can also be deleted to download it again)"
    )


def _check_fits_in_memory(path: Path) -> None:
    """``DataError`` for an archive whose arrays, decompressed, would take more than half of
    this machine's memory (a small file can hold a huge array of zeros): its zip directory
    says their sizes before anything is read."""
    if not zipfile.is_zipfile(path):
        return  # np.load says what it is
    with zipfile.ZipFile(path) as archive:
        need = sum(info.file_size for info in archive.infolist())
    have = physical_memory()
    if have and need > have // 2:
        raise DataError(f"{path} holds {need / 2**30:.1f} GiB of arrays once decompressed, more "
                        f"than half of this machine's {have / 2**30:.1f} GiB")


def _validate(name: str, arrays: dict[str, np.ndarray], path: Path) -> ArrayDataset:
    """Check the archive's arrays against the format in the module docstring."""
    missing = [key for key in KEYS if key not in arrays]
    if missing:
        raise DataError(f"{path} lacks the arrays {', '.join(missing)}; it needs {', '.join(KEYS)}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8:
            raise DataError(
                f"x_{split} in {path} has dtype {x.dtype}, not uint8; the suite expects uint8 "
                "images with values 0-255 (scale float images by 255 and cast them)"
            )
        if x.ndim not in (3, 4):
            raise DataError(
                f"x_{split} in {path} has shape {x.shape}; images must be (N, H, W) or (N, H, W, C)"
            )
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"y_{split} in {path} has shape {y.shape} but x_{split} has {len(x)} images; "
                "labels must be one per image, shaped (N,) (length mismatch)"
            )
        if len(x) == 0:
            raise DataError(f"x_{split} in {path} is empty; each split needs at least one image")
        if 0 in x.shape[1:]:
            raise DataError(f"x_{split} in {path} has shape {x.shape}: images need at least one "
                            "pixel along every axis")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"y_{split} in {path} has dtype {y.dtype}; labels must be integers")
        if y.min() < 0:
            raise DataError(f"y_{split} in {path} has negative labels; labels must be 0, 1, 2, ...")
        # One output unit per label value: a label far above the number of images would ask
        # for a classifier of that size (and a uint64 above 2**63 wraps negative in int64).
        if int(y.max()) >= len(arrays["x_train"]):
            raise DataError(f"y_{split} in {path} has label {int(y.max())}, but there are only "
                            f"{len(arrays['x_train'])} training images; labels must be 0..K-1 "
                            "for K classes")
    # Accuracy is measured per class group on the test split, and a class is learnt from the
    # training split: each split must have every class the other has.
    for split, other in (("test", "train"), ("train", "test")):
        lacking = np.setdiff1d(arrays[f"y_{other}"], arrays[f"y_{split}"])
        if lacking.size:
            shown = ", ".join(map(str, lacking[:10].tolist())) + (", ..." if lacking.size > 10
                                                                  else "")
            raise DataError(f"y_{split} in {path} lacks the classes {shown} that y_{other} has; "
                            "both splits need images of every class")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(
            f"train images in {path} are {arrays['x_train'].shape[1:]} but test images are "
            f"{arrays['x_test'].shape[1:]}; both splits must share one image shape"
        )
    return ArrayDataset(
        name=name,
        x_train=arrays["x_train"],
        y_train=arrays["y_train"].astype(np.int64, copy=False),
        x_test=arrays["x_test"],
        y_test=arrays["y_test"].astype(np.int64, copy=False),
    )


def _download(name: str, path: Path) -> None:
    """Download a built-in dataset through torchvision and store it atomically as ``path``."""
    # Imported here: torchvision is slow to import and only needed for a first download.
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, _TORCHVISION_CLASSES[name])
    path.parent.mkdir(parents=True, exist_ok=True)
    # torchvision's raw files go to a scratch folder in the root, removed whatever happens.
    scratch = tempfile.mkdtemp(prefix=f".{name}-download-", dir=path.parent)
    try:
        arrays = {}
        try:
            for split in ("train", "test"):
                raw = dataset_class(scratch, train=split == "train", download=True)
                arrays[f"x_{split}"] = np.asarray(raw.data)
                arrays[f"y_{split}"] = np.asarray(raw.targets)
        # A failed download surfaces as URLError, RuntimeError, HTTP or checksum errors alike.
        except Exception as exc:
            raise DataError(
                f"{path.name} not found in {path.parent} and the torchvision download failed "
                f"({type(exc).__name__}: {exc}); put {path.name} there or point --data-root / "
                "CL_BINVAE_DATA at a folder that has it"
            ) from exc
        _write_npz_atomic(path, arrays)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check_can_download(folder: Path, name: str) -> None:
    """Say what is missing, before a download that could not be stored anyway."""
    if not folder.exists():
        parent = next((p for p in folder.parents if p.exists()), None)
        if parent is not None and not os.access(parent, os.W_OK):
            raise DataError(f"{name} not found: the data root {folder} does not exist and "
                            f"cannot be made in {parent}; point --data-root / CL_BINVAE_DATA "
                            f"at a folder that holds {name}")
    elif not os.access(folder, os.W_OK):
        raise DataError(f"{name} not found in {folder}, which is read-only, so it cannot be "
                        f"downloaded there; put {name} there or point --data-root / "
                        "CL_BINVAE_DATA at a folder that has it")


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` so that readers see either no file or the complete one."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)