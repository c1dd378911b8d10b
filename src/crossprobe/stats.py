"""Scores and statistics: AUROC, accuracy, Pearson_CE with bootstrap CIs, random-direction nulls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from jaxtyping import Float
from scipy import stats as sps
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


def bootstrap_pearson(
    x: Float[np.ndarray, " n"],
    y: Float[np.ndarray, " n"],
    *,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> CorrelationResult:
    """Pearson's rho with a percentile bootstrap CI, resampling prompt ids jointly (paired)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rho = pearson(x, y)
    n = int(x.size)
    if n < 3 or not np.isfinite(rho):
        return CorrelationResult(rho, float("nan"), float("nan"), n)
    if np.array_equal(x, y):
        return CorrelationResult(1.0, 1.0, 1.0, n)
    res = sps.bootstrap(
        (x, y),
        _pearson_last_axis,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=ci,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = res.confidence_interval
    return CorrelationResult(rho, float(low), float(high), n)


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
