"""The representation benchmark's work (``benchmarks/representation.py`` is its command line): train one
VAE per (dataset, variant, r, seed), score it with ``cl_binvae.model.diagnostics`` and a linear probe,
and write ``runs.csv``, ``summary.md``, ``PROTOCOL.md``, the raw artifacts and the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import sklearn
import torch
from representation_protocol import RepresentationProtocol
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from cl_binvae.model.diagnostics import diagnose, posterior_moments
from cl_binvae.model.vae import BaseVAE, VAEConfig, build_vae
from cl_binvae.suite.atomic import atomic_path, write_text
from cl_binvae.suite.data import load_dataset
from cl_binvae.suite.presets import protocol_for as preset_protocol
from cl_binvae.training.tensor_batches import TensorBatches

SHOWCASE_RADII = (0.0, 1.0, 2.0)
# The generators, batch size and learning rate of the continual-learning paper presets: the
# representation benchmark studies the same VAEs that replay uses.
GENERATORS = {"mnist": preset_protocol("paper", "split_mnist"),
              "cifar10": preset_protocol("paper", "split_cifar10")}
BATCH_SIZE = GENERATORS["mnist"].batch_size
LR = GENERATORS["mnist"].generator_lr
BETA = 4.0
# Burgess et al. 2018 anneal C from 0 to 25 nats; their gamma = 1000 needs their 100k-step
# anneal: in a 314-step pilot on MNIST it drove the encoder to a constant offset that pays the
# KL without encoding anything (0 active units, recon 230 vs 171 nats for the plain VAE).
# gamma = BETA keeps KL on the schedule (25.5 nats at C = 25) and makes 'capacity' differ from
# 'beta' only by its target C.
CAPACITY_MAX = 25.0
ACTIVITY_THRESHOLD = 0.01
PROBE_SIZE = 10_000  # training images whose posterior means fit the linear probe
N_SHOWN = 8  # images per row in the reconstruction and sample figures
N_LATENTS_KEPT = 500  # test images whose posterior means are kept for the histograms
SCORES = ("recon", "kl", "active_units", "collapsed", "sign_imbalance", "iw_ll", "probe_acc",
           "sec_per_epoch")
COLUMNS = ("dataset", "arch", "variant", "r", "seed", "epochs", "train_size", "test_size",
           "iw_k", "status", *SCORES)


# -- data --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """Images as floats in [0, 1] (N, C, H, W) and their labels."""

    x: torch.Tensor
    y: np.ndarray


def load_splits(dataset: str, proto: RepresentationProtocol, root: Path | None) -> tuple[Split, Split]:
    """Train and test splits cut to the protocol's sizes by a fixed permutation (seed 0)."""
    data = load_dataset(dataset, root)
    # Imported here: it loads Avalanche, which takes seconds and warns on stderr, a cost that
    # --help, bad flags and missing data should not pay.
    from cl_binvae.suite.streams import images_to_tensor

    rng = np.random.default_rng(0)

    def cut(x: np.ndarray, y: np.ndarray, size: int | None) -> Split:
        idx = np.sort(rng.permutation(len(x))[:size])
        return Split(images_to_tensor(x[idx]), y[idx])

    return (cut(data.x_train, data.y_train, proto.train_size),
            cut(data.x_test, data.y_test, proto.test_size))


# -- one run -----------------------------------------------------------------------------------
def vae_config(dataset: str, variant: str, r: float, total_steps: int) -> VAEConfig:
    """The dataset's replay generator as a variant; the capacity anneal spans the whole run."""
    beta = 1.0 if variant == "vae" else BETA
    return dataclasses.replace(GENERATORS[dataset].generator, r=r, variant=variant, beta=beta,
                               capacity_max=CAPACITY_MAX, capacity_steps=total_steps)


def probe_accuracy(vae: BaseVAE, train: Split, test: Split) -> float:
    """Test accuracy of a logistic regression fitted on posterior means of training images."""
    mu_train = posterior_moments(vae, train.x[:PROBE_SIZE])[0].numpy()
    mu_test = posterior_moments(vae, test.x)[0].numpy()
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    probe.fit(mu_train, train.y[:PROBE_SIZE])
    return float(probe.score(mu_test, test.y))


