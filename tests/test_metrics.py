"""Continual-learning metrics on a hand-made accuracy matrix."""

from __future__ import annotations

import numpy as np
import pytest

from cl_binvae.suite.metrics import summarize_matrix

# acc[i, j]: accuracy on experience j after training experience i.
ACC = np.array([[0.9, 0.1, 0.2],
                [0.6, 0.8, 0.3],
                [0.5, 0.7, 0.9]])
INITIAL = np.array([0.1, 0.1, 0.1])


def test_metrics_match_their_definitions():
    m = summarize_matrix(ACC, INITIAL)
    assert m["final_avg_accuracy"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert m["avg_accuracy_per_step"] == pytest.approx([0.9, 0.7, 0.7])
    # Forgetting: best earlier accuracy minus final, over all but the last experience.
    assert m["avg_forgetting"] == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    assert m["bwt"] == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    # FWT: accuracy on j just before learning it, minus a fresh model's.
    assert m["fwt"] == pytest.approx(((0.1 - 0.1) + (0.3 - 0.1)) / 2)


def test_forgetting_uses_the_best_earlier_accuracy_not_the_first():
    acc = np.array([[0.5, 0.0, 0.0], [0.8, 0.9, 0.0], [0.4, 0.9, 0.9]])
    m = summarize_matrix(acc, np.zeros(3))
    assert m["avg_forgetting"] == pytest.approx(((0.8 - 0.4) + 0.0) / 2)
    assert m["bwt"] == pytest.approx(((0.4 - 0.5) + 0.0) / 2)


def test_one_experience_has_no_transfer_or_forgetting():
    m = summarize_matrix(np.array([[0.7, 0.9]]), np.zeros(2))
    assert m["final_avg_accuracy"] == pytest.approx(0.8)
    assert m["avg_forgetting"] is None and m["bwt"] is None and m["fwt"] is None
