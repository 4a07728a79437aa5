"""The method registry: every strategy the suite runs, one record each.

A method is a function that builds an Avalanche strategy from a
:class:`~cl_binvae.suite.context.MethodContext` (the run's stream, protocol, settings, device,
evaluator and the driver's plugins), registered under a name with :func:`register_method`.
Each built-in is one file of ``cl_binvae/methods/``; a user's file given to
``benchmarks/run.py --import`` registers the same way. The record says what the driver, run
directories, tables and figures need to know, and nothing else tells them:

- ``scenarios``: the scenarios it supports;
- ``resumable``: its whole state lies in the model, the optimizer and plugins with
  ``state_dict``/``load_state_dict(state, model)`` (our replay plugin), so a run can resume
  after its last finished experience; otherwise an interrupted run starts over;
- ``settings``: its own settings, a frozen dataclass instance holding their defaults; each
  field is a flag of the driver (:mod:`cl_binvae.suite.settings`). ``ReplaySettings``
  (:mod:`cl_binvae.suite.replay_settings`) means it carries our replay plugin: it is then
  diagnosed after every experience and gets sample grids. ``pinned`` names fields the method
  fixes at their default (dgr is binarized replay pinned at r = 0);
- ``protocol``: how a preset sets it up on a stream, when the presets' shared protocol
  (:mod:`cl_binvae.suite.presets`) does not fit it;
- ``r_baseline``: the method that is this one at r = 0 (paired differences, r sweeps);
- ``extends``: the method this one adds to (ewc_replay: binvae_gr plus EWC), compared with
  it in paired differences under the settings they share;
- ``joint``: it trains once on all experiences together (the upper bound);
- ``samples``: how to draw images from a generator that is not our plugin's (sample grids);
- ``diagnose``: ``diagnose(strategy, test_stream, i) -> row`` after each experience i, for a
  method that is not our replay (which the suite diagnoses itself): the rows of the run's
  ``diagnostics.csv``;
- ``rank``: where it sorts in tables (lower first).

Users add their own from a file given to ``benchmarks/run.py --import``::

    @cl_binvae.register_method("si_replay", settings=cl_binvae.ReplaySettings())
    def si_replay(ctx):
        return ctx.generative_replay(plugins=[SynapticIntelligencePlugin(si_lambda=1.0)])

This module imports no torch or Avalanche (builders import what they use), so the driver can
check a whole sweep before paying for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cl_binvae.suite.config import SCENARIOS
from cl_binvae.suite.replay_settings import GeneratorSettings, ReplaySettings
from cl_binvae.suite.settings import Flag, flags_of

#: ``build(ctx) -> strategy``; ctx is a ``MethodContext``.
Builder = Callable[[Any], Any]
#: ``protocol(preset, stream) -> protocol``: a method's own protocol (see ``Method``).
ProtocolFor = Callable[[str, str], Any]
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Method:
    """One registered method: how to build its strategy, and what it supports."""

    name: str
    build: Builder
    description: str
    scenarios: tuple[str, ...] = SCENARIOS
    resumable: bool = False
    settings: Any = None
    pinned: tuple[str, ...] = ()
    protocol: ProtocolFor | None = None
    r_baseline: str | None = None
    joint: bool = False
    samples: Callable[[Any, int], Any] | None = None
    diagnose: Callable[[Any, Any, int], dict[str, float]] | None = None
    rank: int = 50
    extends: str | None = None

    @property
    def flags(self) -> tuple[Flag, ...]:
        """The command-line flags its settings take (none without settings)."""
        return () if self.settings is None else flags_of(self.settings, self.pinned)

    @property
    def replays(self) -> bool:
        """Whether it carries our replay plugin (its settings are ``ReplaySettings``)."""
        return isinstance(self.settings, ReplaySettings)

    @property
    def diagnosed(self) -> bool:
        """Whether its runs have a ``diagnostics.csv``: our replay's, or its own ``diagnose``."""
        return self.replays or self.diagnose is not None

    @property
    def takes_r(self) -> bool:
        """Whether the run chooses the binarization radius r."""
        return isinstance(self.settings, GeneratorSettings) and "r" not in self.pinned


#: Every registered method by name, in registration order.
METHODS: dict[str, Method] = {}


def register_method(name: str, *, scenarios: tuple[str, ...] = SCENARIOS,
                    resumable: bool = False, settings: Any = None,
                    pinned: tuple[str, ...] = (), protocol: ProtocolFor | None = None,
                    r_baseline: str | None = None, joint: bool = False,
                    samples: Callable[[Any, int], Any] | None = None,
                    diagnose: Callable[[Any, Any, int], dict[str, float]] | None = None,
                    rank: int = 50, extends: str | None = None
                    ) -> Callable[[Builder], Builder]:
    """Decorator: register ``build(ctx) -> strategy`` as method ``name`` (see the module doc).

    The first line of the builder's docstring describes the method in ``--help``. Raises
    ``ValueError`` for a name taken already, a name that is not lower-case letters, digits
    and underscores, an unknown scenario, a pinned field the settings do not have, an
    ``extends`` that names no method registered already, or a settings field whose flag
    another method declares with another type or choices;
    ``TypeError`` for settings that cannot be flags.
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
    # Checked here, not when tables pair the two: a misspelt name would drop the pairing
    # silently. The extended method comes first (the built-ins are registered on import).
    if extends is not None and extends not in METHODS:
        raise ValueError(f"method {name!r} extends {extends!r}, which is not a registered "
                         f"method (registered: {', '.join(METHODS)})")
    flags = () if settings is None else flags_of(settings)
    missing = set(pinned) - {f.field for f in flags}
    if missing:
        raise ValueError(f"method {name!r}: pinned {sorted(missing)} are not fields of its "
                         "settings")
    taken = method_flags()
    for new in flags:
        if new.field in taken and not new.same_meaning(taken[new.field]):
            raise ValueError(f"method {name!r}: its setting {new.option} is "
                             f"{new.kind.__name__} {new.choices or ''}, but another method's "
                             f"{new.option} is {taken[new.field].kind.__name__} "
                             f"{taken[new.field].choices or ''}: one flag, one meaning")

    def decorator(build: Builder) -> Builder:
        if not callable(build):
            raise TypeError(f"method {name!r}: register a function that builds the strategy")
        doc = (build.__doc__ or "").strip().splitlines()
        METHODS[name] = Method(name, build, doc[0] if doc else name, tuple(scenarios),
                               resumable, settings, tuple(pinned), protocol, r_baseline,
                               joint, samples, diagnose, rank, extends)
        return build

    return decorator


def get_method(name: str) -> Method:
    """The method registered as ``name``; ``ValueError`` listing the registered ones if none."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(METHODS)} "
                         "(add your own with --import)")
    return METHODS[name]


def method_flags() -> dict[str, Flag]:
    """Every flag some registered method takes, by field name, in order of registration."""
    flags: dict[str, Flag] = {}
    for method in METHODS.values():
        for f in method.flags:
            flags.setdefault(f.field, f)
    return flags
