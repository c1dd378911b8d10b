"""Figures of the transfer study: the transfer matrix, its profiles, cosine against rho,
the nulls and the answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from crossprobe.figures import plt, save_figure

BAND_NOTE = "bands: strong >= 0.70, partial 0.40-0.70, weak < 0.40"


def plot_transfer_matrix(matrix: pd.DataFrame, models: list[str], path: str | Path) -> None:
    """Source rows, target columns: mean Pearson_CE with the probe count n in every cell, how
    many of the n beat their null, and how many probes the map did not carry."""

    grid = matrix.pivot(index="source", columns="target", values="mean_pearson_ce")
    grid = grid.reindex(index=models, columns=models)
    counts = matrix.pivot(index="source", columns="target", values="n").reindex(
        index=models, columns=models
    )
    bands = matrix.pivot(index="source", columns="target", values="band").reindex(
        index=models, columns=models
    )
    beats = matrix.pivot(index="source", columns="target", values="beats_null").reindex(
        index=models, columns=models
    )
    dropped = matrix.pivot(index="source", columns="target", values="not_carried").reindex(
        index=models, columns=models
    )
    labels = np.empty(grid.shape, dtype=object)
    for i, s in enumerate(models):
        for j, t in enumerate(models):
            v, n, b = grid.loc[s, t], counts.loc[s, t], bands.loc[s, t]
            gone = int(dropped.loc[s, t]) if np.isfinite(dropped.loc[s, t]) else 0
            note = f"\n{gone} not carried" if gone else ""
            if s == t:
                labels[i, j] = "1.00\nidentity"
            elif not np.isfinite(v):
                labels[i, j] = "no data" + note
            else:
                labels[i, j] = f"{v:.2f}\n{b}\nn={int(n)}, {int(beats.loc[s, t])} > null{note}"
    side = 1.3 * len(models) + 2.5
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    shown = grid.copy()
    for m in models:
        shown.loc[m, m] = np.nan  # the diagonal is the identity, not a measurement
    sns.heatmap(
        shown,
        ax=ax,
        annot=labels,
        fmt="",
        vmin=-0.2,
        vmax=1.0,
        cmap="RdYlGn",
        linewidths=0.5,
        linecolor="white",
        cbar_kws={"label": "mean Pearson_CE over probes"},
        annot_kws={"size": 8},
    )
    for k in range(len(models)):
        ax.add_patch(plt.Rectangle((k, k), 1, 1, fill=True, color="0.85", lw=0))
        ax.text(k + 0.5, k + 0.5, "1.00\nidentity", ha="center", va="center", fontsize=8)
    ax.set_xlabel("target model")
    ax.set_ylabel("source model")
    ax.set_title(f"Causal transfer of probes (Pearson_CE)\n{BAND_NOTE}", fontsize=10)
    save_figure(fig, path)


def plot_profiles(table: pd.DataFrame, path: str | Path) -> None:
    """Per-probe transfer profiles: rho with its CI for every target, one panel per source;
    a black ring marks a cell that beats its null (rho and effect size)."""
    off = table[table.source != table.target].copy()
    off["probe"] = off["dataset"] + "/" + off["method"] + "/p" + off["layer_position"].astype(str)
    sources = sorted(off["source"].unique())
    fig, axes = plt.subplots(
        1, max(1, len(sources)), figsize=(4.5 * max(1, len(sources)), 4.5), squeeze=False
    )
    for ax, s in zip(axes[0], sources, strict=False):
        sub = off[off.source == s]
        targets = sorted(sub["target"].unique())
        for k, t in enumerate(targets):
            st = sub[sub.target == t].sort_values("probe")
            y = range(len(st))
            ys = [v + 0.12 * (k - len(targets) / 2) for v in y]
            ax.errorbar(
                st["pearson_ce"],
                ys,
                xerr=[st["pearson_ce"] - st["ci_low"], st["ci_high"] - st["pearson_ce"]],
                fmt="o",
                ms=3,
                lw=0.8,
                label=t,
            )
            beats = st["beats_null"].astype(bool).to_numpy()
            ax.scatter(
                st["pearson_ce"][beats],
                [v for v, b in zip(ys, beats, strict=True) if b],
                s=40,
                facecolors="none",
                edgecolors="k",
                lw=0.8,
                label="beats its null" if k == 0 else None,
            )
            ax.set_yticks(list(y), st["probe"], fontsize=6)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_xlim(-1, 1)
        ax.set_xlabel("Pearson_CE (95% bootstrap CI)")
        ax.set_title(f"source {s}", fontsize=9)
        ax.legend(title="target", fontsize=7, title_fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def plot_cosine_vs_rho(table: pd.DataFrame, path: str | Path) -> None:
    """Cosine baseline against Pearson_CE per off-diagonal cell, with the y = x line."""
    off = table[table.source != table.target]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    sns.scatterplot(data=off, x="cosine", y="pearson_ce", hue="target", style="method", ax=ax, s=25)
    ax.plot([-1, 1], [-1, 1], color="0.4", lw=1, ls="--", label="y = x")
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_xlabel("cosine(carried direction, target's own probe)")
    ax.set_ylabel("Pearson_CE")
    ax.set_title("Cosine baseline vs causal agreement", fontsize=10)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_null(table: pd.DataFrame, nulls: pd.DataFrame, path: str | Path) -> None:
    """Random-direction null rhos (pooled per target) against the observed rhos."""
    off = table[table.source != table.target]
    null_off = nulls[nulls.source != nulls.target]
    targets = sorted(off["target"].unique())
    fig, axes = plt.subplots(
        1, max(1, len(targets)), figsize=(4 * max(1, len(targets)), 3.5), squeeze=False
    )
    for ax, t in zip(axes[0], targets, strict=False):
        sns.histplot(
            null_off[null_off.target == t]["rho"],
            ax=ax,
            color="0.6",
            stat="density",
            bins=30,
            label="random directions",
        )
        sns.histplot(
            off[off.target == t]["pearson_ce"],
            ax=ax,
            color="C3",
            stat="density",
            bins=15,
            alpha=0.6,
            label="carried probes",
        )
        ax.set_xlim(-1, 1)
        ax.set_xlabel("Pearson_CE")
        ax.set_title(f"target {t}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def plot_answers(answers: pd.DataFrame, table: pd.DataFrame, path: str | Path) -> None:
    """Each model's own answer AUROC per dataset beside the best AUROC of its own probes.

    A probe can read a feature (AUROC near 1) that the model's answer does not use (answer
    AUROC near 0.5); only where both are high does a causal effect on the margin say much.
    """
    own = table[table.source == table.target]
    best = own.groupby(["source", "dataset"])["source_auroc"].max().rename("probe").reset_index()
    merged = answers.merge(
        best, left_on=["model", "dataset"], right_on=["source", "dataset"], how="left"
    )
    long = merged.melt(
        id_vars=["model", "dataset"],
        value_vars=["answer_auroc", "probe"],
        var_name="what",
        value_name="auroc",
    ).replace({"what": {"answer_auroc": "model's own answer", "probe": "best own probe"}})
    datasets = sorted(answers["dataset"].unique())
    width = max(4.0, 1.1 * answers["model"].nunique() + 1.5)
    fig, axes = plt.subplots(
        1,
        len(datasets),
        figsize=(width * len(datasets), 3.6),
        squeeze=False,
    )
    for ax, d in zip(axes[0], datasets, strict=True):
        sns.barplot(data=long[long.dataset == d], x="model", y="auroc", hue="what", ax=ax)
        ax.axhline(0.5, color="0.4", lw=1, ls="--")
        ax.set_ylim(0, 1.02)
        ax.set_title(d, fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("AUROC on test")
        ax.tick_params(axis="x", rotation=30, labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Does the model answer with what its probes read?", fontsize=10)
    save_figure(fig, path)
