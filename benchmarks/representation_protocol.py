"""How the representation benchmark runs each dataset: data cut, training length, seeds and
importance samples. Plain Python, no torch: ``representation.py`` parses its flags with these
before ``representation_runs.py`` imports torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RepresentationProtocol:
    """How one dataset is run: data cut, training length, seeds, IW samples (the model is
    the dataset's replay generator, ``representation_runs.GENERATORS``)."""

    train_size: int | None  # None: the whole training set
    test_size: int
    epochs: int
    seeds: tuple[int, ...]
    iw_k: int


# The full run must fit about 40 minutes on one CPU thread: MNIST gets the whole training set
# and three seeds; the conv VAE costs ~10x more per image, so CIFAR-10 gets a 10k subset, two
# seeds and fewer test images for the k-sample bound.
PROTOCOLS = {
    "mnist": RepresentationProtocol(None, 10_000, epochs=2, seeds=(0, 1, 2), iw_k=50),
    "cifar10": RepresentationProtocol(10_000, 2_000, epochs=3, seeds=(0, 1), iw_k=10),
}
QUICK = {"train_size": 512, "test_size": 256, "epochs": 1, "seeds": (0,), "iw_k": 5}
