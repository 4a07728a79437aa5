"""Figures of finished runs, one set per group (stream, scenario, protocol), as PNG files.

Figures are drawn on bare ``matplotlib.figure.Figure`` objects, which render through the Agg
canvas: no pyplot, so no GUI backend and no global figure state to leak between calls.
Means and sds come from ``results.mean_sd``, the same numbers as in the tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import imread

from cl_binvae.results import (
    GENERATOR_STRATEGY,
    JOINT,
    Report,
    Run,
    by_group,
    by_method,
    mean_sd,
)

SAMPLES_BASELINE = "dgr"  # generative replay with a plain VAE: the r = 0 reference

FigureMaker = Callable[[Sequence[Run], str, Report], Figure | None]


def _figure(n_panels: int = 1, ncols: int = 1,
            panel: tuple[float, float] = (8.0, 4.5)) -> tuple[Figure, list[Axes]]:
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    with sns.axes_style("whitegrid"):
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes[:n_panels])


def _colors(runs: Sequence[Run]) -> dict[str, tuple]:
    """One colour per method of a group, the same in every figure of that group."""
    methods = list(by_method(runs))
    return dict(zip(methods, sns.color_palette("tab10", len(methods)), strict=True))


def _legend_outside(ax: Axes) -> None:
    # Curves fill the whole plot area, so a legend inside would hide some of them.
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))


def _same_shape(method: str, arrays: list[np.ndarray], note: Report) -> bool:
    if len({a.shape for a in arrays}) == 1:
        return True
    note(f"{method}: runs disagree on the number of experiences; left out of the figure")
    return False


def accuracy_heatmaps(runs: Sequence[Run], title: str, note: Report) -> Figure | None:
    """Accuracy matrix (mean over seeds) of every sequential method; joint has no matrix."""
    matrices = {
        method: [run.matrix for run in members]
        for method, members in by_method(runs).items() if members[0].strategy != JOINT
    }
    matrices = {m: a for m, a in matrices.items() if _same_shape(m, a, note)}
    if not matrices:
        note("skipped: no sequential method")
        return None
    fig, axes = _figure(len(matrices), ncols=min(3, len(matrices)), panel=(4.0, 3.6))
    for ax, (method, arrays) in zip(axes, matrices.items(), strict=True):
        sns.heatmap(100 * np.mean(arrays, axis=0), ax=ax, vmin=0, vmax=100, cmap="viridis",
                    annot=True, fmt=".0f", cbar=False, square=True)
        ax.set(title=f"{method} (n={len(arrays)})", xlabel="Tested on experience",
               ylabel="After training experience")
    fig.suptitle(f"Test accuracy (%), mean over seeds\n{title}")
    return fig


def accuracy_curves(runs: Sequence[Run], title: str, note: Report) -> Figure | None:
    """Average accuracy on the experiences seen so far, after each experience (mean ± sd)."""
    if all(run.strategy == JOINT for run in runs):
        note("skipped: no sequential method")
        return None
    fig, (ax,) = _figure()
    colors = _colors(runs)
    for method, members in by_method(runs).items():
        if members[0].strategy == JOINT:
            # Joint trains once on everything: its final accuracy is the reference ceiling.
            mean, _, n = mean_sd(run.final_avg_accuracy for run in members)
            ax.axhline(mean, color=colors[method], linestyle="--", label=f"{method} (n={n})")
            continue
        curves = [np.array(run.avg_accuracy_per_step) for run in members]
        if not _same_shape(method, curves, note):
            continue
        mean, sd, _ = np.array([mean_sd(step) for step in zip(*curves, strict=True)]).T
        steps = np.arange(1, len(mean) + 1)
        ax.plot(steps, mean, marker="o", color=colors[method], label=f"{method} (n={len(curves)})")
        ax.fill_between(steps, mean - sd, mean + sd, color=colors[method], alpha=0.2)
    ax.set(xlabel="Experiences trained", ylabel="Average accuracy on seen experiences",
           ylim=(0, 1.02), title=f"Average accuracy (mean ± sd over seeds)\n{title}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    _legend_outside(ax)
    return fig


def r_sweep(runs: Sequence[Run], title: str, note: Report) -> Figure | None:
    """Final average accuracy against r for binvae_gr, with dgr as r = 0 if no r = 0 run.

    One line per distill setting; naive and joint, if present, are horizontal references.
    """
    binvae = [run for run in runs if run.strategy == GENERATOR_STRATEGY]
    series = []  # (distill, final accuracies by r, dgr runs standing in for r = 0)
    for distill in sorted({run.distill for run in binvae}):
        finals: dict[float, list[float]] = {}
        for run in binvae:
            if run.distill == distill:
                finals.setdefault(run.r, []).append(run.final_avg_accuracy)
        baseline = [] if 0.0 in finals else [
            run for run in runs if run.strategy == SAMPLES_BASELINE and run.distill == distill]
        if baseline:
            finals[0.0] = [run.final_avg_accuracy for run in baseline]
        if len(finals) > 1:
            series.append((distill, finals, baseline))
    if not series:
        note("skipped: no binvae_gr runs at two or more values of r")
        return None
    fig, (ax,) = _figure()
    for distill, finals, baseline in series:
        r = sorted(finals)
        mean, sd, _ = np.array([mean_sd(finals[x]) for x in r]).T
        # Neutral colours: the palette colours belong to the reference lines' methods.
        color = "dimgray" if distill else "black"
        ax.errorbar(r, mean, yerr=np.nan_to_num(sd), marker="o", capsize=4, color=color,
                    label=GENERATOR_STRATEGY + ("+distill" if distill else ""))
        if baseline:
            ax.plot(0.0, mean[0], "s", color=color, markersize=11, fillstyle="none",
                    label=f"{baseline[0].method} as r=0")
    methods, colors = by_method(runs), _colors(runs)
    for reference in ("naive", JOINT):
        if reference in methods:
            mean, _, n = mean_sd(run.final_avg_accuracy for run in methods[reference])
            ax.axhline(mean, color=colors[reference], linestyle="--", label=f"{reference} (n={n})")
    ax.set(xlabel="Binarization radius r", ylabel="Final average accuracy", ylim=(0, 1.02),
           title=f"Final accuracy against r (mean ± sd over seeds)\n{title}")
    _legend_outside(ax)
    return fig


def forgetting_bars(runs: Sequence[Run], title: str, note: Report) -> Figure | None:
    """Average forgetting per method (mean ± sd over seeds); methods without it left out."""
    stats = {method: mean_sd(run.avg_forgetting for run in members)
             for method, members in by_method(runs).items()}
    stats = {method: s for method, s in stats.items() if s[2] > 0}
    if not stats:
        note("skipped: no run reports avg_forgetting")
        return None
    fig, (ax,) = _figure(panel=(max(6.0, 1.1 * len(stats)), 4.5))
    colors = _colors(runs)
    mean, sd, _ = np.array(list(stats.values())).T
    ax.bar(list(stats), mean, yerr=np.nan_to_num(sd), capsize=4,
           color=[colors[method] for method in stats])
    ax.set(xlabel="Method", ylabel="Average forgetting",
           title=f"Average forgetting (mean ± sd over seeds)\n{title}")
    ax.tick_params(axis="x", labelrotation=30)
    return fig


def _sample_images(run: Run) -> dict[int, Path]:
    return {i: run.path / f"samples_exp{i}.png" for i in range(run.n_experiences)
            if (run.path / f"samples_exp{i}.png").exists()}


def generated_samples(runs: Sequence[Run], title: str, note: Report) -> Figure | None:
    """Samples after each experience: dgr (r = 0) above binvae_gr at each r, from one seed.

    The seed is the smallest one at which dgr and at least one binvae_gr run saved samples;
    distilled runs are left out: distillation acts on the solver's labels, not the generator.
    """
    candidates = [run for run in runs if not run.distill and _sample_images(run)
                  and run.strategy in (SAMPLES_BASELINE, GENERATOR_STRATEGY)]
    seeds = sorted(
        {run.seed for run in candidates if run.strategy == SAMPLES_BASELINE}
        & {run.seed for run in candidates if run.strategy == GENERATOR_STRATEGY}
    )
    if not seeds:
        note("skipped: no seed with samples_exp*.png from both dgr and binvae_gr")
        return None
    rows = [run for run in candidates if run.seed == seeds[0]]
    n_cols = max(run.n_experiences for run in rows)
    fig, axes = _figure(len(rows) * n_cols, ncols=n_cols, panel=(2.2, 2.2))
    for row, run in enumerate(rows):
        images = _sample_images(run)
        for col in range(n_cols):
            ax = axes[row * n_cols + col]
            ax.set_axis_off()
            if col in images:
                ax.imshow(imread(images[col]), cmap="gray")  # cmap: 1-channel PNGs
            if row == 0:
                ax.set_title(f"after exp {col}")
            if col == 0:
                ax.text(-0.05, 0.5, run.method, transform=ax.transAxes, rotation=90,
                        ha="right", va="center")
    fig.suptitle(f"Generated samples, seed {seeds[0]}\n{title}")
    return fig


#: Output file suffix and maker of every figure, drawn once per group (see ``Group``).
FIGURES: dict[str, FigureMaker] = {
    "accuracy_matrix": accuracy_heatmaps,
    "avg_accuracy": accuracy_curves,
    "r_sweep": r_sweep,
    "forgetting": forgetting_bars,
    "samples": generated_samples,
}


def write_figures(runs: Sequence[Run], out: Path, note: Report) -> list[Path]:
    """Write every figure of every group as ``<out>/<group>_<figure>.png``.

    A figure whose inputs are absent is skipped, with a line to ``note`` saying why.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for group, members in by_group(runs).items():
        for name, make in FIGURES.items():
            path = out / f"{group.slug}_{name}.png"
            fig = make(members, group.title, lambda msg, p=path: note(f"figure {p.name}: {msg}"))
            if fig is None:
                continue
            # No "Software" stamp: the PNG bytes then depend on the runs only.
            fig.savefig(path, dpi=100, metadata={"Software": None})
            written.append(path)
    return written