def run_one(dataset: str, proto: RepresentationProtocol, variant: str, r: float, seed: int,
            train: Split, test: Split, raw_dir: Path) -> dict[str, object]:
    """Train one VAE, score it, save the first seed's artifacts; return its CSV row."""
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    batches = TensorBatches([train.x], BATCH_SIZE, rng=rng)
    vae = build_vae(tuple(train.x.shape[1:]),
                    vae_config(dataset, variant, r, proto.epochs * len(batches)))
    optimizer = torch.optim.Adam(vae.parameters(), lr=LR)
    row = {"dataset": dataset, "arch": GENERATORS[dataset].generator.arch, "variant": variant,
           "r": r, "seed": seed,
           "epochs": proto.epochs, "train_size": len(train.x), "test_size": len(test.x),
           "iw_k": proto.iw_k}
    start = time.perf_counter()
    try:
        vae.train()
        for _ in range(proto.epochs):
            for (xb,) in batches:
                optimizer.zero_grad()
                vae.loss(xb)["loss"].backward()
                optimizer.step()
    except FloatingPointError as exc:
        # One diverged run is a result to report, not a reason to lose the others.
        return {**row, "status": f"diverged: {exc}"}
    row["sec_per_epoch"] = (time.perf_counter() - start) / proto.epochs
    row.update(diagnose(vae, test.x, k=proto.iw_k, threshold=ACTIVITY_THRESHOLD, rng=rng))
    row["probe_acc"] = probe_accuracy(vae, train, test)
    if seed == proto.seeds[0]:
        save_artifacts(raw_dir / f"{run_name(dataset, variant, r)}.npz", vae, test.x, rng)
    return {**row, "status": "ok"}


def run_name(dataset: str, variant: str, r: float) -> str:
    """File stem of a run's artifacts (seeds share it: only the first seed saves them)."""
    return f"{dataset}_{variant}_r{r:g}"


def save_artifacts(path: Path, vae: BaseVAE, x: torch.Tensor,
                   rng: torch.Generator) -> None:
    """Latents, reconstructions and prior samples of one run, for the figures."""
    def to_uint8(images: torch.Tensor) -> np.ndarray:
        return (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    vae.eval()
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            mu=posterior_moments(vae, x[:N_LATENTS_KEPT])[0].numpy().astype(np.float16),
            originals=to_uint8(x[:N_SHOWN]),
            reconstructions=to_uint8(vae.reconstruct(x[:N_SHOWN])),
            samples=to_uint8(vae.sample(N_SHOWN, rng=rng)))


