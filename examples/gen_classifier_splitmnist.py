"""The generative classifier in an Avalanche pipeline: Avalanche's own SplitMNIST, one VAE per
digit, each test image given to the digit under whose VAE it is most likely.

    python examples/gen_classifier_splitmnist.py
"""

import torch
from avalanche.benchmarks.classic import SplitMNIST
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training.plugins import EvaluationPlugin

from cl_binvae import (
    ClassifierConfig,
    GenerativeClassifier,
    GenerativeClassifierStrategy,
    VAEConfig,
)

torch.manual_seed(0)
benchmark = SplitMNIST(n_experiences=5, fixed_class_order=list(range(10)))
vae = VAEConfig(hidden=(85, 85), z_dim=5)  # per digit: 784-85-85, z = 5, r = 0, fitted prior
config = ClassifierConfig(iterations=1000, batch_size=128, importance_samples=100,
                          input_mean=(0.1307,), input_std=(0.3081,))  # undo SplitMNIST's
model = GenerativeClassifier((1, 28, 28), 10, vae, config)
strategy = GenerativeClassifierStrategy(
    model=model, evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]))
for experience in benchmark.train_stream:
    strategy.train(experience)
    accuracy = strategy.eval(benchmark.test_stream)
    print(f"after digits {experience.classes_in_this_experience}: accuracy on all ten "
          f"{accuracy['Top1_Acc_Stream/eval_phase/test_stream/Task000']:.3f}")
