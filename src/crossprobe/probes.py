"""Linear probes: difference of means and L2 logistic regression, saved as safetensors plus JSON.

A probe scores activations with ``weight · x + bias`` (label 1 where the score is positive);
its ``direction`` is the vector that ablation removes. Both live in raw activation space.
The sign and threshold are fixed on the `train` split only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from jaxtyping import Float

from crossprobe.errors import ConfigError
from crossprobe.io import atomic_path

ProbeMethod = Literal["dim", "logreg"]


@dataclass(frozen=True)
class Probe:
    """A fitted linear probe at one layer of one model."""

    method: str
    """How it was fitted: "dim" or "logreg"."""
    layer: int
    """Block index whose output it reads."""
    direction: Float[np.ndarray, " d_model"]
    """Raw-space direction that ablation removes (normalised before use)."""
    weight: Float[np.ndarray, " d_model"]
    """Raw-space scoring weight: score = weight · x + bias."""
    bias: float
    """Threshold term fixed on `train`."""
    mean: Float[np.ndarray, " d_model"]
    """Per-feature mean used for standardisation (zeros for dim)."""
    scale: Float[np.ndarray, " d_model"]
    """Per-feature standard deviation used for standardisation (ones for dim)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Model, dataset, layer, method, split hashes and package version."""

    def score(self, x: Float[np.ndarray, "row d_model"]) -> Float[np.ndarray, " row"]:
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(
                f"probe expects d_model={self.weight.shape[0]}, activations have shape {x.shape}"
            )
        return np.asarray(x, dtype=np.float64) @ self.weight + self.bias


ProbeFitter = Callable[[np.ndarray, np.ndarray, int], Probe]


def _check_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"probe fit: activations {x.shape} and labels {y.shape} do not match")
    if np.unique(y).size < 2:
        raise ConfigError("probe fit: the train split has a single class; a probe needs both.")
    return x, (y > 0.5).astype(np.int64)


def fit_dim(x: np.ndarray, y: np.ndarray, layer: int) -> Probe:
    """Difference of class means ``mu1 - mu0``; threshold halfway between the projected means."""
    x, y = _check_xy(x, y)
    mu1, mu0 = x[y == 1].mean(axis=0), x[y == 0].mean(axis=0)
    d = mu1 - mu0
    bias = -float(d @ (mu1 + mu0) / 2)
    d_model = x.shape[1]
    return Probe("dim", layer, d, d, bias, np.zeros(d_model), np.ones(d_model))


#: Floor on the standardisation scale of ``logreg``, as a share of the median coordinate's
#: standard deviation. Mapping standardised weights back as ``w / σ`` lets near-constant
#: coordinates dominate the raw-space direction. Measured on the real run's train splits
#: (`make real`, blocks at depth 0.5 / 0.75 / 1.0): Gemma 3 270M has coordinates down to 0.028
#: of the median σ, and in its block 17 on `larger_than` 39% of the logreg direction's squared
#: norm sat on one whose σ is 0.034 of the median; SmolLM2-135M's coordinates never fall below
#: 0.25 of it (0.249 at the lowest), so the floor leaves SmolLM2 as it was. With a pure-noise
#: coordinate at 1e-3 σ among 64 (400 rows), the share of the direction it takes falls from
#: 0.9998 unfloored to 0.12 at a floor of 0.1 and below 1e-3 at 0.25 (`tests/test_probes.py`).
SCALE_FLOOR = 0.25


def standard_scale(x: np.ndarray) -> np.ndarray:
    """Per-coordinate σ of ``x`` for standardising, floored at ``SCALE_FLOOR`` × median σ."""
    sd = x.std(axis=0)
    positive = sd[sd > 0]
    floor = SCALE_FLOOR * float(np.median(positive)) if positive.size else 1.0
    return np.maximum(sd, floor)


def fit_logreg(x: np.ndarray, y: np.ndarray, layer: int, *, c: float = 1.0) -> Probe:
    """L2 logistic regression on standardised activations, mapped back to raw space (w / σ).

    σ is floored (:func:`standard_scale`) so that near-constant coordinates cannot carry the
    direction.
    """
    from sklearn.linear_model import LogisticRegression

    x, y = _check_xy(x, y)
    mean, scale = x.mean(axis=0), standard_scale(x)
    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit((x - mean) / scale, y)
    w_std = clf.coef_[0]
    weight = w_std / scale
    bias = float(clf.intercept_[0] - weight @ mean)
    return Probe("logreg", layer, weight, weight, bias, mean, scale)


def fitter(method: str, *, logreg_c: float = 1.0) -> ProbeFitter:
    """The fitting function for a method name."""
    if method == "dim":
        return fit_dim
    if method == "logreg":
        return lambda x, y, layer: fit_logreg(x, y, layer, c=logreg_c)
    raise ConfigError(f"probes: unknown probe method {method!r}; choose dim or logreg.")


def probe_key(method: str, layer: int) -> str:
    return f"{method}/{layer}"


def save_probes(path: str | Path, probes: Sequence[Probe], meta: Mapping[str, Any]) -> None:
    """Write probes to ``path`` (safetensors) and their provenance to ``path`` with .json."""
    from safetensors.numpy import save_file

    path = Path(path)
    tensors: dict[str, np.ndarray] = {}
    entries = []
    for p in probes:
        key = probe_key(p.method, p.layer)
        for name in ("direction", "weight", "mean", "scale"):
            tensors[f"{key}/{name}"] = np.ascontiguousarray(getattr(p, name), dtype=np.float64)
        entries.append(
            {
                "key": key,
                "method": p.method,
                "layer": p.layer,
                "bias": p.bias,
                "provenance": p.provenance,
            }
        )
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"crossprobe": json.dumps(dict(meta))})
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(
            json.dumps({"meta": dict(meta), "probes": entries}, indent=2, sort_keys=True) + "\n"
        )


def load_probes(path: str | Path) -> dict[tuple[str, int], Probe]:
    """Probes keyed by (method, layer)."""
    from safetensors.numpy import load_file

    path = Path(path)
    tensors = load_file(str(path))
    info = json.loads(path.with_suffix(".json").read_text())
    out = {}
    for e in info["probes"]:
        k = e["key"]
        out[(e["method"], int(e["layer"]))] = Probe(
            method=e["method"],
            layer=int(e["layer"]),
            direction=tensors[f"{k}/direction"].astype(np.float64),
            weight=tensors[f"{k}/weight"].astype(np.float64),
            bias=float(e["bias"]),
            mean=tensors[f"{k}/mean"].astype(np.float64),
            scale=tensors[f"{k}/scale"].astype(np.float64),
            provenance=e["provenance"],
        )
    return out
