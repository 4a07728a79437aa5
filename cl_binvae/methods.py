"""The method registry: every strategy the suite runs, one record each, and the six built-ins.

A method is a function that builds an Avalanche strategy from a
:class:`~cl_binvae.context.MethodContext` (the run's stream, protocol, device, evaluator and
the driver's plugins), registered under a name with :func:`register_method`. Its record says
what the driver, run directories, tables and figures need to know, and nothing else tells them:

- ``scenarios``: the scenarios it supports;
- ``resumable``: its whole state lies in the model, the optimizer and plugins with
  ``state_dict``/``load_state_dict(state, model)`` (our replay plugin), so a run can resume
  after its last finished experience; otherwise an interrupted run starts over;
- ``generator``: it carries our :class:`~cl_binvae.replay.BinVAEReplayPlugin`, so it takes the
  prior and replay settings and its generator is diagnosed after every experience;
- ``takes_r``: it takes the binarization radius ``--r``; ``r_baseline`` names the method that
  is this one at r = 0 (drawn at r = 0 in the r-sweep figure);
- ``joint``: it trains once on all experiences together (the upper bound);
- ``samples``: how to draw images from a generator that is not our plugin's (sample grids);
- ``rank``: where it sorts in tables (lower first).

Users add their own from a file given to ``benchmarks/run.py --import``::

    @cl_binvae.register_method("si_replay", generator=True, resumable=False)
    def si_replay(ctx):
        return ctx.generative_replay(plugins=[SynapticIntelligencePlugin(si_lambda=1.0)])

This module imports no torch or Avalanche at load time (builders import what they use), so
the driver can check a whole sweep before paying for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cl_binvae.configs import SCENARIOS

if TYPE_CHECKING:
    from cl_binvae.context import MethodContext

Builder = Callable[["MethodContext"], Any]
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Method:
    """One registered method: how to build its strategy, and what it supports."""

    name: str
    build: Builder
    description: str
    scenarios: tuple[str, ...] = SCENARIOS
    resumable: bool = False
    generator: bool = False
    takes_r: bool = False
    r_baseline: str | None = None
    joint: bool = False
    samples: Callable[[Any, int], Any] | None = None
    rank: int = 50


#: Every registered method by name, in registration order.
METHODS: dict[str, Method] = {}


def register_method(name: str, *, scenarios: tuple[str, ...] = SCENARIOS,
                    resumable: bool = False, generator: bool = False, takes_r: bool = False,
                    r_baseline: str | None = None, joint: bool = False,
                    samples: Callable[[Any, int], Any] | None = None,
                    rank: int = 50) -> Callable[[Builder], Builder]:
    """Decorator: register ``build(ctx) -> strategy`` as method ``name`` (see the module doc).

    The first line of the builder's docstring describes the method in ``--help``. Raises
    ``ValueError`` for a name taken already, a name that is not lower-case letters, digits
    and underscores, or an unknown scenario.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"method names are lower-case letters, digits and underscores, "
                         f"starting with a letter; got {name!r}")
    if name in METHODS:
        raise ValueError(f"a method named {name!r} is registered already")
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown or not scenarios:
        raise ValueError(f"method {name!r}: scenarios must be some of {SCENARIOS}, "
                         f"got {scenarios}")
    if takes_r and not generator:
        raise ValueError(f"method {name!r}: takes_r needs generator=True")

    def decorator(build: Builder) -> Builder:
        if not callable(build):
            raise TypeError(f"method {name!r}: register a function that builds the strategy")
        doc = (build.__doc__ or "").strip().splitlines()
        METHODS[name] = Method(name, build, doc[0] if doc else name, tuple(scenarios),
                               resumable, generator, takes_r, r_baseline, joint, samples, rank)
        return build

    return decorator


def get_method(name: str) -> Method:
    """The method registered as ``name``; ``ValueError`` listing the registered ones if none."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(METHODS)} "
                         "(add your own with --import)")
    return METHODS[name]


# -- the built-ins -----------------------------------------------------------------------------
@register_method("naive", resumable=True, rank=0)
def naive(ctx: MethodContext) -> Any:
    """fine-tuning, the lower bound"""
    return ctx.tensor_strategy()


@register_method("er", rank=10)
def er(ctx: MethodContext) -> Any:
    """Avalanche's ReplayPlugin, 100 stored samples per class"""
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.storage_policy import ClassBalancedBuffer, ExperienceBalancedBuffer

    stream = ctx.stream
    size = ctx.protocol.er_samples_per_class * sum(map(len, stream.classes_per_experience))
    # Balanced over classes in class-IL; in task- and domain-IL, where labels repeat across
    # experiences, over experiences of equal class counts.
    if ctx.run.scenario == "class":
        buffer = ClassBalancedBuffer(size, adaptive_size=False,
                                     total_num_classes=stream.n_outputs)
    else:
        buffer = ExperienceBalancedBuffer(size, adaptive_size=False,
                                          num_experiences=stream.n_experiences)
    replay = ReplayPlugin(mem_size=size, storage_policy=buffer)
    # Avalanche's replay loader counts epochs: the budget turns iterations into epochs.
    return ctx.tensor_strategy(iterations=None, plugins=[replay, ctx.epoch_budget()])


def _avalanche_samples(strategy: Any, n: int) -> Any:
    return strategy.generator_strategy.model.generate(n)


@register_method("avalanche_gr", scenarios=("class", "domain"), samples=_avalanche_samples,
                 rank=20)
def avalanche_gr(ctx: MethodContext) -> Any:
    """Avalanche's GenerativeReplay with its default generator (MLP VAE, 2-d latent)"""
    import torch
    from avalanche.models import MlpVAE, VAE_loss
    from avalanche.training import GenerativeReplay, VAETraining
    from avalanche.training.plugins import EvaluationPlugin, GenerativeReplayPlugin
    from torch import nn

    # Its defaults (Adam lr 0.01, weight decay 1e-4), built here only to fit the stream's input
    # shape and to keep the generator's evaluator silent.
    model = ctx.solver()
    optimizer = ctx.optimizer(model)
    vae = MlpVAE(ctx.stream.input_shape, nhid=2, device=ctx.device)
    kwargs = ctx.template_kwargs(model, optimizer)
    generator_strategy = VAETraining(
        model=vae, optimizer=torch.optim.Adam(vae.parameters(), lr=0.01, weight_decay=1e-4),
        criterion=VAE_loss, train_mb_size=kwargs["train_mb_size"],
        eval_mb_size=kwargs["eval_mb_size"], device=ctx.device,
        plugins=[GenerativeReplayPlugin(), ctx.epoch_budget()],
        evaluator=EvaluationPlugin(loggers=[]))
    return GenerativeReplay(criterion=nn.CrossEntropyLoss(),
                            plugins=[*ctx.plugins, ctx.epoch_budget()],
                            generator_strategy=generator_strategy, **kwargs)


@register_method("dgr", resumable=True, generator=True, rank=30)
def dgr(ctx: MethodContext) -> Any:
    """our replay plugin with a plain VAE (r = 0)"""
    return ctx.generative_replay()


@register_method("binvae_gr", resumable=True, generator=True, takes_r=True, r_baseline="dgr",
                 rank=40)
def binvae_gr(ctx: MethodContext) -> Any:
    """our replay plugin with the binarized VAE of radius --r"""
    return ctx.generative_replay()


@register_method("joint", resumable=True, joint=True, rank=100)
def joint(ctx: MethodContext) -> Any:
    """all experiences as one, the same total iterations: the upper bound"""
    return ctx.tensor_strategy(iterations=ctx.protocol.iterations * ctx.stream.n_experiences)
