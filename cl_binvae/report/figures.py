"""Figures of finished runs, one set per group (stream, scenario, protocol), as PNG files.

Figures are drawn on bare ``matplotlib.figure.Figure`` objects, which render through the Agg
canvas: no pyplot, so no GUI backend and no global figure state to leak between calls.
Means and sds come from ``results.mean_sd``, the same numbers as in the tables. Which runs
are joint bounds, take r, or have generators comes from the method registry.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import imread

from cl_binvae.model.config import PRIOR_NAMES
from cl_binvae.report.tables import Run, by_group, by_method, mean_sd
from cl_binvae.suite.atomic import atomic_path
from cl_binvae.suite.rundir import Notify, RunDirectory, RunError, samples_name

FigureMaker = Callable[[Sequence[Run], str, Notify], Figure | None]


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
    # tab10 repeats after ten colours: larger groups get twenty, then evenly spaced hues.
    palette = "tab10" if len(methods) <= 10 else "tab20" if len(methods) <= 20 else "husl"
    return dict(zip(methods, sns.color_palette(palette, len(methods)), strict=True))


def _legend_outside(ax: Axes) -> None:
    # Curves fill the whole plot area, so a legend inside would hide some of them.
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))


def _same_shape(method: str, arrays: list[np.ndarray], note: Notify) -> bool:
    if len({a.shape for a in arrays}) == 1:
        return True
    note(f"{method}: runs disagree on the number of experiences; left out of the figure")
    return False


def accuracy_heatmaps(runs: Sequence[Run], title: str, note: Notify) -> Figure | None:
    """Accuracy matrix (mean over seeds) of every sequential method; joint has no matrix."""
    matrices = {
        method: [run.matrix for run in members]
        for method, members in by_method(runs).items() if not members[0].joint
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


def accuracy_curves(runs: Sequence[Run], title: str, note: Notify) -> Figure | None:
    """Average accuracy on the experiences seen so far, after each experience (mean ± sd)."""
    if all(run.joint for run in runs):
        note("skipped: no sequential method")
        return None
    fig, (ax,) = _figure()
    colors = _colors(runs)
    for method, members in by_method(runs).items():
        if members[0].joint:
            # Joint trains once on everything: its final accuracy is the reference ceiling.
            mean, _, n = mean_sd(run.metrics.final_avg_accuracy for run in members)
            ax.axhline(mean, color=colors[method], linestyle="--", label=f"{method} (n={n})")
            continue
        curves = [np.array(run.metrics.avg_accuracy_per_step) for run in members]
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


def _twin_method(run: Run) -> str | None:
    """The table name of the run's r = 0 twin (``RunConfig.r_zero_twin``), if it has one."""
    try:
        return run.config.r_zero_twin().method
    except ValueError:  # no r_baseline, or the twin cannot take these settings
        return None


def _r_series(runs: Sequence[Run]) -> list[tuple[str, dict[float, list[float]], list[Run]]]:
    """(label, final accuracies by r, baseline runs drawn as r = 0) per line of the r sweep:
    runs of a method that takes r, by their other settings. The r = 0 point is the method's
    own r = 0 runs, or else its r = 0 twin's runs (dgr under the same settings)."""
    series = []
    takes_r = [run for run in runs if run.config.method_record.takes_r]
    for label in dict.fromkeys(run.config.label(with_r=False) for run in takes_r):
        members = [run for run in takes_r if run.config.label(with_r=False) == label]
        finals: dict[float, list[float]] = {}
        for run in members:
            finals.setdefault(run.config.r, []).append(run.metrics.final_avg_accuracy)
        twin = _twin_method(members[0])
        baseline = [] if 0.0 in finals or twin is None else [
            run for run in runs if run.method == twin]
        if baseline:
            finals[0.0] = [run.metrics.final_avg_accuracy for run in baseline]
        if len(finals) > 1:
            series.append((label, finals, baseline))
    return series


def r_sweep(runs: Sequence[Run], title: str, note: Notify) -> Figure | None:
    """Final average accuracy against r, one line per setting of the other options (prior,
    labels, distillation, ...), with the r = 0 twin (dgr) as r = 0 where that is missing.

    Naive and joint, if present, are horizontal references.
    """
    series = _r_series(runs)
    if not series:
        note("skipped: no method that takes r at two or more values of r")
        return None
    fig, (ax,) = _figure()
    # Neutral colours for a single line: the palette colours belong to the reference lines.
    line_colors = (["black"] if len(series) == 1
                   else sns.color_palette("Dark2", len(series)))
    for (label, finals, baseline), color in zip(series, line_colors, strict=True):
        r = sorted(finals)
        mean, sd, _ = np.array([mean_sd(finals[x]) for x in r]).T
        ax.errorbar(r, mean, yerr=np.nan_to_num(sd), marker="o", capsize=4, color=color,
                    label=label)
        if baseline:  # several lines may share a twin (plain dgr): name it once
            name = f"{baseline[0].method} as r=0"
            ax.plot(0.0, mean[0], "s", color=color, markersize=11, fillstyle="none",
                    label=name if name not in ax.get_legend_handles_labels()[1] else None)
    methods, colors = by_method(runs), _colors(runs)
    for reference in ("naive", "joint"):
        if reference in methods:
            mean, _, n = mean_sd(run.metrics.final_avg_accuracy for run in methods[reference])
            ax.axhline(mean, color=colors[reference], linestyle="--", label=f"{reference} (n={n})")
    ax.set(xlabel="Binarization radius r", ylabel="Final average accuracy", ylim=(0, 1.02),
           title=f"Final accuracy against r (mean ± sd over seeds)\n{title}")
    _legend_outside(ax)
    return fig


