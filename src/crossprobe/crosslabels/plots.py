"""Figures of AB against AA."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from crossprobe.figures import plt, save_figure


def plot_crosslabels(table: pd.DataFrame, path: str | Path) -> None:
    """AB against AA: per dataset and label kind (rows of panels) and layer position (columns),
    the out-of-fold R² of probes on each activations model (heatmap rows, text baselines last)
    for each model's labels (columns); the diagonal is AA."""
    if not len(table):
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no model-given labels in this run", ha="center", va="center")
        ax.axis("off")
        save_figure(fig, path)
        return
    label_models = list(dict.fromkeys(table.loc[table["own"].astype(bool), "labels"]))
    label_models += [m for m in dict.fromkeys(table["labels"]) if m not in label_models]
    acts = [m for m in label_models if m in set(table["activations"])]
    acts += [m for m in dict.fromkeys(table["activations"]) if m not in acts]
    panels = list(dict.fromkeys(zip(table["dataset"], table["label"], strict=True)))
    positions = sorted(table["layer_position"].unique())
    side_w, side_h = 0.7 * len(label_models) + 1.8, 0.45 * len(acts) + 1.4
    fig, axes = plt.subplots(
        len(panels),
        len(positions),
        figsize=(side_w * len(positions), side_h * len(panels)),
        squeeze=False,
    )
    for i, (dataset, label) in enumerate(panels):
        for j, pos in enumerate(positions):
            sub = table[
                (table["dataset"] == dataset)
                & (table["label"] == label)
                & (table["layer_position"] == pos)
            ]
            grid = sub.pivot_table(index="activations", columns="labels", values="r2")
            grid = grid.reindex(index=acts, columns=label_models)
            ax = axes[i, j]
            sns.heatmap(
                grid,
                ax=ax,
                annot=True,
                fmt=".2f",
                vmin=0.0,
                vmax=1.0,
                cmap="viridis",
                cbar=j == len(positions) - 1,
                annot_kws={"size": 7},
            )
            for k, m in enumerate(acts):  # outline AA
                if m in label_models:
                    ax.add_patch(
                        plt.Rectangle(
                            (label_models.index(m), k), 1, 1, fill=False, ec="white", lw=1.5
                        )
                    )
            ax.set_title(f"{dataset}: {label}, layer position {pos}", fontsize=9)
            ax.set_xlabel("whose labels" if i == len(panels) - 1 else "")
            ax.set_ylabel("whose activations" if j == 0 else "")
            ax.tick_params(axis="x", rotation=30, labelsize=7)
            ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(
        "Whose internals, whose labels: out-of-fold R² of ridge probes (outlined: own labels)",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, path)
