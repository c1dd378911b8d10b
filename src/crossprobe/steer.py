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
    answer_ids: tuple[int, ...],
    directions: Mapping[int, Float[np.ndarray, "k d"]],
    alphas: Sequence[float],
    norms: Mapping[int, float],
    *,
    positions: Positions = "skip_first",
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "",
    readout: Any = None,
) -> tuple[Float[np.ndarray, " prompt"], dict[int, Float[np.ndarray, "k alpha prompt"]]]:
    """Clean margins, and per layer the margin change ``Δm[k, j, i]`` of prompt ``i`` with
    direction ``k`` added at dose ``alphas[j]`` (in units of ``norms[layer]``). ``readout``
    reads another number than the margin from the logits of ``answer_ids`` (e.g. the expected
    rating, :func:`crossprobe.rating.expected_rating_readout`)."""
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
        readout=readout,
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


# ---------------------------------------------------------------------------------------------
# Tables from the per-prompt responses of the workflow's steering jobs

#: What a positive slope means, per response (the sign convention stated in every table).
SIGN = {
    "margin": "+ = toward the positive answer (margin = logit(pos) - logit(neg)) as the probe's "
    "positive side (positive class, or larger target) is added",
    "rating": "+ = higher expected self-rating as the probe's positive side is added",
}

STEER_COLUMNS = [
    "model",
    "dataset",
    "response",
    "probe",
    "layer",
    "norm",
    "n",
    "slope",
    "ci_low",
    "ci_high",
    "p_value",
    "null_p95",
    "p_null",
    "beats_null",
    "backwards",
    "zero_dose_max",
    "sign",
]
CURVE_COLUMNS = ["model", "dataset", "response", "probe", "layer", "alpha", "mean", "sem", "n"]
CARRIED_COLUMNS = [
    "source",
    "target",
    "dataset",
    "response",
    "probe",
    "source_layer",
    "target_layer",
    "n",
    "slope_source",
    "slope_target",
    "slope_ratio",
    "ci_low",
    "ci_high",
    "p_value",
    "target_null_p95",
    "p_null",
    "prompt_corr",
    "pearson_ce",
]


def _slopes_by_prompt(group: Any) -> tuple[np.ndarray, np.ndarray, Float[np.ndarray, " prompt"]]:
    """(doses, prompt hashes, per-prompt slopes) of one direction's long-format responses."""
    wide = group.pivot(index="row_hash", columns="alpha", values="delta").sort_index(axis=1)
    alphas = wide.columns.to_numpy(np.float64)
    return alphas, wide.index.to_numpy(), prompt_slopes(alphas, wide.to_numpy(np.float64).T)


def null_summary(observed: float, null_slopes: np.ndarray) -> tuple[float, float]:
    """(95th percentile of the null's |slope|, permutation p-value of |observed| against it)."""
    null = np.abs(np.asarray(null_slopes, dtype=np.float64))
    if null.size == 0 or not np.isfinite(observed):
        return float("nan"), float("nan")
    p = (1 + int((null >= abs(observed)).sum())) / (1 + null.size)
    return float(np.quantile(null, 0.95)), float(p)


def self_tables(
    frame: Any, *, n_resamples: int = 1000, ci: float = 0.95, seed: int = 0
) -> tuple[Any, Any]:
    """The slope table and the mean response curves of one model's steering on one dataset.

    ``frame`` is a steering job's long table: ``model, dataset, response, kind (probe | null),
    probe, layer, norm, alpha, row_hash, delta``.
    """
    import pandas as pd

    rows, curves = [], []
    keys = ["model", "dataset", "response", "layer"]
    for (model, dataset, response, layer), g in frame.groupby(keys, sort=True):
        null = [
            _slopes_by_prompt(n)[2].mean() for _, n in g[g["kind"] == "null"].groupby("probe")
        ]
        for probe, p in g[g["kind"] == "probe"].groupby("probe", sort=True):
            alphas, _, slopes = _slopes_by_prompt(p)
            fit = dose_response(slopes, n_resamples=n_resamples, ci=ci, seed=seed)
            p95, p_null = null_summary(fit.slope, np.asarray(null))
            zero = p.loc[p["alpha"] == 0.0, "delta"].abs()
            rows.append(
                {
                    "model": model,
                    "dataset": dataset,
                    "response": response,
                    "probe": probe,
                    "layer": int(layer),
                    "norm": float(p["norm"].iloc[0]),
                    "n": fit.n,
                    "slope": fit.slope,
                    "ci_low": fit.ci_low,
                    "ci_high": fit.ci_high,
                    "p_value": fit.p_value,
                    "null_p95": p95,
                    "p_null": p_null,
                    "beats_null": bool(abs(fit.slope) > p95 and fit.ci_low * fit.ci_high > 0),
                    "backwards": bool(fit.ci_high < 0),
                    "zero_dose_max": float(zero.max()) if len(zero) else float("nan"),
                    "sign": SIGN[response],
                }
            )
            for alpha, a in p.groupby("alpha", sort=True):
                d = a["delta"].to_numpy(np.float64)
                curves.append(
                    {
                        "model": model,
                        "dataset": dataset,
                        "response": response,
                        "probe": probe,
                        "layer": int(layer),
                        "alpha": float(alpha),
                        "mean": float(d.mean()),
                        "sem": float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0,
                        "n": int(d.size),
                    }
                )
        for alpha, a in g[g["kind"] == "null"].groupby("alpha", sort=True):
            per_dir = a.groupby("probe")["delta"].mean().to_numpy(np.float64)
            for stat, value in (("null_low", per_dir.min()), ("null_high", per_dir.max())):
                curves.append(
                    {
                        "model": model,
                        "dataset": dataset,
                        "response": response,
                        "probe": stat,
                        "layer": int(layer),
                        "alpha": float(alpha),
                        "mean": float(value),
                        "sem": 0.0,
                        "n": int(per_dir.size),
                    }
                )
    return (
        pd.DataFrame(rows, columns=STEER_COLUMNS),
        pd.DataFrame(curves, columns=CURVE_COLUMNS),
    )


