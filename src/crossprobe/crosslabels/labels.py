"""Whose internals, whose labels: probes on model A's activations for model B's labels (AB).

If a model's activations carry its own answers beyond what the statement's text determines, a
probe on A's activations predicts A's labels (AA) better than B's (AB). The labels are a model's
own: its answer margin on each `test` row (from its self-ablation job) or its self-rating. Every
(activations, labels) cell is scored on the same rows, paired by row hash, with out-of-fold
predictions of a grouped k-fold cross-validation over the `test` rows (a fact's statements share
a fold, as they share a split): a ridge probe (standardised, its penalty chosen by a grouped
k-fold inside the training folds alone) per layer and label. Definitions: docs/definitions.md,
"AB against AA".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from jaxtyping import Float

from crossprobe.errors import ConfigError
from crossprobe.probes import standard_scale
from crossprobe.regression import DEFAULT_ALPHAS, regression_scores

LABEL_KINDS = ("margin", "self_rating")

COLUMNS = [
    "activations",
    "labels",
    "dataset",
    "label",
    "layer_position",
    "layer",
    "own",
    "n",
    "folds",
    "r2",
    "pearson",
    "spearman",
    "auroc",
]


def label_series(kind: str, frame: pd.DataFrame) -> pd.Series:
    """One model's labels of one kind, indexed by row hash: the answer margin (a model's
    ``answer.parquet``, `test` rows) or the self-rating (its ratings, `test` rows)."""
    if kind == "margin":
        values = frame["margin"]
    elif kind == "self_rating":
        frame = frame[frame["split"] == "test"]
        values = frame["rating"]
    else:
        raise ConfigError(f"crosslabels.labels: unknown label kind {kind!r}; use {LABEL_KINDS}")
    return pd.Series(values.to_numpy(np.float64), index=frame["row_hash"].to_numpy(), name=kind)


def common_rows(row_hash: np.ndarray, labels: Mapping[Any, pd.Series]) -> np.ndarray:
    """Indices into ``row_hash`` of the rows that every label series covers, in store order."""
    keep = np.ones(len(row_hash), dtype=bool)
    for series in labels.values():
        keep &= np.isin(row_hash, series.index.to_numpy())
    return np.flatnonzero(keep)


def _ridge_path(
    x: np.ndarray, y: np.ndarray, x_new: np.ndarray, alphas: Sequence[float]
) -> np.ndarray:
    """Ridge predictions ``[alpha, row, label]`` for ``x_new``, fit on ``(x, y)`` with the
    features standardised and an unpenalised intercept (one SVD for every penalty)."""
    mean, scale = x.mean(axis=0), standard_scale(x)  # the σ floor of logreg and ridge
    xs, xn = (x - mean) / scale, (x_new - mean) / scale
    y_mean = y.mean(axis=0)
    u, sv, vt = np.linalg.svd(xs, full_matrices=False)
    uty = u.T @ (y - y_mean)
    proj = xn @ vt.T
    out = np.empty((len(alphas), len(x_new), y.shape[1]))
    for i, alpha in enumerate(alphas):
        out[i] = proj @ ((sv / (sv**2 + alpha))[:, None] * uty) + y_mean
    return out


def grouped_ridge(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    x_new: np.ndarray,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    inner_folds: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions ``[row, label]`` for ``x_new`` of a ridge probe fit on ``(x, y)``, each
    label's penalty chosen by a grouped k-fold inside these rows (a fact's statements never on
    both sides: leave-one-out would let a statement's twin choose too small a penalty), and the
    chosen penalties."""
    from sklearn.model_selection import GroupKFold

    k = min(inner_folds, len(np.unique(groups)))
    sse = np.zeros((len(alphas), y.shape[1]))
    for tr, te in GroupKFold(n_splits=k).split(x, groups=groups):
        sse += ((_ridge_path(x[tr], y[tr], x[te], alphas) - y[te]) ** 2).sum(axis=1)
    best = sse.argmin(axis=0)
    path = _ridge_path(x, y, x_new, alphas)
    return path[best, :, np.arange(y.shape[1])].T, np.asarray(alphas)[best]


