"""Figures: generalisation heatmaps, the transfer matrix and its diagnostics (PNG and PDF)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from crossprobe.io import atomic_path  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Save ``fig`` as ``path`` (PNG) and beside it as PDF, atomically, then close it."""
    path = Path(path)
    for target in (path, path.with_suffix(".pdf")):
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=target.suffix[1:], dpi=150, bbox_inches="tight")
    plt.close(fig)


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


BAND_NOTE = "bands: strong >= 0.70, partial 0.40-0.70, weak < 0.40"


def plot_transfer_matrix(matrix: pd.DataFrame, models: list[str], path: str | Path) -> None:
    """Source rows, target columns: mean Pearson_CE with the probe count n in every cell, how
    many of the n beat their null, and how many probes the map did not carry."""
    import numpy as np

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


def plot_regression(table: pd.DataFrame, heldout: pd.DataFrame, path: str | Path) -> None:
    """Left: each ridge probe's test R² by layer (one line per model, dataset and target).
    Right: held-one-dataset-out standard R² against mean-adjusted R², one point per held-out
    dataset and layer (the diagonal: no offset between the datasets' means)."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.6))
    # One colour per model, one line style per dataset and target, one marker per layer rank:
    # a run with many models and targets stays legible.
    models = sorted(set(table["model"]) | (set(heldout["model"]) if len(heldout) else set()))
    colour = dict(zip(models, sns.color_palette("tab10", max(len(models), 1)), strict=False))
    styles = ["-", "--", ":", "-."]
    probes = sorted({(d, t) for d, t in zip(table["dataset"], table["target"], strict=True)})
    style = {key: styles[i % len(styles)] for i, key in enumerate(probes)}
    markers = ["o", "s", "^", "D", "v", "P"]
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
    fig.tight_layout()
    save_figure(fig, path)


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
