"""Linear maps between two models' activation spaces at one layer pair.

A map is fitted on paired ``align`` activations of the same prompts. The forward part
``x_t ≈ A·x_s + b`` carries ablation directions (``A·d_s``); the backward part
``x_s ≈ B·x_t + c`` carries scoring weights (``Bᵀ·w_s``). For ``procrustes`` the map is
orthogonal and ``B = Aᵀ``, so both carried vectors coincide. For ``s = t`` the map is the
identity, exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from jaxtyping import Bool, Float
from safetensors import safe_open
from safetensors.numpy import save_file
from scipy.linalg import orthogonal_procrustes
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score

from crossprobe.io import atomic_path

MapMethod = Literal["ridge", "procrustes"]

#: Relative ridge penalties (times ``n · mean feature variance``), chosen among by GCV. The grid
#: reaches 1e-7 because real models' activations are far from isotropic: with 1e-3 as the
#: smallest, the map of SmolLM2-135M into its exact rotated copy (802 fitting rows, width 576)
#: shrank the low-variance directions that `logreg` probes lean on, and their carried
#: directions kept a cosine of only 0.79-0.92 with the true one; from 1e-7, GCV picks a
#: penalty that carries every probe at cosine ≥ 0.9996 (and held-out R² 1.000).
DEFAULT_ALPHAS: tuple[float, ...] = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)
HELDOUT_FRACTION = 0.2
_HELDOUT_SEED = 0
_META_KEY = "crossprobe_meta"
_MAPS_KEY = "crossprobe_maps"


@dataclass(frozen=True)
class LinearMap:
    """``x_t ≈ A·x_s + b`` and ``x_s ≈ B·x_t + c`` at one (source, target) layer pair."""

    method: str
    A: Float[np.ndarray, "d_t d_s"]
    b: Float[np.ndarray, " d_t"]
    B: Float[np.ndarray, "d_s d_t"]
    c: Float[np.ndarray, " d_s"]
    r2_forward: float
    r2_backward: float

    def __post_init__(self) -> None:
        d_t, d_s = self.A.shape
        if self.b.shape != (d_t,) or self.B.shape != (d_s, d_t) or self.c.shape != (d_s,):
            raise ValueError(
                f"inconsistent map shapes: A {self.A.shape}, b {self.b.shape}, "
                f"B {self.B.shape}, c {self.c.shape}; expected A (d_t, d_s), b (d_t,), "
                "B (d_s, d_t), c (d_s,)"
            )

    @property
    def d_source(self) -> int:
        return int(self.A.shape[1])

    @property
    def d_target(self) -> int:
        return int(self.A.shape[0])

    def carry_direction(self, d_s: Float[np.ndarray, "*k d_s"]) -> Float[np.ndarray, "*k d_t"]:
        """``A·d_s``: a source direction (or a stack of them, last axis) in target space."""
        d_s = np.asarray(d_s)
        if d_s.shape[-1:] != (self.d_source,):
            raise ValueError(
                f"direction of shape {d_s.shape} does not fit map A of shape {self.A.shape}: "
                f"its last axis must be {self.d_source}"
            )
        return d_s @ self.A.T

    def carry_weight(self, w_s: Float[np.ndarray, "*k d_s"]) -> Float[np.ndarray, "*k d_t"]:
        """``Bᵀ·w_s``: a source scoring weight (or a stack, last axis) in target space."""
        w_s = np.asarray(w_s)
        if w_s.shape[-1:] != (self.d_source,):
            raise ValueError(
                f"weight of shape {w_s.shape} does not fit map B of shape {self.B.shape}: "
                f"its last axis must be {self.d_source}"
            )
        return w_s @ self.B


def identity_map(d: int) -> LinearMap:
    """The exact identity on a ``d``-wide space (``s = t``)."""
    if d <= 0:
        raise ValueError(f"identity map needs a positive width, got {d}")
    eye = np.eye(d, dtype=np.float32)
    zero = np.zeros(d, dtype=np.float32)
    return LinearMap("identity", eye, zero, eye.copy(), zero.copy(), 1.0, 1.0)


def default_heldout(n: int) -> Bool[np.ndarray, " row"]:
    """A deterministic 20% of ``n`` rows (fixed-seed permutation), at least one row each side."""
    if n < 4:
        raise ValueError(f"need at least 4 paired rows to fit and evaluate a map, got {n}")
    k = min(max(1, round(HELDOUT_FRACTION * n)), n - 2)
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(_HELDOUT_SEED).permutation(n)[:k]] = True
    return mask


def fit_map(
    X_s: Float[np.ndarray, "row d_s"],
    X_t: Float[np.ndarray, "row d_t"],
    *,
    method: MapMethod = "ridge",
    heldout: Bool[np.ndarray, " row"] | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
) -> LinearMap:
    """Fit both directions of a map on the non-held-out rows; R² on the held-out rows.

    ``heldout`` is a boolean mask over rows; without it a deterministic 20% is held out.
    """
    X_s = np.asarray(X_s, dtype=np.float64)
    X_t = np.asarray(X_t, dtype=np.float64)
    if X_s.ndim != 2 or X_t.ndim != 2 or X_s.shape[0] != X_t.shape[0]:
        raise ValueError(
            f"paired activations must be [row, d] with the same rows: source {X_s.shape}, "
            f"target {X_t.shape}"
        )
    n = X_s.shape[0]
    if heldout is None:
        held = default_heldout(n)
    else:
        held = np.asarray(heldout)
        if held.dtype != bool or held.shape != (n,):
            raise ValueError(
                f"heldout must be a boolean mask of shape ({n},) matching source {X_s.shape} "
                f"and target {X_t.shape}, got dtype {held.dtype} shape {held.shape}"
            )
    n_held, n_fit = int(held.sum()), int((~held).sum())
    if n_held < 2 or n_fit < 2:
        raise ValueError(
            f"need at least 2 fitting and 2 held-out rows, got {n_fit} and {n_held} "
            f"(source {X_s.shape}, target {X_t.shape})"
        )
    fit_s, fit_t = X_s[~held], X_t[~held]
    if method == "ridge":
        A, b = _ridge(fit_s, fit_t, alphas)
        B, c = _ridge(fit_t, fit_s, alphas)
    elif method == "procrustes":
        A, b = _procrustes(fit_s, fit_t)
        B = A.T
        c = fit_s.mean(0) - B @ fit_t.mean(0)
    else:
        raise ValueError(f"unknown map method {method!r}: use 'ridge' or 'procrustes'")
    r2_f = _r2(X_t[held], X_s[held] @ A.T + b)
    r2_b = _r2(X_s[held], X_t[held] @ B.T + c)
    f32 = np.float32
    return LinearMap(method, A.astype(f32), b.astype(f32), B.astype(f32), c.astype(f32), r2_f, r2_b)


def _ridge(
    X: Float[np.ndarray, "row d_in"], Y: Float[np.ndarray, "row d_out"], alphas: Sequence[float]
) -> tuple[Float[np.ndarray, "d_out d_in"], Float[np.ndarray, " d_out"]]:
    """Multi-output ridge ``Y ≈ X·Wᵀ + b`` with one alpha chosen by GCV.

    The grid is relative: each alpha is multiplied by ``n · mean feature variance`` of X (the
    mean eigenvalue of the centred Gram matrix times d), so the same grid suits activations whose
    norms are 1 or 1,000.
    """
    scale = float(len(X) * np.mean(np.var(X, axis=0)))
    scale = scale if scale > 0 else 1.0
    reg = RidgeCV(alphas=tuple(float(a) * scale for a in alphas), fit_intercept=True)
    reg.fit(X, Y)
    return np.atleast_2d(reg.coef_), np.atleast_1d(reg.intercept_)


def _procrustes(
    X_s: Float[np.ndarray, "row d_s"], X_t: Float[np.ndarray, "row d_t"]
) -> tuple[Float[np.ndarray, "d_t d_s"], Float[np.ndarray, " d_t"]]:
    """Orthogonal map of centred activations, within the subspace the data spans.

    Each side is reduced by PCA to ``k = min(d_s, d_t, rank_s, rank_t)`` dimensions: the
    smaller width, or the rank of the fitting rows when it is lower (fewer rows than the width,
    equal widths included). Orthogonal Procrustes on rank-deficient data would otherwise return
    an arbitrary rotation of the directions the rows never visit; restricted to the spanned
    subspace, a direction outside it is carried to (nearly) nothing instead.
    """
    mu_s, mu_t = X_s.mean(0), X_t.mean(0)
    Zs, Zt = X_s - mu_s, X_t - mu_t
    d_s, d_t = Zs.shape[1], Zt.shape[1]
    k = min(d_s, d_t, int(np.linalg.matrix_rank(Zs)), int(np.linalg.matrix_rank(Zt)))
    if k < 1:
        raise ValueError(
            f"the fitting rows do not vary (source {X_s.shape}, target {X_t.shape}): no map"
        )
    # P_* [k, d_*]: orthonormal rows spanning the kept subspace of each side.
    P_s = _pca_basis(Zs, k) if d_s > k else np.eye(d_s)
    P_t = _pca_basis(Zt, k) if d_t > k else np.eye(d_t)
    R, _ = orthogonal_procrustes(Zs @ P_s.T, Zt @ P_t.T)  # [k, k]: (Zs P_sᵀ) R ≈ Zt P_tᵀ
    A = P_t.T @ R.T @ P_s
    return A, mu_t - A @ mu_s


def _pca_basis(Z: Float[np.ndarray, "row d"], k: int) -> Float[np.ndarray, "k d"]:
    """Top-``k`` principal axes of centred ``Z`` (sign fixed so the largest entry is positive)."""
    _, _, vt = np.linalg.svd(Z, full_matrices=False)
    if vt.shape[0] < k:
        raise ValueError(
            f"PCA to {k} dimensions needs at least {k} fitting rows, got {Z.shape[0]} "
            f"(activations {Z.shape})"
        )
    basis = vt[:k]
    signs = np.sign(basis[np.arange(k), np.abs(basis).argmax(1)])
    return basis * signs[:, None]


def _r2(y: Float[np.ndarray, "row d"], pred: Float[np.ndarray, "row d"]) -> float:
    return float(r2_score(y, pred, multioutput="variance_weighted"))


# ---------------------------------------------------------------------------------------------
# Storage


def _key(part: str, pair: tuple[int, int]) -> str:
    return f"{part}/{int(pair[0])}/{int(pair[1])}"


def save_maps(
    path: str | os.PathLike[str],
    maps: Mapping[tuple[int, int], LinearMap],
    meta: Mapping[str, Any],
) -> None:
    """Write maps keyed by (source layer, target layer) to one safetensors file, atomically.

    Tensors are named ``A/12/18``, ``b/12/18``, ...; ``meta`` (JSON-serialisable) and each map's
    method and R² go into the safetensors metadata as JSON strings.
    """
    tensors: dict[str, np.ndarray] = {}
    info: dict[str, dict[str, Any]] = {}
    for pair, m in maps.items():
        if len(pair) != 2:
            raise ValueError(f"map keys must be (source layer, target layer), got {pair!r}")
        for part in ("A", "b", "B", "c"):
            tensors[_key(part, pair)] = np.ascontiguousarray(getattr(m, part))
        info[f"{int(pair[0])}/{int(pair[1])}"] = {
            "method": m.method,
            "r2_forward": m.r2_forward,
            "r2_backward": m.r2_backward,
        }
    metadata = {_META_KEY: json.dumps(dict(meta), sort_keys=True), _MAPS_KEY: json.dumps(info)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_maps(path: str | os.PathLike[str]) -> dict[tuple[int, int], LinearMap]:
    """Maps written by :func:`save_maps`, keyed by (source layer, target layer)."""
    with safe_open(str(path), framework="numpy") as f:
        info = json.loads((f.metadata() or {})[_MAPS_KEY])
        out: dict[tuple[int, int], LinearMap] = {}
        for pair_key, m in info.items():
            src, tgt = (int(v) for v in pair_key.split("/"))
            parts = {p: f.get_tensor(f"{p}/{pair_key}") for p in ("A", "b", "B", "c")}
            out[(src, tgt)] = LinearMap(
                method=m["method"],
                r2_forward=float(m["r2_forward"]),
                r2_backward=float(m["r2_backward"]),
                **parts,
            )
    return out


def load_maps_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``meta`` dict given to :func:`save_maps`."""
    with safe_open(str(path), framework="numpy") as f:
        return json.loads((f.metadata() or {})[_META_KEY])


