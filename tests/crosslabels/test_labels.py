"""AB against AA: probes on one model's activations for another model's labels; known answers."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from crossprobe.crosslabels.labels import (
    common_rows,
    crosslabel_rows,
    grouped_ridge,
    label_series,
    out_of_fold,
    own_against_others,
)
from crossprobe.errors import ConfigError


def _two_models(n: int = 300, d: int = 24, seed: int = 0):
    """Two models whose activations each carry their own label linearly, plus noise, and whose
    labels are independent of each other."""
    rng = np.random.default_rng(seed)
    ya, yb = rng.standard_normal(n), rng.standard_normal(n)
    wa, wb = rng.standard_normal(d), rng.standard_normal(d)
    xa = rng.standard_normal((n, d)) + np.outer(ya, wa)
    xb = rng.standard_normal((n, d)) + np.outer(yb, wb)
    groups = np.repeat(np.arange(n // 2), 2)  # two statements per fact, as in the built-ins
    return {"a": xa, "b": xb}, {("margin", "a"): ya, ("margin", "b"): yb}, groups


def test_own_labels_beat_another_models_labels():
    xs, labels, groups = _two_models()
    rows = []
    for name, x in xs.items():
        rows += crosslabel_rows(name, "toy", [3], {3: x}, groups, labels, folds=5)
    t = pd.DataFrame(rows).set_index(["activations", "labels"])["r2"]
    assert t["a", "a"] > 0.9 and t["b", "b"] > 0.9  # AA
    assert t["a", "b"] < 0.05 and t["b", "a"] < 0.05  # AB: nothing to read
    summary = own_against_others(pd.DataFrame(rows))
    assert (summary["r2_own"] > summary["r2_others_max"] + 0.8).all()


def test_out_of_fold_matches_scikit_learn_fold_by_fold():
    """With one penalty, each fold's prediction is scikit-learn's Ridge on standardised rows."""
    xs, labels, groups = _two_models(n=120, d=8, seed=1)
    y = np.stack([labels[("margin", "a")], labels[("margin", "b")]], axis=1)
    pred = out_of_fold(xs["a"], y, groups, folds=4, alphas=[3.0])
    ref = np.empty_like(y)
    for tr, te in GroupKFold(n_splits=4).split(xs["a"], groups=groups):
        sc = StandardScaler().fit(xs["a"][tr])
        ref[te] = (
            Ridge(alpha=3.0)
            .fit(sc.transform(xs["a"][tr]), y[tr])
            .predict(sc.transform(xs["a"][te]))
        )
    np.testing.assert_allclose(pred, ref, rtol=1e-8, atol=1e-10)


def test_the_penalty_is_chosen_per_label_by_grouped_inner_folds():
    """A clean linear label takes a small penalty and pure noise the largest; the choice equals
    a brute-force grouped search with scikit-learn."""
    rng = np.random.default_rng(4)
    n, d = 160, 10
    x = rng.standard_normal((n, d))
    y = np.stack([x @ rng.standard_normal(d), rng.standard_normal(n)], axis=1)
    groups = np.repeat(np.arange(n // 2), 2)
    alphas = [0.01, 1.0, 100.0, 1e4]
    _, chosen = grouped_ridge(x, y, groups, x, alphas=alphas, inner_folds=3)
    assert chosen[0] < 100.0 and chosen[1] == 1e4
    for j in range(2):
        sse = []
        for a in alphas:
            err = 0.0
            for tr, te in GroupKFold(n_splits=3).split(x, groups=groups):
                sc = StandardScaler().fit(x[tr])
                fit = Ridge(alpha=a).fit(sc.transform(x[tr]), y[tr, j])
                err += ((fit.predict(sc.transform(x[te])) - y[te, j]) ** 2).sum()
            sse.append(err)
        assert chosen[j] == alphas[int(np.argmin(sse))]


def test_a_facts_statements_never_straddle_folds():
    """A probe that memorises one statement cannot score its twin: with a label shared by a
    fact's two statements and activations that only identify the fact, out-of-fold R² is low."""
    n = 200
    rng = np.random.default_rng(3)
    fact_label = rng.standard_normal(n // 2)
    groups = np.repeat(np.arange(n // 2), 2)
    x = np.eye(n // 2)[groups] * 10  # one-hot of the fact: a lookup table, no linear rule
    y = fact_label[groups][:, None]
    grouped = out_of_fold(x, y, groups, folds=5)
    assert stats.pearsonr(grouped[:, 0], y[:, 0])[0] < 0.3
    leaky = out_of_fold(x, y, np.arange(n), folds=5)  # twins split across folds: leaks
    assert stats.pearsonr(leaky[:, 0], y[:, 0])[0] > 0.6


def test_margin_rows_report_the_auroc_of_the_answer():
    xs, labels, groups = _two_models(seed=2)
    (row,) = [
        r
        for r in crosslabel_rows("a", "toy", [0], {0: xs["a"]}, groups, labels, folds=5)
        if r["labels"] == "a"
    ]
    assert row["auroc"] > 0.9 and row["own"] and row["n"] == 300


def test_every_layer_position_gets_its_rows_and_a_repeated_layer_is_fit_once():
    xs, labels, groups = _two_models(n=100, d=6)
    rows = crosslabel_rows("t", "toy", [0, 0, 0], {0: xs["a"]}, groups, labels, folds=5)
    assert sorted({r["layer_position"] for r in rows}) == [0, 1, 2]
    by_pos = pd.DataFrame(rows).groupby("layer_position")["r2"].apply(list)
    assert by_pos[0] == by_pos[1] == by_pos[2]


def test_labels_are_paired_by_row_hash():
    answers = pd.DataFrame({"row_hash": ["h3", "h1"], "margin": [3.0, 1.0], "label": [1, 0]})
    s = label_series("margin", answers)
    assert s.loc["h1"] == 1.0 and s.loc["h3"] == 3.0
    ratings = pd.DataFrame(
        {"row_hash": ["h1", "h2", "h3"], "split": ["test", "train", "test"], "rating": [5, 6, 7]}
    )
    r = label_series("self_rating", ratings)
    assert list(r.index) == ["h1", "h3"]  # test rows only
    keep = common_rows(np.array(["h1", "h2", "h3", "h4"]), {("margin", "a"): s, ("r", "a"): r})
    assert list(keep) == [0, 2]


def test_too_few_groups_for_the_folds_is_a_clear_error():
    with pytest.raises(ConfigError, match="crosslabels.folds"):
        out_of_fold(np.ones((6, 2)), np.ones((6, 1)), np.array([0, 0, 1, 1, 2, 2]), folds=5)


def test_a_near_constant_coordinate_cannot_carry_the_prediction():
    """The σ floor of `logreg` and `ridge`: a coordinate a million times quieter than the others
    (a real model's near-constant channel) stays as quiet as it is, instead of becoming
    unit-variance noise, so predictions are those without it."""
    from crossprobe.crosslabels.labels import _ridge_path

    rng = np.random.default_rng(4)
    x = rng.normal(size=(80, 6))
    y = (x @ rng.normal(size=6) + 0.5 * rng.normal(size=80))[:, None]
    quiet = np.hstack([x, 1e-6 * rng.normal(size=(80, 1))])
    with_it = _ridge_path(quiet[:60], y[:60], quiet[60:], [1e-3])
    without = _ridge_path(x[:60], y[:60], x[60:], [1e-3])
    np.testing.assert_allclose(with_it, without, atol=1e-3)
