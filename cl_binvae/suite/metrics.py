"""Continual-learning metrics from an accuracy matrix.

``acc[i, j]`` is the test accuracy on experience j after training experience i (T x T).
Definitions follow Lopez-Paz & Ranzato 2017 (BWT, FWT) and Chaudhry et al. 2018 (forgetting).
"""

from __future__ import annotations

import numpy as np


def final_average_accuracy(acc: np.ndarray) -> float:
    """Mean accuracy over all experiences after training the last one."""
    return float(np.mean(acc[-1]))


def average_accuracy_per_step(acc: np.ndarray) -> list[float]:
    """After each experience i, the mean accuracy over experiences 0..i."""
    return [float(np.mean(acc[i, :i + 1])) for i in range(len(acc))]


def average_forgetting(acc: np.ndarray) -> float | None:
    """Mean over j < T-1 of the best earlier accuracy on j minus the final one (None if T=1)."""
    t = len(acc)
    if t < 2:
        return None
    return float(np.mean([acc[:t - 1, j].max() - acc[t - 1, j] for j in range(t - 1)]))


def backward_transfer(acc: np.ndarray) -> float | None:
    """Mean over j < T-1 of final accuracy on j minus accuracy right after learning j."""
    t = len(acc)
    if t < 2:
        return None
    return float(np.mean([acc[t - 1, j] - acc[j, j] for j in range(t - 1)]))


def forward_transfer(acc: np.ndarray, initial: np.ndarray) -> float | None:
    """Mean over j > 0 of accuracy on j before learning it minus a fresh model's (``initial``)."""
    t = len(acc)
    if t < 2:
        return None
    return float(np.mean([acc[j - 1, j] - initial[j] for j in range(1, t)]))


def summarize_matrix(acc: np.ndarray, initial: np.ndarray) -> dict[str, float | None | list]:
    """All the metrics of one run, keyed as in a run directory's ``metrics.json``."""
    return {
        "final_avg_accuracy": final_average_accuracy(acc),
        "avg_forgetting": average_forgetting(acc),
        "bwt": backward_transfer(acc),
        "fwt": forward_transfer(acc, initial),
        "avg_accuracy_per_step": average_accuracy_per_step(acc),
    }
