import numpy as np
import pytest

from crossprobe.errors import ConfigError
from crossprobe.probes import fit_dim, fit_logreg, fitter, load_probes, save_probes
from crossprobe.stats import auroc, cosine


def planted(n=10000, d=16, seed=0, shift=1.0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, d)) + shift * np.outer(2 * y - 1, u) + 5.0
    return x, y, u


@pytest.mark.parametrize("method", ["dim", "logreg"])
def test_planted_direction_is_recovered(method):
    x, y, u = planted()
    p = fitter(method)(x, y, 3)
    assert p.layer == 3 and p.method == method
    assert cosine(p.direction, u) > 0.99
    # Bayes-optimal accuracy for a shift of 1 sd each side is Phi(1) = 0.841.
    assert auroc(y, p.score(x)) > 0.9
    assert np.mean((p.score(x) > 0) == (y == 1)) == pytest.approx(0.841, abs=0.02)


def test_logreg_direction_is_in_raw_space():
    """Anisotropic features: the raw-space weight is w/sigma, scoring raw activations directly."""
    x, y, _ = planted(d=8)
    x = x * np.array([1, 10, 0.1, 1, 1, 1, 1, 1])
    p = fit_logreg(x, y, 0)
    standardised = ((x - p.mean) / p.scale) @ (p.weight * p.scale)
    assert np.allclose(p.score(x), standardised + p.bias + p.weight @ p.mean)


def test_dim_threshold_is_midpoint():
    x = np.array([[0.0], [0.0], [2.0], [2.0]])
    p = fit_dim(x, np.array([0, 0, 1, 1]), 0)
    assert p.score(np.array([[1.0]]))[0] == pytest.approx(0.0)


def test_single_class_and_shape_errors():
    with pytest.raises(ConfigError, match="single class"):
        fit_dim(np.ones((4, 2)), np.zeros(4), 0)
    with pytest.raises(ValueError, match=r"\(4, 2\).*\(3,\)"):
        fit_dim(np.ones((4, 2)), np.zeros(3), 0)
    with pytest.raises(ConfigError, match="unknown probe method"):
        fitter("svm")


def test_save_load_round_trip(tmp_path):
    x, y, _ = planted(d=16)
    probes = [fit_dim(x, y, 1), fit_logreg(x, y, 1)]
    save_probes(tmp_path / "p.safetensors", probes, {"model": "m", "dataset": "d"})
    back = load_probes(tmp_path / "p.safetensors")
    assert set(back) == {("dim", 1), ("logreg", 1)}
    for p in probes:
        q = back[(p.method, p.layer)]
        assert np.array_equal(q.weight, p.weight) and q.bias == p.bias
        assert np.array_equal(q.score(x), p.score(x))
    assert (tmp_path / "p.json").exists()


def test_near_constant_coordinates_cannot_carry_the_logreg_direction(monkeypatch):
    """A pure-noise coordinate with σ a thousandth of the others', few rows for the width (as
    on a real model's train split): standardised to unit variance it gets a weight like any
    other noise coordinate, and w/σ multiplies that by 1000. The floor keeps it out."""
    import crossprobe.probes as probes
    from crossprobe.probes import SCALE_FLOOR, standard_scale

    x, y, planted_dir = planted(n=400, d=64, shift=0.5)
    rng = np.random.default_rng(5)
    x = np.column_stack([x, 5.0 + 1e-3 * rng.standard_normal(len(y))])
    sd = x.std(0)
    scale = standard_scale(x)
    assert scale[-1] == pytest.approx(SCALE_FLOOR * np.median(sd))
    np.testing.assert_array_equal(scale[:-1], np.maximum(sd[:-1], SCALE_FLOOR * np.median(sd)))

    def share(p):
        return p.direction[-1] ** 2 / np.sum(p.direction**2)

    floored = fit_logreg(x, y, 0)
    assert share(floored) < 1e-3
    assert cosine(floored.direction[:-1], planted_dir) > 0.6
    monkeypatch.setattr(probes, "SCALE_FLOOR", 0.0)  # w / σ with the raw σ
    assert share(fit_logreg(x, y, 0)) > 0.5