def out_of_fold(
    x: Float[np.ndarray, "row d"],
    y: Float[np.ndarray, "row label"],
    groups: np.ndarray,
    *,
    folds: int,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
) -> Float[np.ndarray, "row label"]:
    """Each row's prediction by a ridge probe fit on the other folds of a grouped k-fold over
    the rows (:func:`grouped_ridge`: the penalty chosen inside the training folds alone)."""
    from sklearn.model_selection import GroupKFold

    n_groups = len(np.unique(groups))
    if n_groups < folds:
        raise ConfigError(
            f"crosslabels.folds={folds} but only {n_groups} groups of rows; lower "
            "crosslabels.folds or add rows"
        )
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    pred = np.empty_like(y)
    for tr, te in GroupKFold(n_splits=folds).split(x, groups=groups):
        pred[te], _ = grouped_ridge(x[tr], y[tr], groups[tr], x[te], alphas=alphas)
    return pred


def _auroc(kind: str, y: np.ndarray, pred: np.ndarray) -> float:
    """For an answer margin: the AUROC of the prediction for the model's answer (margin > 0);
    NaN where the model gives one answer on fewer than 2 rows."""
    from sklearn.metrics import roc_auc_score

    if kind != "margin":
        return float("nan")
    answer = y > 0
    if min(answer.sum(), (~answer).sum()) < 2:
        return float("nan")
    return float(roc_auc_score(answer, pred))


def crosslabel_rows(
    activations: str,
    dataset: str,
    layers_by_position: Sequence[int],
    x_by_layer: Mapping[int, np.ndarray],
    groups: np.ndarray,
    labels: Mapping[tuple[str, str], np.ndarray],
    *,
    folds: int,
) -> list[dict[str, Any]]:
    """One row per (labels model, label kind, layer position): the out-of-fold scores of probes
    on ``activations``' rows ``x_by_layer[layer]`` for each ``labels[(kind, model)]``."""
    keys = sorted(labels)
    if not keys:
        return []
    y = np.stack([np.asarray(labels[k], np.float64) for k in keys], axis=1)
    preds = {
        layer: out_of_fold(x, y, groups, folds=folds) for layer, x in sorted(x_by_layer.items())
    }
    rows = []
    for position, layer in enumerate(layers_by_position):
        pred = preds[layer]
        for j, (kind, labels_model) in enumerate(keys):
            scores = regression_scores(y[:, j], pred[:, j], np.zeros(len(y)))
            rows.append(
                {
                    "activations": activations,
                    "labels": labels_model,
                    "dataset": dataset,
                    "label": kind,
                    "layer_position": position,
                    "layer": int(layer),
                    "own": activations == labels_model,
                    "n": len(y),
                    "folds": folds,
                    "r2": scores["r2"],
                    "pearson": scores["pearson"],
                    "spearman": scores["spearman"],
                    "auroc": _auroc(kind, y[:, j], pred[:, j]),
                }
            )
    return rows


def own_against_others(table: pd.DataFrame) -> pd.DataFrame:
    """Per labels model, dataset, label kind and layer position: the R² of the probe on the
    labels model's own activations (AA) against the best and the mean over the other models'
    activations (AB; text baselines excluded) and over the text baselines."""
    out = []
    keys = ["labels", "dataset", "label", "layer_position"]
    models = set(table["labels"])
    for key, sub in table.groupby(keys):
        own = sub[sub["own"]]
        others = sub[~sub["own"] & sub["activations"].isin(models)]
        text = sub[~sub["activations"].isin(models)]
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "r2_own": float(own["r2"].iloc[0]) if len(own) else float("nan"),
                "r2_others_max": float(others["r2"].max()) if len(others) else float("nan"),
                "r2_others_mean": float(others["r2"].mean()) if len(others) else float("nan"),
                "r2_text_max": float(text["r2"].max()) if len(text) else float("nan"),
            }
        )
    return pd.DataFrame(out)
