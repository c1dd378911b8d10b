import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from crossprobe.stats import (
    accuracy,
    auroc,
    bootstrap_pearson,
    cosine,
    null_test,
    overstatement,
    pearson,
)


def test_auroc_matches_mann_whitney_and_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + y
    u = sps.mannwhitneyu(s[y == 1], s[y == 0]).statistic
    expected = u / ((y == 1).sum() * (y == 0).sum())
    assert auroc(y, s) == pytest.approx(expected, abs=1e-12)
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(auroc(np.ones(5), np.arange(5)))


def test_accuracy_uses_zero_threshold():
    assert accuracy(np.array([1, 0, 1, 0]), np.array([0.5, -1, -0.1, -2])) == 0.75


def test_pearson_matches_scipy_and_is_exact_on_identity():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=200), rng.normal(size=200)
    assert pearson(x, y) == pytest.approx(sps.pearsonr(x, y).statistic, abs=1e-12)
    assert pearson(x, x) == 1.0
    with pytest.raises(ValueError, match=r"\(200,\) vs \(3,\)"):
        pearson(x, y[:3])


def test_bootstrap_identity_gives_exact_one():
    x = np.random.default_rng(3).normal(size=250)
    assert bootstrap_pearson(x, x) == (1.0, 1.0, 1.0, 250, 250)


def test_bootstrap_resamples_facts_not_wordings():
    """Prompts that are exact copies of a few facts give the interval of those few facts,
    not a tighter one (the known answer of resampling by group)."""
    rng = np.random.default_rng(8)
    xy = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=30)
    copies = np.repeat(xy, 8, axis=0)  # 8 wordings of each of 30 facts
    groups = np.repeat(np.arange(30), 8)
    few = bootstrap_pearson(xy[:, 0], xy[:, 1], n_resamples=4000, seed=1)
    by_fact = bootstrap_pearson(copies[:, 0], copies[:, 1], groups=groups, n_resamples=4000, seed=1)
    naive = bootstrap_pearson(copies[:, 0], copies[:, 1], n_resamples=4000, seed=1)
    assert by_fact.rho == pytest.approx(few.rho) and by_fact.n_groups == 30 and by_fact.n == 240
    width = by_fact.ci_high - by_fact.ci_low
    assert width == pytest.approx(few.ci_high - few.ci_low, rel=0.1)
    assert width > 2.0 * (naive.ci_high - naive.ci_low)
    # Each prompt its own group is the prompt bootstrap.
    same = bootstrap_pearson(xy[:, 0], xy[:, 1], groups=np.arange(30), seed=1)
    assert same == bootstrap_pearson(xy[:, 0], xy[:, 1], seed=1)


def test_bootstrap_is_deterministic_and_brackets_rho():
    rng = np.random.default_rng(4)
    x = rng.normal(size=300)
    y = 0.5 * x + rng.normal(size=300)
    a, b = bootstrap_pearson(x, y, seed=7), bootstrap_pearson(x, y, seed=7)
    assert a == b
    assert a.ci_low < a.rho < a.ci_high


def test_bootstrap_coverage_is_95_percent():
    """Percentile CIs cover the true rho in 95% +- 3% of simulated bivariate-normal samples."""
    rho, n, reps = 0.5, 200, 500
    cov = np.array([[1, rho], [rho, 1]])
    rng = np.random.default_rng(5)
    hits = 0
    for i in range(reps):
        xy = rng.multivariate_normal([0, 0], cov, size=n)
        r = bootstrap_pearson(xy[:, 0], xy[:, 1], n_resamples=1000, seed=i)
        hits += r.ci_low <= rho <= r.ci_high
    assert abs(hits / reps - 0.95) <= 0.03


def test_null_test_known_answer_and_centred_null():
    res = null_test(0.5, [0.1, 0.2, 0.6, 0.7])
    assert res.p_value == pytest.approx(3 / 5)
    assert res.p95 == pytest.approx(np.percentile([0.1, 0.2, 0.6, 0.7], 95))
    rng = np.random.default_rng(6)
    x = rng.normal(size=300)
    null = [pearson(x, rng.normal(size=300)) for _ in range(200)]
    assert abs(np.mean(null)) < 0.02


def test_cosine_and_overstatement_known_answers():
    assert cosine(np.array([1.0, 0]), np.array([1.0, 1.0])) == pytest.approx(2**-0.5)
    assert np.isnan(cosine(np.zeros(2), np.ones(2)))
    o = overstatement(np.array([0.965, 0.965, 0.965]), np.array([0.616, 0.616, 0.616]))
    assert o.overstatement == pytest.approx((0.965 - 0.616) / 0.965)
    assert o.cells == 3
