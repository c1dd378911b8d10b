"""Figures of the generalisation study: one heatmap per model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.layout_engine import ConstrainedLayoutEngine

from crossprobe.figures import plt, save_figure

#: Colour scales of the generalisation heatmaps: recovered accuracy from 0 to 1; AUROC on a
#: diverging map centred at chance (0.5) over [0, 1], so an anti-predictive probe (AUROC near
#: 0: a sign that flips between datasets) stands out instead of looking like chance.
GENERALISATION_SCALES = {
    "recovered_accuracy": {"vmin": 0.0, "vmax": 1.0, "cmap": "viridis"},
    "auroc": {"vmin": 0.0, "vmax": 1.0, "center": 0.5, "cmap": "RdBu_r"},
}


def plot_generalisation(table: pd.DataFrame, model: str, path: str | Path) -> None:
    """Heatmaps of train-dataset (rows) by eval-dataset (columns), per metric, method and layer.

    Laid out by matplotlib's constrained layout, one colour bar per row of panels, so the
    title, panel titles, tick labels and colour bars never overlap (1 to 20 datasets, 1 to 6
    layers: ``tests/test_plots.py``); cell values are printed up to 12 datasets.
    """
    fig = generalisation_figure(table, model)
    save_figure(fig, path)


def generalisation_figure(table: pd.DataFrame, model: str) -> Any:
    """The figure of :func:`plot_generalisation`, not yet saved."""
    methods = sorted(table["method"].unique())
    layers = sorted(table["layer"].unique())
    metrics = [("recovered_accuracy", "recovered accuracy"), ("auroc", "AUROC")]
    datasets = sorted(table["train_dataset"].unique())
    n_rows, n_cols = len(metrics) * len(methods), len(layers)
    label_room = 0.075 * max(len(d) for d in datasets) + 0.6  # inches for tick labels
    side = 0.32 * len(datasets) + 0.8
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(side * n_cols + label_room + 1.2, (side + 0.5) * n_rows + label_room + 0.6),
        squeeze=False,
        layout="constrained",
    )
    annotate = len(datasets) <= 12
    for i, ((metric, label), method) in enumerate([(m, meth) for m in metrics for meth in methods]):
        for j, layer in enumerate(layers):
            sub = table[(table.method == method) & (table.layer == layer)]
            grid = sub.pivot(index="train_dataset", columns="eval_dataset", values=metric)
            grid = grid.reindex(index=datasets, columns=datasets)
            ax = axes[i, j]
            sns.heatmap(
                grid,
                ax=ax,
                annot=annotate,
                fmt=".2f",
                cbar=False,
                annot_kws={"size": 6},
                square=True,
                **GENERALISATION_SCALES[metric],
            )
            ax.set_title(f"{label}\n{method}, layer {layer}", fontsize=8)
            ax.set_xlabel("evaluated on" if i == n_rows - 1 else "", fontsize=8)
            ax.set_ylabel("trained on" if j == 0 else "", fontsize=8)
            ax.set_xticks(np.arange(len(datasets)) + 0.5, datasets, rotation=90, fontsize=6)
            ax.set_yticks(np.arange(len(datasets)) + 0.5, datasets, rotation=0, fontsize=6)
            if j > 0:
                ax.set_yticklabels([])
            if i < n_rows - 1:
                ax.set_xticklabels([])
        bar = fig.colorbar(axes[i, -1].collections[0], ax=list(axes[i]), shrink=0.9)
        bar.ax.tick_params(labelsize=6)
        bar.set_label(label, fontsize=7)
    fig.suptitle(f"Cross-dataset generalisation of probes in {model} (test split)", fontsize=10)
    engine = fig.get_layout_engine()
    assert isinstance(engine, ConstrainedLayoutEngine)
    engine.set(h_pad=0.12, w_pad=0.08)  # inches around every panel
    return fig
