"""How Avalanche's EWC importance compares with van de Ven et al.'s Fisher, to convert their
EWC strengths (cl_binvae/methods/ewc.py).

Trains the protocol's solver on split-MNIST's first experience (class-IL, paper protocol,
fine-tuning, seed 0), then estimates the diagonal Fisher twice: Avalanche's way (EWCPlugin:
the mean over minibatches of the protocol's batch size of the squared minibatch-mean
gradient, true labels) and van de Ven et al.'s (the mean over single samples of the squared
gradient under the predicted label, on a random subset). Prints both sums, their ratio, and
the ratio per parameter tensor.

    PYTHONPATH=. python results/pilots/baselines/fisher_scale.py [--samples 3000]
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3000,
                        help="samples of the experience for the per-sample Fisher")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from avalanche.training.plugins import EWCPlugin

    from cl_binvae.suite.experiment import build_strategy
    from cl_binvae.suite.run_config import RunConfig
    from cl_binvae.suite.streams import build_stream
    from cl_binvae.training.tensor_batches import dataset_tensors

    torch.set_num_threads(1)
    torch.manual_seed(0)
    run = RunConfig(strategy="naive")  # split-MNIST, class-IL, paper protocol, seed 0
    stream = build_stream(run.stream_config())
    strategy = build_strategy(run, stream, "cpu")
    experience = stream.benchmark.train_stream[0]
    strategy.train(experience)
    model = strategy.model

    avalanche = EWCPlugin(1.0, mode="online", decay_factor=1.0).compute_importances(
        model, torch.nn.CrossEntropyLoss(), strategy.optimizer, experience.dataset, "cpu",
        run.protocol.batch_size)
    x = dataset_tensors(experience.dataset)[0]
    model.eval()
    theirs = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for i in torch.randperm(len(x))[:args.samples]:
        model.zero_grad()
        out = model(x[i:i + 1])
        F.cross_entropy(out, out.argmax(1)).backward()
        for name, p in model.named_parameters():
            theirs[name] += p.grad.detach() ** 2 / args.samples

    total_avalanche = sum(v.data.sum().item() for v in avalanche.values())
    total_theirs = sum(v.sum().item() for v in theirs.values())
    print(f"sum of Avalanche's importances  {total_avalanche:.4g}")
    print(f"sum of van de Ven's Fisher       {total_theirs:.4g}")
    print(f"van de Ven / Avalanche           {total_theirs / total_avalanche:.3g} "
          f"(batch size {run.protocol.batch_size})")
    for name, fisher in theirs.items():
        print(f"  {name:16} {fisher.sum().item() / avalanche[name].data.sum().item():.3g}")


if __name__ == "__main__":
    main()
