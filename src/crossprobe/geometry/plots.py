"""Figures of the condition-geometry study."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from crossprobe.figures import plt, save_figure


def plot_geometry(
    geometry: pd.DataFrame, model: str, layer_position: int, path: str | Path
) -> None:
    """Clustered heatmap (average linkage on 1 − cosine) of one model's condition cosines at
    one layer position."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    sub = geometry[(geometry["model"] == model) & (geometry["layer_position"] == layer_position)]
    order = list(dict.fromkeys(sub["condition_a"]))
    grid = sub.pivot(index="condition_a", columns="condition_b", values="cosine")
    grid = grid.loc[order, order]
    dist = squareform((1.0 - grid.to_numpy()).clip(min=0.0), checks=False)
    link = linkage(dist, method="average")
    side = 0.42 * len(order) + 2.5
    g = sns.clustermap(
        grid, row_linkage=link, col_linkage=link, cmap="RdBu_r", vmin=-1, vmax=1, center=0,
        annot=len(order) <= 16, fmt=".2f", annot_kws={"size": 6}, figsize=(side, side),
        cbar_kws={"label": "cosine"},
    )  # fmt: skip
    g.ax_heatmap.set_xlabel("")
    g.ax_heatmap.set_ylabel("")
    layer = int(sub["layer"].iloc[0])
    g.figure.suptitle(
        f"{model}, layer {layer}: cosines of centred, normalised condition centroids", y=1.02
    )
    save_figure(g.figure, path)


def plot_geometry_behaviour(pairs: pd.DataFrame, table: pd.DataFrame, path: str | Path) -> None:
    """Cosine to the source against behaviour, one row of panels per model (its own geometry
    and its own behaviour), one panel per layer, one colour per source with its ρ."""
    mask = (pairs["geometry_model"] == pairs["behaviour_model"]) & (pairs["via"] == "own")
    own = pairs[mask]
    tmask = (table["geometry_model"] == table["behaviour_model"]) & (table["via"] == "own")
    stats_ = table[tmask].set_index(["geometry_model", "layer_position", "source"])
    models = list(dict.fromkeys(own["geometry_model"]))
    positions = sorted(own["layer_position"].unique())
    sources = list(dict.fromkeys(own["source"]))
    colours = dict(zip(sources, sns.color_palette("tab20", len(sources)), strict=True))
    fig, axes = plt.subplots(
        max(1, len(models)), max(1, len(positions)),
        figsize=(4.2 * max(1, len(positions)), 3.8 * max(1, len(models))), squeeze=False,
    )  # fmt: skip
    for i, m in enumerate(models):
        for j, pos in enumerate(positions):
            ax = axes[i][j]
            sub = own[(own["geometry_model"] == m) & (own["layer_position"] == pos)]
            for s, ss in sub.groupby("source", sort=False):
                rho = stats_.loc[(m, pos, s), "spearman"]
                ax.scatter(ss["cosine"], ss["value"], s=10, color=colours[s],
                           label=f"{s} ρ={rho:.2f}")  # fmt: skip
            pooled = stats_.loc[(m, pos, "pooled"), "spearman"]
            layer = int(sub["layer"].iloc[0]) if len(sub) else pos
            ax.set_title(f"{m}, layer {layer}: pooled ρ={pooled:.2f}", fontsize=9)
            ax.set_xlabel("cosine to source")
            ax.set_ylabel("behaviour (source, condition)")
            ax.legend(fontsize=5, ncol=2, loc="best", frameon=False)
    fig.tight_layout()
    save_figure(fig, path)