# ---------------------------------------------------------------------------------------------
# What a map does to the length of a direction

#: Random unit directions whose carried lengths are the reference of :func:`carried_length`.
LENGTH_REFERENCE_DIRECTIONS = 64


def reference_length(m: LinearMap, *, k: int = LENGTH_REFERENCE_DIRECTIONS, seed: int = 0) -> float:
    """The median ``‖A·r‖`` over ``k`` random unit source directions ``r`` (fixed seed)."""
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((k, m.d_source))
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    return float(np.median(np.linalg.norm(m.carry_direction(r.astype(np.float32)), axis=1)))


def carried_length(m: LinearMap, direction: Float[np.ndarray, " d_s"], reference: float) -> float:
    """``‖A·u‖`` of the unit direction ``u`` along ``direction``, relative to ``reference``
    (:func:`reference_length` of the same map): 1 means the map carries it as it carries a
    typical random direction, near 0 that it carries it to (almost) nothing."""
    d = np.asarray(direction, dtype=np.float64)
    norm = float(np.linalg.norm(d))
    if norm == 0.0 or not reference > 0.0:
        return float("nan")
    return float(np.linalg.norm(m.carry_direction((d / norm).astype(np.float32))) / reference)


class Carried(NamedTuple):
    """A source direction carried through a map, or a zero vector where it is not carried."""

    vector: Float[np.ndarray, " d_t"]
    """``A·d_s`` when the map carries it (its relative length at least the floor), else 0."""
    length: float
    """The relative carried length (:func:`carried_length`)."""
    carried: bool


def carry(
    m: LinearMap,
    direction: Float[np.ndarray, " d_s"],
    min_length: float,
    *,
    reference: float | None = None,
) -> Carried:
    """``A·d_s``, kept only when its relative length reaches ``min_length``.

    A direction the map shrinks to (almost) nothing is not carried: its vector is zero (which
    ablates and steers nothing, exactly), never the unit vector along numerical noise.
    ``reference`` is the map's :func:`reference_length`, computed here when not given (pass it
    to carry several directions through one map).
    """
    ref = reference_length(m) if reference is None else reference
    length = carried_length(m, direction, ref)
    ok = bool(np.isfinite(length) and length >= min_length)
    vec = m.carry_direction(np.asarray(direction, dtype=np.float32))
    return Carried(vec if ok else np.zeros_like(vec), length, ok)


def matched_null(m: LinearMap, k: int, *, seed: int) -> Float[np.ndarray, "k d_t"]:
    """``k`` random unit source directions carried through the map: a null that lies in the
    map's image, as every carried direction does (the target's own null is isotropic)."""
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((k, m.d_source))
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    return m.carry_direction(r.astype(np.float32)).astype(np.float32)
