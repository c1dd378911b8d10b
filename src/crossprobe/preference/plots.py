"""Figures of the preference study: ridge probes, their similarity, and steering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from crossprobe.figures import plt, save_figure


def plot_regression(table: pd.DataFrame, heldout: pd.DataFrame, path: str | Path) -> None:
    """Left: each ridge probe's test R² by layer (one line per model, dataset and target).
    Right: held-one-dataset-out standard R² against mean-adjusted R², one point per held-out
    dataset and layer (the diagonal: no offset between the datasets' means)."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.6))
    # One colour per model, one line style per dataset and target, one marker per layer rank:
    # a run with many models and targets stays legible.
    models = sorted(set(table["model"]) | (set(heldout["model"]) if len(heldout) else set()))
    colour = dict(zip(models, sns.color_palette("tab10", max(len(models), 1)), strict=False))
    model_marks = _plot_in_distribution(ax, table, models, colour)
    _plot_held_out(bx, heldout, colour, model_marks)
    fig.tight_layout()
    save_figure(fig, path)


def _plot_in_distribution(
    ax: plt.Axes, table: pd.DataFrame, models: list[str], colour: dict[str, Any]
) -> list[Line2D]:
    """The left panel, test R² by layer; returns the legend's handles of the models."""
    styles = ["-", "--", ":", "-."]
    probes = sorted({(d, t) for d, t in zip(table["dataset"], table["target"], strict=True)})
    style = {key: styles[i % len(styles)] for i, key in enumerate(probes)}
    for (model, dataset, target), sub in table.groupby(["model", "dataset", "target"]):
        sub = sub.sort_values("layer")
        ax.plot(
            sub["layer"],
            sub["r2"],
            marker="o",
            color=colour[model],
            ls=style[(dataset, target)],
        )
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("layer (block index)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("R² on test")
    ax.set_title("Ridge probes, in distribution", fontsize=10)
    # Short legends outside the axes (colour: model; line style: dataset.target; marker: layer
    # rank) instead of one entry per line or point drawn over the data.
    model_marks = [Line2D([], [], color=colour[m], marker="o", ls="", label=m) for m in models]
    handles = model_marks + [
        Line2D([], [], color="black", ls=style[key], label=f"{key[0]}.{key[1]}") for key in probes
    ]
    if len(table):
        ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return model_marks


def _plot_held_out(
    bx: plt.Axes, heldout: pd.DataFrame, colour: dict[str, Any], model_marks: list[Line2D]
) -> None:
    """The right panel, held-one-dataset-out standard R² against mean-adjusted R²."""
    markers = ["o", "s", "^", "D", "v", "P"]
    one_out = heldout[heldout["scheme"] == "hold_one_out"] if len(heldout) else heldout
    if len(one_out):
        rank = {
            (m, layer): i
            for m, layers in one_out.groupby("model")["layer"]
            for i, layer in enumerate(sorted(set(layers)))
        }
        for (model, layer), sub in one_out.groupby(["model", "layer"]):
            bx.scatter(
                sub["r2"],
                sub["r2_mean_adjusted"],
                s=22,
                color=colour[model],
                marker=markers[rank[(model, layer)] % len(markers)],
            )
            for _, row in sub.iterrows():
                bx.annotate(row["test_datasets"], (row["r2"], row["r2_mean_adjusted"]), fontsize=6)
        lo = float(min(one_out["r2"].min(), one_out["r2_mean_adjusted"].min(), 0.0))
        bx.plot([lo, 1], [lo, 1], color="grey", lw=0.8, ls=":")
        if lo < -10:  # R² is unbounded below: a symmetric log axis keeps 0..1 readable
            bx.set_xscale("symlog", linthresh=1.0)
            bx.set_yscale("symlog", linthresh=1.0)
        n_ranks = max(rank.values()) + 1
        marks = model_marks + [
            Line2D(
                [],
                [],
                color="black",
                marker=markers[i % len(markers)],
                ls="",
                label=f"model's layer {i + 1} of {n_ranks}",
            )
            for i in range(n_ranks)
        ]
        bx.legend(handles=marks, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        bx.text(0.5, 0.5, "no target is shared by two datasets", ha="center", va="center")
    bx.set_xlabel("standard R² on the held-out dataset")
    bx.set_ylabel("mean-adjusted R²")
    bx.set_title("Held one dataset out", fontsize=10)


def plot_similarity(within: pd.DataFrame, path: str | Path) -> None:
    """Heatmaps of probe-against-probe cosine, one row of panels per model, one per layer."""
    models = list(dict.fromkeys(within["model"]))
    n_cols = max(within.groupby("model")["layer"].nunique().max(), 1)
    labels = sorted(set(within["probe_a"]))
    side = 0.45 * len(labels) + 2.0
    fig, axes = plt.subplots(
        len(models), n_cols, figsize=(side * n_cols, 0.85 * side * len(models)), squeeze=False
    )
    for i, model in enumerate(models):
        sub = within[within["model"] == model]
        layers = sorted(sub["layer"].unique())
        for j in range(n_cols):
            ax = axes[i, j]
            if j >= len(layers):
                ax.axis("off")
                continue
            grid = sub[sub["layer"] == layers[j]].pivot(
                index="probe_a", columns="probe_b", values="cosine"
            )
            sns.heatmap(
                grid,
                ax=ax,
                annot=len(grid) <= 8,
                fmt=".2f",
                vmin=-1,
                vmax=1,
                cmap="RdBu_r",
                cbar=j == len(layers) - 1,
                annot_kws={"size": 6},
                square=True,
            )
            ax.set_title(f"{model}, layer {layers[j]}", fontsize=9)
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.tick_params(labelsize=6)
    fig.suptitle("Cosine between probe directions (dataset/method)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    save_figure(fig, path)


def plot_steering(curves: pd.DataFrame, path: str | Path) -> None:
    """Dose-response curves: the mean change of each response against the dose, one panel per
    model (rows) and dataset and response (columns); colour is the probe, line style the
    layer, and the grey band spans the random directions' mean curves (all layers)."""
    panels = curves[["dataset", "response"]].drop_duplicates().sort_values(["dataset", "response"])
    models = sorted(curves["model"].unique())
    probes = sorted(p for p in curves["probe"].unique() if not p.startswith("null_"))
    palette = dict(zip(probes, sns.color_palette("tab10", len(probes)), strict=True))
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(
        max(1, len(models)),
        max(1, len(panels)),
        figsize=(3.2 * max(1, len(panels)), 2.6 * max(1, len(models))),
        squeeze=False,
        sharex=True,
    )
    for i, model in enumerate(models):
        for j, (dataset, response) in enumerate(panels.itertuples(index=False)):
            ax = axes[i, j]
            sub = curves[
                (curves.model == model)
                & (curves.dataset == dataset)
                & (curves.response == response)
            ]
            layers = sorted(sub["layer"].unique())
            low = sub[sub.probe == "null_low"].groupby("alpha")["mean"].min()
            high = sub[sub.probe == "null_high"].groupby("alpha")["mean"].max()
            if len(low):
                ax.fill_between(low.index, low.values, high.values, color="0.85", lw=0)
            for probe in probes:
                for k, layer in enumerate(layers):
                    c = sub[(sub.probe == probe) & (sub.layer == layer)].sort_values("alpha")
                    if len(c):
                        ax.plot(
                            c["alpha"], c["mean"], styles[k % len(styles)],
                            color=palette[probe], lw=1.2,
                            label=f"{probe}, layer {layer}" if i == 0 else None,
                        )  # fmt: skip
            ax.axhline(0, color="0.5", lw=0.5)
            ax.set_title(f"{model}\n{dataset}: {response}", fontsize=8)
            if j == 0:
                ax.set_ylabel("mean change")
            if i == len(models) - 1:
                ax.set_xlabel("α (× typical spread)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes[0, 1:]:
        h, lab = ax.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    unique = dict(zip(labels, handles, strict=True))
    fig.legend(unique.values(), unique.keys(), loc="upper center", ncol=4, fontsize=7,
               bbox_to_anchor=(0.5, 1.0 + 0.25 / max(1, len(models))))  # fmt: skip
    fig.tight_layout()
    save_figure(fig, path)


def plot_steering_carried(table: pd.DataFrame, path: str | Path) -> None:
    """Across models: the per-prompt correlation of steering effects against Pearson_CE of the
    same cell (left), and the slope ratio target / source per probe (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    margin = table[(table["response"] == "margin")].dropna(subset=["pearson_ce", "prompt_corr"])
    if len(margin):
        sns.scatterplot(data=margin, x="pearson_ce", y="prompt_corr", hue="target",
                        style="probe", ax=axes[0], s=30)  # fmt: skip
        axes[0].plot([-1, 1], [-1, 1], color="0.6", lw=0.6)
        axes[0].legend(fontsize=6)
    else:
        axes[0].text(0.5, 0.5, "no cell with both", ha="center", transform=axes[0].transAxes)
    axes[0].set_xlabel("Pearson_CE (ablation)")
    axes[0].set_ylabel("per-prompt corr. of steering slopes")
    ratios = table.dropna(subset=["slope_ratio"])
    if len(ratios):
        sns.stripplot(data=ratios, x="probe", y="slope_ratio", hue="response", ax=axes[1],
                      dodge=True, size=3)  # fmt: skip
        axes[1].set_yscale("symlog", linthresh=0.1)
        axes[1].axhline(1, color="0.5", lw=0.6)
        axes[1].axhline(0, color="0.5", lw=0.4)
        axes[1].tick_params(axis="x", labelrotation=30, labelsize=7)
    axes[1].set_ylabel("slope ratio (target / source)")
    gone = int((~table["carried"].astype(bool)).sum()) if "carried" in table else 0
    axes[1].set_title(
        "ratio where the source's own slope beats its null"
        + (f"; {gone} direction(s) the map did not carry are left out" if gone else ""),
        fontsize=8,
    )
    fig.tight_layout()
    save_figure(fig, path)
