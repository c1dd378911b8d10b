"""Scores and statistics: AUROC, accuracy, Pearson_CE with bootstrap CIs, random-direction nulls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from jaxtyping import Float, Int
from sklearn.metrics import roc_auc_score


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for binary `labels` (NaN with a single class)."""
    labels = np.asarray(labels)
    if labels.size == 0 or np.unique(labels).size < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    """Share of rows whose `scores > 0` agrees with the binary label."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return float("nan")
    return float(np.mean((np.asarray(scores) > 0) == (labels > 0.5)))


def _pearson_last_axis(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    denom = np.sqrt((xc * xc).sum(axis=axis) * (yc * yc).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=axis) / denom
    return np.clip(r, -1.0, 1.0)


def pearson(x: Float[np.ndarray, " n"], y: Float[np.ndarray, " n"]) -> float:
    """Pearson correlation; exactly 1 for identical vectors, NaN for a constant one."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"pearson: shapes differ, {x.shape} vs {y.shape}")
    if np.array_equal(x, y) and np.ptp(x) > 0:
        return 1.0
    return float(_pearson_last_axis(x, y))


class CorrelationResult(NamedTuple):
    """Pearson_CE of one cell with its percentile bootstrap interval."""

    rho: float
    ci_low: float
    ci_high: float
    n: int
    n_groups: int = 0
    """Independent units the interval resampled (facts; prompts where there are no groups)."""


def group_codes(groups: np.ndarray | None, n: int) -> Int[np.ndarray, " n"]:
    """Each row's group as an integer code 0..G-1 (every row its own group without ``groups``)."""
    if groups is None:
        return np.arange(n)
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ValueError(f"groups of shape {g.shape} do not fit {n} rows")
    return np.unique(g, return_inverse=True)[1].ravel()


def group_weights(
    codes: Int[np.ndarray, " n"], n_resamples: int, seed: int
) -> Float[np.ndarray, "resample n"]:
    """Row weights of a cluster bootstrap: draw the groups with replacement, and give each row
    the number of times its group was drawn (a row of a group drawn twice counts twice).

    A weighted statistic with these weights equals the statistic on the resampled rows, so
    every wording of one fact moves together and the interval counts facts, not wordings.
    """
    n_groups = int(codes.max()) + 1 if codes.size else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_resamples, n_groups))
    counts = np.zeros((n_resamples, n_groups))
    np.add.at(counts, (np.arange(n_resamples)[:, None], draws), 1.0)
    return counts[:, codes]


def _weighted_pearson(
    x: Float[np.ndarray, " n"], y: Float[np.ndarray, " n"], w: Float[np.ndarray, "r n"]
) -> Float[np.ndarray, " r"]:
    total = w.sum(axis=1, keepdims=True)
    xc = x[None, :] - (w @ x)[:, None] / total
    yc = y[None, :] - (w @ y)[:, None] / total
    denom = np.sqrt((w * xc * xc).sum(axis=1) * (w * yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (w * xc * yc).sum(axis=1) / denom
    return np.clip(r, -1.0, 1.0)


def _percentile_interval(values: np.ndarray, ci: float) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(v, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)


def bootstrap_pearson(
    x: Float[np.ndarray, " n"],
    y: Float[np.ndarray, " n"],
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> CorrelationResult:
    """Pearson's rho with a percentile bootstrap CI that resamples ``groups`` (facts) jointly
    for both vectors; without ``groups`` every prompt is its own group.

    Prompts that state one fact in several wordings are not independent: resampling them one
    by one gives an interval about as narrow as if every wording were a new fact.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rho = pearson(x, y)
    n = int(x.size)
    codes = group_codes(groups, n)
    n_groups = int(np.unique(codes).size)
    if n < 3 or n_groups < 3 or not np.isfinite(rho):
        return CorrelationResult(rho, float("nan"), float("nan"), n, n_groups)
    if np.array_equal(x, y):
        return CorrelationResult(1.0, 1.0, 1.0, n, n_groups)
    boots = _weighted_pearson(x, y, group_weights(codes, n_resamples, seed))
    low, high = _percentile_interval(boots, ci)
    return CorrelationResult(rho, low, high, n, n_groups)


def bootstrap_mean(
    values: Float[np.ndarray, " n"],
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``, resampling ``groups``."""
    v = np.asarray(values, dtype=np.float64)
    w = group_weights(group_codes(groups, v.size), n_resamples, seed)
    return _percentile_interval((w @ v) / w.sum(axis=1), ci)


def group_means(values: Float[np.ndarray, " n"], groups: np.ndarray | None) -> np.ndarray:
    """The mean of ``values`` within each group (each value alone without ``groups``)."""
    v = np.asarray(values, dtype=np.float64)
    codes = group_codes(groups, v.size)
    sums = np.bincount(codes, weights=v)
    return sums / np.bincount(codes)


class NullResult(NamedTuple):
    """Where an observed rho falls in the random-direction null."""

    p95: float
    p_value: float
    k: int


def null_test(rho: float, null_rhos: Sequence[float] | np.ndarray) -> NullResult:
    """The null's 95th percentile and the permutation p-value (1 + #{null >= rho}) / (k + 1)."""
    null = np.asarray(null_rhos, dtype=np.float64)
    null = null[np.isfinite(null)]
    k = int(null.size)
    if k == 0 or not np.isfinite(rho):
        return NullResult(float("nan"), float("nan"), k)
    return NullResult(float(np.percentile(null, 95)), float((1 + np.sum(null >= rho)) / (k + 1)), k)


def effect_ratio(dm: Float[np.ndarray, " n"], dm_null: Float[np.ndarray, "k n"]) -> float:
    """How many times a typical random direction's effect an ablation moves the margin.

    RMS over prompts of ``dm`` divided by the median, over the k random directions, of the
    RMS of their effects on the same prompts (nan without a finite, non-zero null).
    """
    null = np.asarray(dm_null, dtype=np.float64)
    if null.ndim != 2 or null.shape[0] == 0:
        return float("nan")
    typical = float(np.median(np.sqrt(np.mean(null**2, axis=1))))
    if not np.isfinite(typical) or typical == 0.0:
        return float("nan")
    return float(np.sqrt(np.mean(np.asarray(dm, dtype=np.float64) ** 2)) / typical)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity; NaN when either vector is zero or the widths differ."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        return float("nan")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    return float(np.clip(a @ b / (na * nb), -1.0, 1.0))


class Overstatement(NamedTuple):
    """How much the cosine baseline overstates causal agreement over a run's cells."""

    median_cosine: float
    median_rho: float
    overstatement: float
    cells: int


def overstatement(cosines: np.ndarray, rhos: np.ndarray) -> Overstatement:
    """(median cosine - median rho) / median cosine over cells where both are finite."""
    c, r = np.asarray(cosines, dtype=np.float64), np.asarray(rhos, dtype=np.float64)
    keep = np.isfinite(c) & np.isfinite(r)
    if not keep.any():
        return Overstatement(float("nan"), float("nan"), float("nan"), 0)
    mc, mr = float(np.median(c[keep])), float(np.median(r[keep]))
    over = (mc - mr) / mc if mc != 0 else float("nan")
    return Overstatement(mc, mr, over, int(keep.sum()))
