"""What a run chooses of its generator and of our replay: one typed, frozen object each.

``GeneratorSettings`` (r, prior, K) is what a method that trains binarized VAEs takes;
``ReplaySettings`` adds how our replay plugin labels and weighs replay (dgr, binvae_gr and
users' replay methods). Each is built and checked once, when a run is configured: every rule
that ties these settings together is here, and their fields are the driver's flags
(``--r``, ``--prior``, ``--prior-components``, ``--replay-labels``, ``--active-classes``,
``--distill``; see :mod:`cl_binvae.suite.settings`).

Plain Python, no torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cl_binvae.model.config import (
    DEFAULT_COMPONENTS,
    DEFAULT_PRIOR,
    PRIOR_NAMES,
    PriorConfig,
    VAEConfig,
    check_radius,
)
from cl_binvae.replay.config import REPLAY_LABELS
from cl_binvae.suite.settings import changed_fields, check_types, flag

PRIOR_HELP = ("the latent prior: fitted (a Gaussian mixture fitted to the latents after each "
              "experience: the best replay in every table of results/), mixture (fair-sign "
              "0.5 N(r,1) + 0.5 N(-r,1), the paper-literal choice), standard (N(0, I)), codes "
              "(a binary code per class)")


@dataclass(frozen=True)
class GeneratorSettings:
    """The binarization radius of KL_r and the latent prior of a run's VAEs."""

    r: float = flag(0.0, "binarization radius r >= 0 of KL_r")
    prior: str = flag(DEFAULT_PRIOR, PRIOR_HELP, choices=PRIOR_NAMES)
    prior_components: int = flag(DEFAULT_COMPONENTS, "components K of the fitted prior")

    def __post_init__(self) -> None:
        check_types(self, "setting")
        object.__setattr__(self, "r", check_radius(self.r))  # an int r hashes as its float
        self._check()
        self._name_once()

    def _check(self) -> None:
        """``ValueError`` for settings that do not make one generator."""
        self.prior_config(seed=0)  # checks the name and K

    def prior_config(self, seed: int) -> PriorConfig:
        """The prior these settings name, its codes and fits seeded by ``seed``."""
        return PriorConfig(self.prior, self.prior_components, seed=seed)

    def _name_once(self) -> None:
        # One generator, one name: at r = 0 the standard and the codes prior (every class's
        # mode at 0) are the mixture, N(0, I); K only matters to the fitted prior.
        if self.r == 0 and self.prior in ("standard", "codes"):
            object.__setattr__(self, "prior", "mixture")
        if self.prior != "fitted":
            object.__setattr__(self, "prior_components", DEFAULT_COMPONENTS)

    def check_scenario(self, scenario: str) -> None:
        """``ValueError`` for settings that the scenario cannot take (none here)."""

    def vae_config(self, base: VAEConfig, seed: int) -> VAEConfig:
        """``base`` with this run's r and prior; the prior's codes and fits are seeded by the
        run's ``seed``."""
        return dataclasses.replace(base, r=self.r, prior=self.prior_config(seed))

    def label(self) -> str:
        """The settings in a table row's name, after the method and its r: the prior when it
        is not the mixture (the only prior before priors were a choice), then what a
        subclass adds, where it differs from its default."""
        name = ""
        if self.prior != "mixture":
            k = self.prior_components if self.prior == "fitted" else ""
            name = f" prior={self.prior}{k}"
        return name + changed_fields(self, ReplaySettings if isinstance(self, ReplaySettings)
                                     else GeneratorSettings)

    def sort_key(self) -> tuple:
        """Where runs of one method sort in a table: priors in the order of ``PRIOR_NAMES``,
        then K, then r."""
        return (PRIOR_NAMES.index(self.prior), self.prior_components, self.r)


@dataclass(frozen=True)
class ReplaySettings(GeneratorSettings):
    """The generator's settings plus how our replay plugin labels and weighs replay."""

    replay_labels: str = flag("solver", "label replay by the frozen solver, or (--prior codes) "
                              "by the class the prior drew", choices=REPLAY_LABELS)
    active_classes: bool = flag(False, "class-IL: current and replay losses over the classes "
                                "seen so far only (van de Ven et al.)")
    distill: bool = flag(False, "replay soft targets at the protocol's temperature, not hard "
                         "labels")

    def _check(self) -> None:
        """``ValueError`` for settings that do not make one replay, before names settle."""
        super()._check()
        if self.replay_labels == "prior" and not self.prior_config(seed=0).conditional:
            raise ValueError("replay labelled by the prior needs --prior codes")
        if self.replay_labels == "prior" and self.r == 0:
            raise ValueError("at r = 0 the codes prior gives every class the same mode, so the "
                             "drawn class says nothing about a replayed image: label replay "
                             "by the solver, or use r > 0")
        if self.replay_labels == "prior" and self.distill:
            raise ValueError("--distill needs replay labelled by the solver")

    def check_scenario(self, scenario: str) -> None:
        """``ValueError``: active classes restrict one head's outputs, so class-IL only."""
        if self.active_classes and scenario != "class":
            raise ValueError("--active-classes applies to class-IL only")

    def label(self) -> str:
        """As the generator's (what a subclass adds at other values than its defaults
        included), then the replay labels when not the solver's, +distill and +active."""
        name = super().label()
        if self.replay_labels != "solver":
            name += f" labels={self.replay_labels}"
        return name + ("+distill" if self.distill else "") + ("+active" if self.active_classes
                                                              else "")

    def sort_key(self) -> tuple:
        """As the generator's, the replay labels, distillation and active classes before r."""
        prior, k, r = super().sort_key()
        return (prior, k, REPLAY_LABELS.index(self.replay_labels), self.distill,
                self.active_classes, r)
