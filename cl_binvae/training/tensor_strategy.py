"""``TensorStrategy``: Avalanche's ``SupervisedTemplate`` (Naive fine-tuning) with the
per-sample data loaders replaced by tensor slicing; the lifecycle, plugins and metrics are
untouched. Every strategy of the suite is one."""

from __future__ import annotations

from typing import Any

from avalanche.training.templates import SupervisedTemplate

from cl_binvae.training.tensor_batches import TensorBatches, dataset_tensors


class TensorStrategy(SupervisedTemplate):
    """``SupervisedTemplate`` fed by :class:`TensorBatches`, with no per-sample collation: each
    of the ``train_epochs`` epochs runs ``train_iterations`` minibatches (None: one pass).

    A plugin that installs its own loader in ``before_training_exp`` (Avalanche's
    ``ReplayPlugin``) still does so: the template builds the loader before calling plugins.
    """

    def __init__(self, *, train_iterations: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.train_iterations = train_iterations

    def make_train_dataloader(self, shuffle: bool = True, **kwargs: Any) -> None:
        # Read the 'train' view (no .eval()): random transforms are drawn once per experience.
        tensors = dataset_tensors(self.adapted_dataset, self.device, eval_mode=False)
        self.dataloader = TensorBatches(tensors, self.train_mb_size,
                                        iterations=self.train_iterations, shuffle=shuffle)

    def make_eval_dataloader(self, **kwargs: Any) -> None:
        tensors = dataset_tensors(self.adapted_dataset, self.device)
        self.dataloader = TensorBatches(tensors, self.eval_mb_size, shuffle=False)