# -- outputs -----------------------------------------------------------------------------------
def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean +- sd over seeds per (dataset, variant, r), as strings; n counts finished runs."""
    ok = runs[runs["status"] == "ok"]
    groups = ok.groupby(["dataset", "variant", "r"], sort=True)
    table = groups.size().rename("n").to_frame()
    for metric in SCORES:
        mean, sd = groups[metric].mean(), groups[metric].std()
        digits = 3 if metric in ("sign_imbalance", "probe_acc") else 1
        table[metric] = [f"{m:.{digits}f} ± {s:.{digits}f}" if math.isfinite(s)
                         else f"{m:.{digits}f}" for m, s in zip(mean, sd)]
    return table.reset_index()


def describe_cut(protocols: dict[str, RepresentationProtocol]) -> str:
    """One line per run setting, for the table title and PROTOCOL.md."""
    return "; ".join(
        f"{name}: {GENERATORS[name].generator.arch}, {p.train_size or 'all'} train / "
        f"{p.test_size} test images, "
        f"{p.epochs} epochs, {len(p.seeds)} seeds, IW k={p.iw_k}"
        for name, p in protocols.items())


def write_summary(out: Path, runs: pd.DataFrame, protocols: dict[str, RepresentationProtocol]) -> None:
    """summary.md: the table of ``summary_table`` under a title that states the data cut."""
    diverged = runs[runs["status"] != "ok"]
    text = (f"# Representation benchmark: mean ± sd over seeds ({describe_cut(protocols)})\n\n"
            "All metrics on test images: recon = -log p(x|z=mu) (nats), kl = KL_r summed over "
            "dimensions, active_units / collapsed out of 100 (threshold "
            f"{ACTIVITY_THRESHOLD}), sign_imbalance = mean |P(mu_j > 0) - 0.5|, iw_ll = "
            "importance-weighted log p(x) bound under the mixture prior (nats), probe_acc = "
            "linear probe on mu.\n\n"
            + summary_table(runs).to_markdown(index=False, tablefmt="pipe") + "\n")
    if len(diverged):
        text += f"\n{len(diverged)} diverged runs are left out: see runs.csv.\n"
    write_text(out / "summary.md", text)


def write_protocol(out: Path, args: argparse.Namespace, protocols: dict[str, RepresentationProtocol],
                   wall_seconds: float | None) -> None:
    """PROTOCOL.md: what ran, where, with which versions; rewritten with the wall time at the end."""
    wall = "still running" if wall_seconds is None else f"{wall_seconds / 60:.1f} min"
    lines = [
        "# Representation benchmark protocol",
        "",
        f"- command: `{shlex.join([Path(sys.executable).name, *sys.argv])}`",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- total wall time: {wall}",
        (f"- device: CPU ({platform.processor() or platform.machine()}), {args.threads} "
         f"thread(s), {platform.platform()}"),
        (f"- versions: python {platform.python_version()}, torch {torch.__version__}, numpy "
         f"{np.__version__}, scikit-learn {sklearn.__version__}"),
        f"- variants: {', '.join(args.variants)}; radii r: {', '.join(f'{r:g}' for r in args.r)}",
    ]
    if args.quick:
        lines.append("- QUICK smoke test (--quick): tiny data, not a result")
    lines += ["", "## Per dataset"]
    lines += [f"- {describe_cut({name: p})}; seeds {list(p.seeds)}"
              for name, p in protocols.items()]
    write_text(out / "PROTOCOL.md", "\n".join(lines) + f"""

Train and test images are cut by a fixed permutation (seed 0), the same for every run.

## Training
- Adam, lr {LR}, batch size {BATCH_SIZE}, one shuffled pass per epoch; Bernoulli likelihood
  on pixels in [0, 1]; z_dim 100; MLP 784-400-400 (MNIST), conv 32-64-128 (CIFAR-10)
- vae: beta 1; beta: beta {BETA:g}; capacity: gamma {BETA:g}, C annealed linearly from 0 to
  {CAPACITY_MAX:g} nats over the whole run (Burgess et al. 2018's C_max; their gamma = 1000
  collapsed the code in a short pilot, see the comment in benchmarks/representation_runs.py)
- seconds per epoch: training loop only, on a machine shared with other work

## Evaluation (test images)
- recon: -log p(x | z = mu); kl: KL_r summed over dimensions; active units: Var_x(mu_j) >
  {ACTIVITY_THRESHOLD}; collapsed: KL_r,j < {ACTIVITY_THRESHOLD} nats
- iw_ll: importance-weighted bound with k samples under the mixture prior 0.5 N(r,1) + 0.5 N(-r,1)
- probe_acc: StandardScaler + LogisticRegression on mu of up to {PROBE_SIZE} training images,
  scored on the test images