def forgetting_bars(runs: Sequence[Run], title: str, note: Notify) -> Figure | None:
    """Average forgetting per method (mean ± sd over seeds); methods without it left out."""
    stats = {method: mean_sd(run.metrics.avg_forgetting for run in members)
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
    return {i: run.path / samples_name(i) for i in range(run.n_experiences)
            if (run.path / samples_name(i)).exists()}


def generated_samples(runs: Sequence[Run], title: str, note: Notify,
                      prior: str = "mixture") -> Figure | None:
    """Samples after each experience under one ``prior``: each method that takes r, at each
    r, with its r = 0 twin above (dgr; at r = 0 the standard and codes priors are the plain
    VAE's N(0, I)), from one seed.

    The seed is the smallest one with samples from both kinds; distilled and active-class
    runs are left out, as they change the solver's losses, not the generator.
    """
    def shown(run: Run) -> bool:
        record = run.config.to_dict()
        return (run.config.method_record.takes_r and record["prior"] == prior
                and not record["distill"] and not record["active_classes"])

    with_r = [run for run in runs if shown(run) and _sample_images(run)]
    twins = {_twin_method(run) for run in with_r}
    without_r = [run for run in runs if run.method in twins and _sample_images(run)]
    seeds = sorted({run.seed for run in with_r} & {run.seed for run in without_r})
    if not seeds:
        note(f"skipped: no seed with samples_exp*.png from a method that takes r under the "
             f"{prior} prior and from its r = 0 twin")
        return None
    chosen = {id(run) for run in with_r + without_r if run.seed == seeds[0]}
    rows = [run for run in runs if id(run) in chosen]  # in table order
    n_cols = max(run.n_experiences for run in rows)
    # A first column of its own for the method's name, one setting per line: names such as
    # "gen_classifier r=0.3 prior=fitted20" outgrow a rotated label beside a small panel.
    fig, axes = _figure(len(rows) * (n_cols + 1), ncols=n_cols + 1, panel=(2.2, 2.2))
    for row, run in enumerate(rows):
        images = _sample_images(run)
        label, *panels = axes[row * (n_cols + 1):(row + 1) * (n_cols + 1)]
        label.set_axis_off()
        label.text(0.5, 0.5, "\n".join(run.method.split(" ")), transform=label.transAxes,
                   ha="center", va="center")
        for col, ax in enumerate(panels):
            ax.set_axis_off()
            if col in images:
                try:
                    ax.imshow(imread(images[col]), cmap="gray")  # cmap: 1-channel PNGs
                except (OSError, SyntaxError, ValueError) as err:  # a truncated or bad PNG
                    note(f"{images[col]} is unreadable ({err}); left blank")
            if row == 0:
                ax.set_title(f"after exp {col}")
    fig.suptitle(f"Generated samples, seed {seeds[0]}\n{title}")
    return fig


def replay_balance(runs: Sequence[Run], title: str, note: Notify) -> Figure | None:
    """Share of each seen class among replayed samples (labelled by the frozen solver) after
    each experience, mean over seeds, one heatmap per generator method: drift toward the
    latest classes shows as mass to the right."""
    shares = {}
    for method, members in by_method(runs).items():
        frames = []
        for run in members:
            if not run.config.method_record.replays:
                continue
            try:
                frame = RunDirectory(run.path).read_diagnostics()
            except RunError as err:
                note(f"{run.path}: {err}")
                continue
            columns = [c for c in frame.columns if c.startswith("replay_share_")]
            if columns:
                frames.append(frame.set_index("experience")[columns])
        if frames:
            shares[method] = sum(frames) / len(frames)
    if not shares:
        note("skipped: no run records replay class shares (diagnostics.csv replay_share_*)")
        return None
    fig, axes = _figure(len(shares), ncols=min(3, len(shares)), panel=(5.0, 3.6))
    for ax, (method, table) in zip(axes, shares.items(), strict=True):
        table.columns = [c.removeprefix("replay_share_") for c in table.columns]
        sns.heatmap(100 * table, ax=ax, vmin=0, vmax=100, cmap="magma", annot=True, fmt=".0f",
                    cbar=False)
        ax.set(title=method, xlabel="Replayed class (task, class)",
               ylabel="After training experience")
    fig.suptitle(f"Replay class shares (%), 1000 samples labelled by the frozen solver, "
                 f"mean over seeds\n{title}")
    return fig


#: Output file suffix and maker of every figure, drawn once per group (see ``Group``). Sample
#: grids are drawn once per prior; the fair-sign mixture's keeps its original name.
FIGURES: dict[str, FigureMaker] = {
    "accuracy_matrix": accuracy_heatmaps,
    "avg_accuracy": accuracy_curves,
    "r_sweep": r_sweep,
    "forgetting": forgetting_bars,
    "samples": generated_samples,
    **{f"samples_{prior}": functools.partial(generated_samples, prior=prior)
       for prior in PRIOR_NAMES if prior != "mixture"},
    "replay_balance": replay_balance,
}


def write_figures(runs: Sequence[Run], out: Path, note: Notify) -> list[Path]:
    """Write every figure of every group as ``<out>/<group>_<figure>.png``, atomically.

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
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=100, metadata={"Software": None})
            written.append(path)
    return written
