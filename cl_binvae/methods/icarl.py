"""iCaRL: Avalanche's ``ICaRL`` strategy on the protocol's solver, with ER's memory budget.

iCaRL (Rebuffi et al. 2017), as van de Ven et al. run it: exemplars chosen by herding, added to
each experience's training data; a binary cross-entropy loss whose targets for the classes
seen before are the previous model's outputs (distillation); and classification by the
nearest class mean of the exemplars' normalized features. Avalanche's ``ICaRL`` is all of
that: the solver's trunk is its feature extractor, the solver's head its training classifier
(over all the stream's classes), and an ``NCMClassifier`` classifies in evaluation.

Memory: ``memory_size = 100, fixed_memory=False`` keeps exactly the protocol's 100 exemplars
of every class seen, as ER's class-balanced buffer. iCaRL has no hyperparameter of its own to
choose. It counts epochs, so ``ctx.epoch_budget()`` turns the protocol's iterations into
epochs of the experience (as for ER). Two things Avalanche does that van de Ven do not: with
image-shaped inputs it averages each class mean with that of the horizontally flipped
exemplars (MNIST's digits too), and classes not seen yet keep a zero mean, which an input
whose features are far from every seen class's mean can be assigned to.

Class-IL only: iCaRL uses no task labels, and its loss assumes that a class never returns.
Exemplars, class means and the previous model live in its plugins, outside what a checkpoint
saves: an interrupted run starts over (``resumable=False``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cl_binvae.suite.registry import register_method

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext


# Exemplars and the previous model in Avalanche's plugins, outside a checkpoint: restarts.
@register_method("icarl", scenarios=("class",), resumable=False, rank=14)
def icarl(ctx: MethodContext) -> Any:
    """iCaRL: Avalanche's ICaRL strategy, 100 exemplars per class (class-IL only)"""
    from avalanche.training import ICaRL

    solver = ctx.solver()
    kwargs = ctx.template_kwargs(solver, ctx.optimizer(solver))
    del kwargs["model"]  # ICaRL builds its own from the feature extractor and the classifier
    return ICaRL(feature_extractor=solver.trunk, classifier=solver.head,
                 memory_size=ctx.protocol.er_samples_per_class, buffer_transform=None,
                 fixed_memory=False, plugins=[*ctx.plugins, ctx.epoch_budget()], **kwargs)
