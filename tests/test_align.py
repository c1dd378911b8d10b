"""Cross-model linear maps: identity, recovery of a known map, R², storage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from crossprobe.align import (
    LinearMap,
    default_heldout,
    fit_map,
    identity_map,
    load_maps,
    load_maps_meta,
    save_maps,
)


def _semi_orthogonal(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """[rows, cols] with orthonormal columns (rows >= cols) or orthonormal rows (rows < cols)."""
    q, _ = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    return q if rows >= cols else q.T


def _known_pair(d_s: int, d_t: int, n: int = 600, seed: int = 0):
    """X_t = X_s Qᵀ + offset + tiny noise, with Q [d_t, d_s] semi-orthogonal.

    When the target is narrower, the source's variance is concentrated in Q's row space (as the
    target-visible part of a wider model's activations would be), so that PCA of the source to
    d_t dimensions finds that subspace; the remaining source directions carry small variance.
    """
    rng = np.random.default_rng(seed)
    Q = _semi_orthogonal(d_t, d_s, rng)
    scales = np.linspace(3.0, 1.0, d_s)
    X_s = rng.standard_normal((n, d_s)) * scales + rng.standard_normal(d_s)
    if d_t < d_s:
        X_s = (rng.standard_normal((n, d_t)) * np.linspace(3.0, 1.0, d_t)) @ Q
        X_s += 0.1 * rng.standard_normal((n, d_s)) + rng.standard_normal(d_s)
    X_t = X_s @ Q.T + rng.standard_normal(d_t) + 1e-3 * rng.standard_normal((n, d_t))
    return X_s, X_t, Q


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_identity_map_is_exact():
    m = identity_map(5)
    assert np.array_equal(m.A, np.eye(5)) and np.array_equal(m.B, np.eye(5))
    assert not m.b.any() and not m.c.any()
    assert m.r2_forward == 1.0 and m.r2_backward == 1.0
    v = np.random.default_rng(0).standard_normal(5).astype(np.float32)
    assert np.array_equal(m.carry_direction(v), v)
    assert np.array_equal(m.carry_weight(v), v)


@pytest.mark.parametrize("method", ["ridge", "procrustes"])
@pytest.mark.parametrize(("d_s", "d_t"), [(32, 48), (48, 32), (32, 32)])
def test_known_map_is_recovered(method, d_s, d_t):
    X_s, X_t, Q = _known_pair(d_s, d_t)
    held = default_heldout(len(X_s))
    m = fit_map(X_s, X_t, method=method, heldout=held)
    assert m.method == method
    assert m.A.shape == (d_t, d_s) and m.B.shape == (d_s, d_t)
    assert m.b.shape == (d_t,) and m.c.shape == (d_s,)
    rng = np.random.default_rng(1)
    # Directions are drawn from the part of source space the target can see (all of it when
    # the target is at least as wide).
    for d in rng.standard_normal((10, d_t)) @ Q if d_t < d_s else rng.standard_normal((10, d_s)):
        assert _cos(m.carry_direction(d), Q @ d) > 0.99
    for w_s in rng.standard_normal((10, d_s)):
        w_t = m.carry_weight(w_s)
        r = np.corrcoef(X_s[held] @ w_s, X_t[held] @ w_t)[0, 1]
        assert r > 0.99
    assert m.r2_forward > 0.99
    if d_t >= d_s:  # a narrower target cannot explain the source's small private directions
        assert m.r2_backward > 0.99
    else:
        assert m.r2_backward > 0.9


def test_procrustes_carries_the_same_vector_both_ways():
    X_s, X_t, _ = _known_pair(32, 48)
    m = fit_map(X_s, X_t, method="procrustes")
    np.testing.assert_array_equal(m.B, m.A.T)
    w = np.random.default_rng(2).standard_normal(32)
    np.testing.assert_allclose(m.carry_weight(w), m.carry_direction(w), atol=1e-6)
    np.testing.assert_allclose(m.A.T @ m.A, np.eye(32), atol=1e-5)


@pytest.mark.parametrize("method", ["ridge", "procrustes"])
def test_batched_carry_equals_one_at_a_time(method):
    X_s, X_t, _ = _known_pair(32, 48)
    m = fit_map(X_s, X_t, method=method)
    V = np.random.default_rng(3).standard_normal((4, 32))
    np.testing.assert_allclose(m.carry_direction(V), np.stack([m.A @ v for v in V]), rtol=1e-5)
    np.testing.assert_allclose(m.carry_weight(V), np.stack([m.B.T @ v for v in V]), rtol=1e-5)


def test_r2_near_zero_for_independent_activations():
    rng = np.random.default_rng(4)
    X_s, X_t = rng.standard_normal((2000, 16)), rng.standard_normal((2000, 24))
    m = fit_map(X_s, X_t, method="ridge")
    assert abs(m.r2_forward) < 0.05 and abs(m.r2_backward) < 0.05


def test_r2_uses_held_out_rows_only():
    X_s, X_t, _ = _known_pair(32, 48, n=300)
    held = np.zeros(300, dtype=bool)
    held[-60:] = True
    X_t_bad = X_t.copy()
    X_t_bad[held] = np.random.default_rng(5).standard_normal((60, 48))
    good = fit_map(X_s, X_t, heldout=held)
    bad = fit_map(X_s, X_t_bad, heldout=held)
    np.testing.assert_allclose(good.A, bad.A)  # fitted on the same (non-held-out) rows
    assert good.r2_forward > 0.99 and bad.r2_forward < 0.1


def test_default_heldout_is_deterministic_twenty_percent():
    a = default_heldout(1000)
    assert a.dtype == bool and a.sum() == 200
    assert np.array_equal(a, default_heldout(1000))
    assert 0 < a[:500].sum() < 200  # spread over the rows, not a block


def test_shape_mismatch_raises_naming_both_shapes():
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match=r"\(10, 4\).*\(9, 5\)"):
        fit_map(rng.standard_normal((10, 4)), rng.standard_normal((9, 5)))
    with pytest.raises(ValueError, match=r"\(10,\)"):
        fit_map(rng.standard_normal((10, 4)), rng.standard_normal((10, 5)), heldout=np.ones(9))
    with pytest.raises(ValueError, match="method"):
        fit_map(rng.standard_normal((10, 4)), rng.standard_normal((10, 5)), method="cca")
    m = identity_map(4)
    with pytest.raises(ValueError, match=r"\(3,\).*\(4, 4\)"):
        m.carry_direction(np.ones(3))
    with pytest.raises(ValueError, match=r"\(5,\).*\(4, 4\)"):
        m.carry_weight(np.ones(5))
    with pytest.raises(ValueError, match="inconsistent"):
        LinearMap("ridge", np.ones((3, 2)), np.ones(3), np.ones((3, 2)), np.ones(2), 0.0, 0.0)


def test_save_load_round_trip(tmp_path):
    X_s, X_t, _ = _known_pair(32, 48, n=200)
    maps = {
        (3, 5): fit_map(X_s, X_t, method="ridge"),
        (12, 18): fit_map(X_s, X_t, method="procrustes"),
        (7, 7): identity_map(6),
    }
    meta = {"source": "org/model-a", "target": "org/model-b", "n_rows": 200}
    path = tmp_path / "sub" / "maps.safetensors"
    save_maps(path, maps, meta)
    assert sorted(p.name for p in path.parent.iterdir()) == ["maps.safetensors"]
    back = load_maps(path)
    assert set(back) == set(maps)
    for key, m in maps.items():
        got = back[key]
        assert got.method == m.method
        assert got.r2_forward == m.r2_forward and got.r2_backward == m.r2_backward
        for part in ("A", "b", "B", "c"):
            np.testing.assert_array_equal(getattr(got, part), getattr(m, part))
    assert load_maps_meta(path) == meta
    with safe_open(str(path), framework="numpy") as f:
        assert "A/12/18" in set(f.keys())
        assert all(isinstance(v, str) for v in f.metadata().values())
        json.loads(f.metadata()["crossprobe_meta"])


def test_ridge_map_does_not_depend_on_activation_scale():
    """The alpha grid is relative to the data, so scaling both sides scales nothing else."""
    rng = np.random.default_rng(11)
    x_s = rng.normal(size=(120, 24))
    x_t = x_s @ rng.normal(size=(24, 20)) + rng.normal(size=(120, 20))
    small = fit_map(x_s, x_t, method="ridge")
    big = fit_map(1000 * x_s, 1000 * x_t, method="ridge")
    assert np.allclose(small.A, big.A, atol=1e-4)
    assert small.r2_forward == pytest.approx(big.r2_forward, abs=1e-6)


def _low_rank_pair(n: int, d_s: int, d_t: int, seed: int = 7):
    """Rows spanning a 20-dimensional subspace of the source, rotated into the target."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d_s, 20)))[0]  # [d_s, 20], orthonormal columns
    X_s = rng.standard_normal((n, 20)) @ basis.T + rng.standard_normal(d_s)
    rot = np.linalg.qr(rng.standard_normal((d_t, d_t)))[0][:, :d_s] if d_t >= d_s else None
    if rot is None:  # narrower target: an isometry of the spanned subspace into it
        rot = np.linalg.qr(rng.standard_normal((d_t, 20)))[0] @ basis.T
    X_t = X_s @ rot.T
    return X_s, X_t, basis, rot


@pytest.mark.parametrize("widths", [(100, 100), (100, 80)])
def test_procrustes_on_fewer_rows_than_width_stays_in_the_data(widths):
    """Equal widths used to skip the PCA: on rank-deficient rows, orthogonal Procrustes then
    completes the rotation arbitrarily outside the rows' span. Both cases now reduce to the
    data's rank, so a direction inside the span is carried to its true image and one outside
    it to almost nothing."""
    d_s, d_t = widths
    X_s, X_t, basis, rot = _low_rank_pair(62, d_s, d_t)
    held = np.zeros(62, dtype=bool)
    held[-12:] = True
    m = fit_map(X_s, X_t, method="procrustes", heldout=held)
    rng = np.random.default_rng(8)
    inside = basis @ rng.standard_normal(20)
    inside /= np.linalg.norm(inside)
    carried = m.carry_direction(inside)
    truth = rot @ inside
    cos = carried @ truth / np.linalg.norm(carried) / np.linalg.norm(truth)
    assert cos > 0.999
    outside = rng.standard_normal(d_s)
    outside -= basis @ (basis.T @ outside)
    outside /= np.linalg.norm(outside)
    assert np.linalg.norm(m.carry_direction(outside)) < 1e-3
    assert m.r2_forward > 0.999


def test_procrustes_without_variation_is_a_clear_error():
    X = np.ones((10, 4))
    with pytest.raises(ValueError, match="do not vary"):
        fit_map(X, X, method="procrustes")


def test_ridge_map_carries_the_low_variance_directions_of_an_exact_rotation():
    """Activations as anisotropic as a real model's (variances over six decades), and a target
    that is the same activations in another orthonormal basis: the map is that rotation, so
    every direction, the least varying included, carries at cosine 1 with its true image and
    at the length of a random direction (a `logreg` probe leans on such directions)."""
    from crossprobe.align import carried_length, reference_length

    rng = np.random.default_rng(11)
    n, d = 300, 40
    x = rng.normal(size=(n, d)) * np.logspace(0, -3, d) + 5.0
    q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    m = fit_map(x, x @ q.T)
    ref = reference_length(m)
    for axis in (0, d // 2, d - 1):
        u = np.eye(d)[axis]
        carried = m.carry_direction(u.astype(np.float32)).astype(np.float64)
        cos = carried @ (q @ u) / np.linalg.norm(carried)
        assert cos > 0.999, (axis, cos)
        assert carried_length(m, u, ref) == pytest.approx(1.0, abs=0.03)


def test_a_direction_the_map_shrinks_to_nothing_is_not_carried():
    """Rows that never vary along the last axis: a map fitted on them carries that axis to
    (almost) nothing, and it comes back as not carried, a zero vector, never renormalised."""
    from crossprobe.align import carry, matched_null

    rng = np.random.default_rng(12)
    x = rng.normal(size=(200, 10))
    x[:, -1] = 0.0
    m = fit_map(x, x.copy())
    gone = carry(m, np.eye(10)[-1], 0.1)
    assert not gone.carried and gone.length < 0.01 and not gone.vector.any()
    kept = carry(m, np.eye(10)[0], 0.1)
    assert kept.carried and kept.length == pytest.approx(1.05, abs=0.1)
    np.testing.assert_allclose(kept.vector, m.carry_direction(np.eye(10, dtype=np.float32)[0]))
    null = matched_null(m, 5, seed=0)
    assert null.shape == (5, 10) and np.allclose(null[:, -1], 0.0, atol=1e-3)


def test_procrustes_on_fewer_rows_than_the_width_does_not_carry_what_the_rows_never_visit():
    """Fitted on 8 rows of a 20-wide space, Procrustes knows a 7-dimensional subspace: a
    direction orthogonal to it comes out ~1e-8 long, which is reported as not carried."""
    from crossprobe.align import carry

    rng = np.random.default_rng(13)
    basis = np.linalg.qr(rng.normal(size=(20, 7)))[0]  # [20, 7]
    x = rng.normal(size=(10, 7)) @ basis.T
    m = fit_map(x, x.copy(), method="procrustes", heldout=np.arange(10) >= 8)
    outside = np.linalg.qr(np.hstack([basis, rng.normal(size=(20, 1))]))[0][:, -1]
    gone = carry(m, outside, 0.1)
    assert not gone.carried and gone.length < 1e-4
    inside = carry(m, basis[:, 0], 0.1)
    assert inside.carried
