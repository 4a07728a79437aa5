"""The (task, class) pairs a replay plugin has learnt, and the lookup tables built from them.

Replay labels and scores only classes seen before; a class-conditional prior numbers classes
by their arrival. Both read this one record, whose tables are cached until a class arrives.
"""

from __future__ import annotations

from typing import Any

import torch


class SeenClasses:
    """Classes by task, and the (task, class) pairs in order of arrival: a pair's position is
    its class id for the generator's prior, so ids never change as classes arrive."""

    def __init__(self) -> None:
        self.by_task: dict[int, set[int]] = {}
        self.keys: list[tuple[int, int]] = []
        self._tables: dict[Any, torch.Tensor] = {}

    def __bool__(self) -> bool:
        return bool(self.keys)

    def add(self, tasks: torch.Tensor, labels: torch.Tensor) -> None:
        """Record the classes of ``labels`` (one task per label); new pairs in sorted order."""
        for task in tasks.unique().tolist():
            self.by_task.setdefault(int(task), set()).update(
                labels[tasks == task].unique().tolist())
        known = set(self.keys)
        pairs = torch.stack([tasks, labels], 1).unique(dim=0).tolist()  # sorted
        self.keys += [key for key in map(tuple, pairs) if key not in known]
        self._tables.clear()

    def ids(self, tasks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The class id (position in ``keys``) of each (task, label) pair."""
        keys = torch.tensor(self.keys, device=labels.device)
        lookup = torch.full((int(keys[:, 0].max()) + 1, int(keys[:, 1].max()) + 1), -1,
                            dtype=torch.long, device=labels.device)
        lookup[keys[:, 0], keys[:, 1]] = torch.arange(len(keys), device=labels.device)
        return lookup[tasks, labels]

    def key_table(self, device: torch.device) -> torch.Tensor:
        """``keys`` as a (pairs, 2) tensor: row i is the (task, class) of class id i."""
        return self._cached(("keys", device), lambda: torch.tensor(self.keys, device=device))

    def tasks(self, device: torch.device) -> torch.Tensor:
        """The tasks seen, sorted."""
        return self._cached(("tasks", device),
                            lambda: torch.tensor(sorted(self.by_task), device=device))

    def mask(self, like: torch.Tensor, current: dict[int, set[int]] | None = None
             ) -> torch.Tensor:
        """(tasks, outputs) bool table, True where the task has seen the class; ``like``
        gives the outputs' count and the device. ``current``: classes of the experience being
        learnt, counted as seen (active classes)."""
        def build() -> torch.Tensor:
            classes = {task: set(c) for task, c in self.by_task.items()}
            for task, more in (current or {}).items():
                classes.setdefault(task, set()).update(more)
            table = torch.zeros(max(classes) + 1, like.shape[1], dtype=torch.bool,
                                device=like.device)
            for task, members in classes.items():
                table[task, sorted(members)] = True
            return table

        key = ("mask", like.shape[1], like.device,
               None if current is None else tuple(sorted((t, tuple(sorted(c)))
                                                         for t, c in current.items())))
        return self._cached(key, build)

    def state_dict(self) -> dict[str, Any]:
        """The record, as plain lists (a checkpoint's keys)."""
        return {"classes_by_task": {t: sorted(c) for t, c in self.by_task.items()},
                "class_keys": list(self.keys)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``."""
        self.by_task = {int(t): set(c) for t, c in state["classes_by_task"].items()}
        self.keys = [(int(t), int(c)) for t, c in state["class_keys"]]
        self._tables.clear()

    def _cached(self, key: Any, build: Any) -> torch.Tensor:
        if key not in self._tables:
            self._tables[key] = build()
        return self._tables[key]
