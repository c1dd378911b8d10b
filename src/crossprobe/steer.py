"""Steering dose-response: add ``α·N·u`` to a block's output and read the answer margin.

``u`` is a probe's unit direction (its positive side is the positive class, or larger targets
for a ridge probe), ``N`` the layer's typical residual norm and ``α`` the dose, so that one
list of doses means the same across models of different widths and scales. The vectors are
added at the positions ``positions`` picks (the same as for ablation: ``skip_first`` leaves
the first position and special tokens alone) of block ℓ's output, and the margin is read at
the last prompt token. The forward passes are those of directional ablation
(:func:`crossprobe.ablate.ablation_effects_by_layer` with ``edit="add"``): the blocks below ℓ
run once per prompt batch and every (dose, direction) is one copy of the batch above it, beside
an unedited copy that is the reference, so a dose of 0 changes nothing, exactly.

Per direction, each prompt's response is summarised by the least-squares slope of its margin
against ``α``; the direction's slope is their mean (the pooled least-squares slope, since every
prompt sees the same doses), with a bootstrap interval over prompts and the two-sided p-value
of a one-sample t-test of the per-prompt slopes (prompts are the unit, not (prompt, dose)
points, which are not independent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from jaxtyping import Float
from scipy import stats as sps

from crossprobe.models import Positions


def steering_vectors(
    directions: Float[np.ndarray, "k d"], alphas: Sequence[float], norm: float
) -> Float[np.ndarray, "k_alpha d"]:
    """``α·N·u`` for every direction (outer) and dose (inner): row ``i·len(alphas) + j`` is
    direction ``i`` at dose ``alphas[j]``. A zero direction stays zero."""
    d = np.asarray(directions, dtype=np.float64)
    lengths = np.linalg.norm(d, axis=1, keepdims=True)
    u = np.divide(d, lengths, out=np.zeros_like(d), where=lengths > 0)
    a = np.asarray(alphas, dtype=np.float64)
    return (u[:, None, :] * (a[None, :, None] * float(norm))).reshape(-1, d.shape[1])


def steering_effects(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    answer_ids: tuple[int, int],
    directions: Mapping[int, Float[np.ndarray, "k d"]],
    alphas: Sequence[float],
    norms: Mapping[int, float],
    *,
    positions: Positions = "skip_first",
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "",
) -> tuple[Float[np.ndarray, " prompt"], dict[int, Float[np.ndarray, "k alpha prompt"]]]:
    """Clean margins, and per layer the margin change ``Δm[k, j, i]`` of prompt ``i`` with
    direction ``k`` added at dose ``alphas[j]`` (in units of ``norms[layer]``)."""
    from crossprobe.ablate import ablation_effects_by_layer

    vectors = {layer: steering_vectors(d, alphas, norms[layer]) for layer, d in directions.items()}
    res = ablation_effects_by_layer(
        model,
        tokenizer,
        prompts,
        answer_ids,
        vectors,
        scope="layer",
        positions=positions,
        batch_size=batch_size,
        progress=progress,
        desc=desc,
        edit="add",
    )
    n_alpha = len(alphas)
    return res.clean, {
        layer: dm.reshape(-1, n_alpha, dm.shape[-1]) for layer, dm in res.effects.items()
    }


def typical_norm(x: Float[np.ndarray, "row d"]) -> float:
    """The median L2 norm of the rows of ``x`` (a layer's cached activations)."""
    return float(np.median(np.linalg.norm(np.asarray(x, dtype=np.float64), axis=1)))


def prompt_slopes(
    alphas: Sequence[float], response: Float[np.ndarray, "alpha prompt"]
) -> Float[np.ndarray, " prompt"]:
    """Least-squares slope of each prompt's response against the doses."""
    a = np.asarray(alphas, dtype=np.float64)
    r = np.asarray(response, dtype=np.float64)
    if r.shape[0] != a.size or a.size < 2 or np.ptp(a) == 0:
        raise ValueError(f"need responses [alpha, prompt] at two or more doses, got {r.shape}")
    ac = a - a.mean()
    return (ac @ (r - r.mean(axis=0))) / float(ac @ ac)


class DoseResponse(NamedTuple):
    slope: float
    """Mean per-prompt slope (margin per unit of dose)."""
    ci_low: float
    ci_high: float
    p_value: float
    """Two-sided one-sample t-test of the per-prompt slopes against 0."""
    n: int


def dose_response(
    slopes: Float[np.ndarray, " prompt"],
    *,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> DoseResponse:
    """The mean of per-prompt slopes with a percentile bootstrap interval over prompts."""
    s = np.asarray(slopes, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boots = s[rng.integers(0, s.size, size=(n_resamples, s.size))].mean(axis=1)
    lo, hi = np.quantile(boots, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    p = float(sps.ttest_1samp(s, 0.0).pvalue) if s.size > 1 and np.ptp(s) > 0 else float("nan")
    return DoseResponse(float(s.mean()), float(lo), float(hi), p, int(s.size))
