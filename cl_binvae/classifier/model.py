"""``GenerativeClassifier``: one VAE per class; its outputs are log p(x | class).

A class's VAE is created when the class first appears in a training experience (the module
grows like Avalanche's ``IncrementalClassifier``), trained on that class alone, and frozen
after. The outputs for a minibatch are the importance-sampled log-likelihoods of its images
under the VAEs of the classes seen so far (-inf for the others), so the argmax is Bayes'
rule under a uniform class prior and Avalanche's accuracy metrics read them unchanged. An
image none of whose classes has a VAE yet (a task not learnt, in task-IL) scores -inf
everywhere; the tie goes to the first output, a guess, as an untrained head's would be.

A class's scores never change once its VAE is frozen: they are computed once per class and
image batch and kept (``scorings`` counts the computations), each from a random stream seeded
by the classifier's seed, the class and the batch's contents, so a restored classifier gives
the very same scores. Checkpoints keep the scores too (the module's extra state), so a resumed
run does not compute them again.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
from avalanche.models import MultiTaskModule
from torch import nn
from torch.nn.modules.module import _EXTRA_STATE_KEY_SUFFIX

from cl_binvae.classifier.config import ClassifierConfig
from cl_binvae.model.likelihood import log_likelihood
from cl_binvae.model.vae import BaseVAE, VAEConfig, build_vae
from cl_binvae.training.normalization import Normalization

ClassKey = tuple[int, int]  # (task, class)
#: How images are scored: this many at a time, their samples drawn this many at a time. Fixed,
#: so that the random draws, and the scores, are the same on every machine; memory holds
#: SCORE_BATCH x SAMPLE_CHUNK decoded images whatever S is.
SCORE_BATCH, SAMPLE_CHUNK = 50, 128


class GenerativeClassifier(MultiTaskModule):
    """Per-class VAEs over inputs of ``input_shape``, ``n_outputs`` output units (per task in
    task-IL). Task-IL: ``forward(x, task_labels)`` scores each image under its task's
    classes; without task labels, every class seen so far competes (class-IL)."""

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, vae: VAEConfig,
                 config: ClassifierConfig | None = None, seed: int = 0) -> None:
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_outputs = int(n_outputs)
        self.vae_config = vae
        self.config = config or ClassifierConfig()
        self.seed = int(seed)
        self._inputs = Normalization(self.config.input_mean, self.config.input_std)
        self._pixels = Normalization(self.config.pixel_mean, self.config.pixel_std)
        self.vaes = nn.ModuleDict()  # "t<task>_c<class>" -> VAE, in order of arrival
        self.register_buffer("_device_marker", torch.zeros(0))  # where new VAEs go
        self.scorings = 0
        self._scores: dict[tuple[str, str], torch.Tensor] = {}

    # -- the classes ---------------------------------------------------------------------------
    @property
    def classes(self) -> list[ClassKey]:
        """The (task, class) pairs with a VAE, in order of arrival."""
        return [_key(name) for name in self.vaes]

    def vae(self, task: int, label: int) -> BaseVAE:
        """The VAE of class ``label`` of ``task``."""
        return self.vaes[_name((task, label))]

    def add_classes(self, keys: list[ClassKey]) -> list[ClassKey]:
        """Create a fresh VAE for each (task, class) pair not seen before; return them."""
        new = [key for key in dict.fromkeys(keys) if _name(key) not in self.vaes]
        for task, label in new:
            if not 0 <= label < self.n_outputs:
                raise ValueError(f"class {label} does not fit the classifier's "
                                 f"{self.n_outputs} outputs")
            vae = build_vae(self.input_shape, self.vae_config).to(self._device_marker.device)
            self.vaes[_name((task, label))] = vae
        return new

    def adaptation(self, experience: Any) -> None:
        """Avalanche's hook before a training experience: VAEs for its new classes."""
        if not self.training:  # evaluation must not add classes it is scored on
            return
        task = int(experience.task_labels[0]) if len(experience.task_labels) == 1 else None
        if task is None:
            raise ValueError("the generative classifier needs one task label per experience")
        self.add_classes([(task, int(c)) for c in experience.classes_in_this_experience])

    def to_vae_space(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs -> the images the VAEs model: the inputs' normalization undone, the VAEs'
        applied."""
        return self._pixels.apply(self._inputs.undo(x))

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """What a VAE makes -> images in [0, 1]."""
        return self._pixels.undo(x)

    # -- scoring -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | int | None = None
                ) -> torch.Tensor:
        """log p(x | class) for every class an image may be given, -inf elsewhere: the
        classes of its task in task-IL, every class seen so far otherwise. (N, n_outputs)."""
        return self.scores(x, task_labels, self.config.importance_samples)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | int | None,
               samples: int) -> torch.Tensor:
        """``forward`` with ``samples`` importance samples, one of ``reported_samples``.
        ``ValueError`` without task labels when classes of two tasks share an output."""
        if samples not in self.config.reported_samples:
            raise ValueError(f"scores are kept for S in {self.config.reported_samples}, "
                             f"not {samples}")
        column = self.config.reported_samples.index(samples)
        out = torch.full((len(x), self.n_outputs), -math.inf, device=x.device)
        if task_labels is None:
            labels = [label for _, label in self.classes]
            if len(set(labels)) < len(labels):
                raise ValueError("classes of different tasks share outputs: score them with "
                                 "their task labels")
            tasks = torch.zeros(len(x), dtype=torch.long, device=x.device)
            rows_of = {task: tasks >= 0 for task in {t for t, _ in self.classes}}
        else:
            tasks = (torch.full((len(x),), task_labels, device=x.device)
                     if isinstance(task_labels, int) else task_labels)
            rows_of = {task: tasks == task for task in tasks.unique().tolist()}
        batch = _fingerprint(x)
        for task, label in self.classes:
            rows = rows_of.get(task)
            if rows is None or not bool(rows.any()):
                continue
            scores = self._class_scores((task, label), x, batch)[column].to(x.device)
            out[rows, label] = scores[rows]
        return out

    def _class_scores(self, key: ClassKey, x: torch.Tensor, batch: str) -> torch.Tensor:
        """(len(reported_samples), N) estimates of log p(x | key), computed once."""
        cache_key = (_name(key), batch)
        if cache_key not in self._scores:
            vae = self.vaes[_name(key)]
            rng = torch.Generator(vae.fc_mu.weight.device).manual_seed(
                _stream_seed(self.seed, _name(key), batch))
            self._scores[cache_key] = log_likelihood(
                vae, self.to_vae_space(x), self.config.reported_samples,
                batch_size=SCORE_BATCH, rng=rng, max_decodes=SCORE_BATCH * SAMPLE_CHUNK)
            self.scorings += 1
        return self._scores[cache_key]

    # -- checkpoints ---------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """The scores computed so far, so that a restored classifier need not recompute them."""
        return {"scores": {key: value.cpu() for key, value in self._scores.items()},
                "scorings": self.scorings}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_extra_state`` returned."""
        self._scores = dict(state["scores"])
        self.scorings = int(state["scorings"])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              local_metadata: dict[str, Any], strict: bool,
                              missing_keys: list[str], *args: Any, **kwargs: Any) -> None:
        # A restored classifier first grows the VAEs the state holds, in their order; they
        # were frozen when saved (checkpoints fall between experiences).
        names = dict.fromkeys(key[len(prefix + "vaes."):].split(".", 1)[0]
                              for key in state_dict if key.startswith(prefix + "vaes."))
        self.add_classes([_key(name) for name in names])
        for name in names:
            self.vaes[name].requires_grad_(False)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, *args, **kwargs)
        # A checkpoint written before scores were kept: they are computed again.
        extra = prefix + _EXTRA_STATE_KEY_SUFFIX
        if extra not in state_dict and extra in missing_keys:
            missing_keys.remove(extra)


def _name(key: ClassKey) -> str:
    return f"t{key[0]}_c{key[1]}"


def _key(name: str) -> ClassKey:
    task, label = name[1:].split("_c")
    return int(task), int(label)


def _fingerprint(x: torch.Tensor) -> str:
    """A batch's identity: the hash of its contents (and shape)."""
    data = x.detach().cpu().contiguous()
    digest = hashlib.blake2b(str(tuple(data.shape)).encode(), digest_size=16)
    digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def _stream_seed(seed: int, name: str, batch: str) -> int:
    text = f"{seed}/{name}/{batch}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1