def carried_table(
    carried: Any,
    source_self: Any,
    target_self: Any,
    *,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> Any:
    """Steering with a source's probe carried into a target, beside the source's own.

    ``carried`` is a ``steer_carried`` job's long table (``source_layer`` and ``layer``, the
    target's); ``source_self`` and ``target_self`` the two models' ``steer_self`` tables for
    the same datasets (the source's slopes, and the target's random-direction null). Per cell:
    both slopes, their ratio (target / source), the carried slope's bootstrap interval, t-test
    and null p-value, and the Pearson correlation over prompts of the two models' per-prompt
    slopes (the steering analogue of Pearson_CE).
    """
    import pandas as pd

    out = []
    keys = ["dataset", "response", "probe", "source_layer", "layer"]
    for (dataset, response, probe, ls, lt), g in carried.groupby(keys, sort=True):
        src = source_self[
            (source_self["dataset"] == dataset)
            & (source_self["response"] == response)
            & (source_self["probe"] == probe)
            & (source_self["layer"] == ls)
        ]
        _, hashes_t, slopes_t = _slopes_by_prompt(g)
        _, hashes_s, slopes_s = _slopes_by_prompt(src)
        if not np.array_equal(hashes_s, hashes_t):
            raise ValueError(f"{dataset}: source and target were steered on different prompts")
        tgt_null = target_self[
            (target_self["dataset"] == dataset)
            & (target_self["response"] == response)
            & (target_self["kind"] == "null")
            & (target_self["layer"] == lt)
        ]
        null = [_slopes_by_prompt(n)[2].mean() for _, n in tgt_null.groupby("probe")]
        fit = dose_response(slopes_t, n_resamples=n_resamples, ci=ci, seed=seed)
        p95, p_null = null_summary(fit.slope, np.asarray(null))
        s_mean = float(slopes_s.mean())
        varied = slopes_s.size > 2 and np.ptp(slopes_s) > 0 and np.ptp(slopes_t) > 0
        out.append(
            {
                "source": g["source"].iloc[0],
                "target": g["model"].iloc[0],
                "dataset": dataset,
                "response": response,
                "probe": probe,
                "source_layer": int(ls),
                "target_layer": int(lt),
                "n": fit.n,
                "slope_source": s_mean,
                "slope_target": fit.slope,
                "slope_ratio": fit.slope / s_mean if s_mean != 0 else float("nan"),
                "ci_low": fit.ci_low,
                "ci_high": fit.ci_high,
                "p_value": fit.p_value,
                "target_null_p95": p95,
                "p_null": p_null,
                "prompt_corr": float(sps.pearsonr(slopes_s, slopes_t)[0]) if varied else np.nan,
                "pearson_ce": float("nan"),
            }
        )
    return pd.DataFrame(out, columns=CARRIED_COLUMNS)


def with_pearson_ce(table: Any, transfer: Any) -> Any:
    """``pearson_ce`` of each classification probe's margin cell from the transfer table (the
    same source, target, dataset, method and layers); NaN where there is none (ridge probes,
    ratings)."""
    if table.empty or transfer is None or transfer.empty:
        return table
    keys = ["source", "target", "dataset", "probe", "source_layer", "target_layer"]
    ce = transfer.rename(columns={"method": "probe", "pearson_ce": "_rho"})[[*keys, "_rho"]]
    ce = ce.assign(response="margin").drop_duplicates(keys)
    merged = table.drop(columns="pearson_ce").merge(ce, on=[*keys, "response"], how="left")
    return merged.rename(columns={"_rho": "pearson_ce"})[CARRIED_COLUMNS]
