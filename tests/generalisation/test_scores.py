import numpy as np
import pytest

from crossprobe.generalisation.scores import COLUMNS, generalisation_table
from crossprobe.probes import fit_dim, fit_logreg


def data(u, n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return rng.normal(size=(n, u.size)) + 2 * np.outer(2 * y - 1, u), y


def test_shared_direction_generalises_and_orthogonal_does_not():
    d = 16
    e = np.eye(d)
    sets = {"A": data(e[0], seed=1), "B": data(e[0], seed=2), "C": data(e[1], seed=3)}
    train = {
        k: data(v, seed=10 + i)
        for i, (k, v) in enumerate({"A": e[0], "B": e[0], "C": e[1]}.items())
    }
    probes = {
        k: {("dim", 0): fit_dim(*train[k], 0), ("logreg", 0): fit_logreg(*train[k], 0)}
        for k in train
    }
    tests = {k: {0: v} for k, v in sets.items()}
    t = generalisation_table("m", probes, tests)
    assert list(t.columns) == COLUMNS
    assert len(t) == 3 * 2 * 3
    get = t.set_index(["method", "train_dataset", "eval_dataset"])
    assert get.loc[("dim", "A", "B"), "recovered_accuracy"] == pytest.approx(1.0, abs=0.03)
    assert get.loc[("dim", "A", "C"), "auroc"] == pytest.approx(0.5, abs=0.1)
    # Recovered accuracy is relative to the best in-distribution probe at the layer.
    best_b = t[(t.train_dataset == "B") & (t.eval_dataset == "B")]["accuracy"].max()
    row = get.loc[("logreg", "C", "B")]
    assert row["recovered_accuracy"] == pytest.approx(row["accuracy"] / best_b)