""")


def write_figures(out: Path, runs: pd.DataFrame, datasets: Sequence[str],
                  variants: Sequence[str], radii: Sequence[float]) -> None:
    """Metric-vs-r curves from the CSV; latent, reconstruction and sample figures from raw/."""
    ok = runs[runs["status"] == "ok"]
    shown = ("recon", "iw_ll", "active_units", "probe_acc", "sec_per_epoch")
    fig, axes = plt.subplots(len(datasets), len(shown), figsize=(4 * len(shown),
                             3.2 * len(datasets)), squeeze=False)
    for row, dataset in zip(axes, datasets):
        for ax, metric in zip(row, shown):
            sns.lineplot(ok[ok["dataset"] == dataset], x="r", y=metric, hue="variant",
                         marker="o", errorbar="sd", ax=ax)
            ax.set_title(f"{dataset}: {metric}")
    save_figure(fig, out / "metrics_vs_r.png")

    # The plain VAE shows what r alone does; other variants only when it did not run.
    variant = "vae" if "vae" in variants else variants[0]
    shown_r = [r for r in radii if r in SHOWCASE_RADII] or list(radii[:3])
    for dataset in datasets:
        arts = {r: np.load(out / "raw" / f"{run_name(dataset, variant, r)}.npz")
                for r in shown_r
                if (out / "raw" / f"{run_name(dataset, variant, r)}.npz").exists()}
        if arts:
            latent_histograms(out / f"latents_{dataset}.png", arts, f"{dataset}, {variant}")
            image_rows(out / f"reconstructions_{dataset}.png",
                       {"data": next(iter(arts.values()))["originals"],
                        **{f"r={r:g}": a["reconstructions"] for r, a in arts.items()}})
            image_rows(out / f"samples_{dataset}.png",
                       {f"r={r:g}": a["samples"] for r, a in arts.items()})


def latent_histograms(path: Path, arts: dict[float, np.lib.npyio.NpzFile], title: str,
                      n_dims: int = 4) -> None:
    """Histograms of mu for each run's most varying dimensions, with the modes +-r marked."""
    fig, axes = plt.subplots(len(arts), n_dims, figsize=(3 * n_dims, 2.4 * len(arts)),
                             squeeze=False)
    for row, (r, art) in zip(axes, arts.items()):
        mu = art["mu"].astype(np.float32)
        for ax, dim in zip(row, np.argsort(-mu.var(0))[:n_dims]):
            ax.hist(mu[:, dim], bins=40, color="tab:blue")
            for mode in {-r, r}:
                ax.axvline(mode, color="tab:red", linestyle="--", linewidth=1)
            ax.set_title(f"r={r:g}, dim {dim}", fontsize=9)
    fig.suptitle(f"posterior means of test images ({title}); dashed: ±r")
    save_figure(fig, path)


def image_rows(path: Path, rows: dict[str, np.ndarray]) -> None:
    """One labelled row per entry, each row the (n, C, H, W) uint8 images side by side."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.2 * N_SHOWN, 1.4 * len(rows)),
                             squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows.items()):
        strip = np.concatenate(list(images), axis=2).transpose(1, 2, 0)
        ax.imshow(strip.squeeze(-1) if strip.shape[-1] == 1 else strip, cmap="gray")
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, path)


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Lay out, write atomically and close ``fig``."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


# -- the whole benchmark -------------------------------------------------------------------------
def run_all(args: argparse.Namespace, protocols: dict[str, RepresentationProtocol],
            splits: dict[str, tuple[Split, Split]]) -> None:
    """Every (dataset, variant, r, seed) run in turn, ``runs.csv`` rewritten after each (a
    crash keeps what finished); then the summary, figures and the final ``PROTOCOL.md``."""
    torch.set_num_threads(args.threads)
    raw_dir = args.out / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    write_protocol(args.out, args, protocols, None)
    rows: list[dict[str, object]] = []
    with threadpool_limits(args.threads):
        for dataset, proto in protocols.items():
            for variant in args.variants:
                for r in args.r:
                    for seed in proto.seeds:
                        rows.append(run_one(dataset, proto, variant, r, seed, *splits[dataset],
                                            raw_dir))
                        runs = pd.DataFrame(rows, columns=COLUMNS)
                        with atomic_path(args.out / "runs.csv") as tmp:
                            runs.to_csv(tmp, index=False)
                        print(f"[{(time.perf_counter() - started) / 60:5.1f} min] "
                              + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in rows[-1].items()), flush=True)
    runs = pd.read_csv(args.out / "runs.csv")
    write_summary(args.out, runs, protocols)
    write_figures(args.out, runs, args.datasets, args.variants, args.r)
    write_protocol(args.out, args, protocols, time.perf_counter() - started)
