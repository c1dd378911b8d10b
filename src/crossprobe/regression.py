"""Regression probes: ridge on real-valued targets, and held-one-dataset-out evaluation.

A target is a real-valued column of a dataset's table (``datasets.<name>.targets``, e.g.
``larger_than``'s ``diff``). A ``ridge`` probe is fitted per (model, dataset, target, layer) on
the `train` rows: standardised activations (the σ floor of ``logreg``), the ridge penalty
chosen by cross-validation on `train` alone (scikit-learn's ``RidgeCV`` over five folds
grouped by fact), mapped back to raw space as ``w / σ``. Its direction is its weight, so it is
saved, carried and ablated like every other probe.

Held one dataset out: for every target that several datasets share, a probe is fitted on the
pooled `train` rows of all but one and scored on the held-out dataset's `test` rows. Standard
R² compares predictions with the held-out targets as they are; **mean-adjusted R²** first
centres predictions and targets each by the held-out dataset's own means, so a probe that ranks
well but carries the training datasets' mean is not charged for the offset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from jaxtyping import Float
from scipy import stats as sps

from crossprobe.errors import ConfigError
from crossprobe.probes import Probe, standard_scale

#: The ridge penalties cross-validated on `train` (on standardised activations).
#: Folds (grouped by fact) that choose a ridge probe's penalty.
CV_FOLDS = 5

DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-4, 5, 19))

SCORE_COLUMNS = ["n", "r2", "r2_mean_adjusted", "pearson", "spearman"]
PROBE_COLUMNS = [
    "model",
    "dataset",
    "target",
    "column",
    "layer",
    "alpha",
    "n_train",
    *SCORE_COLUMNS,
]
HELDOUT_COLUMNS = [
    "model",
    "target",
    "layer",
    "scheme",
    "train_datasets",
    "test_datasets",
    *SCORE_COLUMNS,
]


def fit_ridge(
    x: Float[np.ndarray, "row d"],
    y: Float[np.ndarray, " row"],
    layer: int,
    *,
    groups: np.ndarray | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    folds: int = CV_FOLDS,
) -> Probe:
    """Ridge regression of ``y`` on standardised ``x``, the penalty chosen by cross-validation
    on these rows only; the probe predicts ``weight · x + bias`` in the target's units.

    With ``groups`` (each row's fact) the folds are grouped (scikit-learn's ``GroupKFold``): a
    fact's wordings never sit on both sides of a fold, where leave-one-out would let a
    statement's twin choose too small a penalty. Without, leave-one-out.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"ridge fit: activations {x.shape} and targets {y.shape} do not match")
    if not np.isfinite(y).all():
        raise ConfigError("ridge fit: the targets hold NaN or inf; fix the target column")
    if x.shape[0] < 3 or np.ptp(y) == 0:
        raise ConfigError(
            f"ridge fit: {x.shape[0]} train rows with {np.unique(y).size} distinct target "
            "value(s); a regression probe needs at least 3 rows and a non-constant target"
        )
    mean, scale = x.mean(axis=0), standard_scale(x)
    cv = None
    if groups is not None:
        k = min(folds, int(np.unique(groups).size))
        if k >= 2:
            cv = list(GroupKFold(n_splits=k).split(x, y, groups=np.asarray(groups)))
    reg = RidgeCV(alphas=list(alphas), cv=cv).fit((x - mean) / scale, y)
    weight = np.asarray(reg.coef_, dtype=np.float64) / scale
    bias = float(reg.intercept_ - weight @ mean)
    probe = Probe("ridge", layer, weight, weight, bias, mean, scale)
    return type(probe)(**{**probe.__dict__, "provenance": {"alpha": float(reg.alpha_)}})


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination ``1 − SS_res / SS_tot`` (scikit-learn's ``r2_score``)."""
    from sklearn.metrics import r2_score

    return float(r2_score(y, pred)) if len(y) > 1 and np.ptp(y) > 0 else float("nan")


def mean_adjusted_r2(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> float:
    """R² after centring targets and predictions each by their own group's (dataset's) mean."""
    y = np.asarray(y, dtype=np.float64).copy()
    pred = np.asarray(pred, dtype=np.float64).copy()
    groups = np.asarray(groups)
    for g in np.unique(groups):
        m = groups == g
        y[m] -= y[m].mean()
        pred[m] -= pred[m].mean()
    return r2(y, pred)


def regression_scores(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """R², mean-adjusted R², Pearson r and Spearman ρ of ``pred`` against ``y``."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    varied = len(y) > 2 and np.ptp(y) > 0 and np.ptp(pred) > 0
    return {
        "n": len(y),
        "r2": r2(y, pred),
        "r2_mean_adjusted": mean_adjusted_r2(y, pred, groups),
        "pearson": float(sps.pearsonr(y, pred)[0]) if varied else float("nan"),
        "spearman": float(sps.spearmanr(y, pred)[0]) if varied else float("nan"),
    }


Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""(train activations, train targets, test activations, test targets, train facts) of one
dataset; the facts (split keys) group the folds that choose the penalty."""


def heldout_rows(
    model: str,
    target: str,
    layer: int,
    data: Mapping[str, Split],
    *,
    train_k: Sequence[int] = (),
    alphas: Sequence[float] = DEFAULT_ALPHAS,
) -> list[dict[str, object]]:
    """Held-one-dataset-out (scheme ``hold_one_out``) and, for each k in ``train_k``, every
    train-k/test-rest split (scheme ``train_<k>``) of the datasets in ``data``."""
    names = sorted(data)
    schemes: list[tuple[str, tuple[str, ...]]] = []
    if len(names) >= 2:
        schemes += [("hold_one_out", tuple(n for n in names if n != h)) for h in names]
    for k in train_k:
        if 1 <= k < len(names) and k != len(names) - 1:
            schemes += [(f"train_{k}", c) for c in combinations(names, k)]
    rows: list[dict[str, object]] = []
    for scheme, train in schemes:
        test = [n for n in names if n not in train]
        probe = fit_ridge(
            np.concatenate([data[n][0] for n in train]),
            np.concatenate([data[n][1] for n in train]),
            layer,
            groups=np.concatenate([[f"{n}:{g}" for g in data[n][4]] for n in train]),
            alphas=alphas,
        )
        x = np.concatenate([data[n][2] for n in test])
        y = np.concatenate([data[n][3] for n in test])
        groups = np.concatenate([np.full(len(data[n][3]), n) for n in test])
        rows.append(
            {
                "model": model,
                "target": target,
                "layer": layer,
                "scheme": scheme,
                "train_datasets": "+".join(train),
                "test_datasets": "+".join(test),
                **regression_scores(y, probe.score(x), groups),
            }
        )
    return rows


def heldout_table(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=HELDOUT_COLUMNS)
