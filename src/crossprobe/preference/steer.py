"""Steering dose-response: add ``α·N·u`` to a block's output and read the answer margin.

``u`` is a probe's unit direction (its positive side is the positive class, or larger targets
for a ridge probe), ``N`` the layer's typical spread (:func:`typical_spread`) and ``α`` the
dose, so that one list of doses means the same across models of different widths and
scales. The vectors are added at the positions ``positions`` picks (the same as for
ablation: ``skip_first`` leaves the first position and special tokens alone) of block ℓ's
output, and the margin is read at the last prompt token. The forward passes are those of
directional ablation
(:func:`crossprobe.ablate.ablation_effects_by_layer` with ``edit="add"``): the blocks below ℓ
run once per prompt batch and every (dose, direction) is one copy of the batch above it, beside
an unedited copy that is the reference, so a dose of 0 changes nothing, exactly.

Per direction, each prompt's response is summarised by the least-squares slope of its margin
against ``α``; the direction's slope is their mean (the pooled least-squares slope, since every
prompt sees the same doses), with a bootstrap interval that resamples facts (the prompts'
groups) and the two-sided p-value of a one-sample t-test of the per-fact mean slopes (facts
are the unit, not prompts or (prompt, dose) points, which are not independent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from jaxtyping import Float
from scipy import stats as sps

from crossprobe.models import Positions
from crossprobe.stats import bootstrap_mean, group_means


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
    rating, :func:`crossprobe.preference.rating.expected_rating_readout`)."""
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


def typical_spread(x: Float[np.ndarray, "row d"]) -> float:
    """The median L2 distance of the rows of ``x`` (a layer's cached activations) from their
    mean: the dose unit ``N``.

    Not the median ‖x‖: that includes the mean vector every prompt shares (and a real model's
    massive channels), which is 9.3-9.5 times the spread in SmolLM2-135M at blocks 15 and 29
    and 1.4-3.3 times in the zoo, so "the same α" would be a push several times larger,
    relative to how prompts differ, in one model than in another.
    """
    x = np.asarray(x, dtype=np.float64)
    return float(np.median(np.linalg.norm(x - x.mean(axis=0), axis=1)))


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
    """Two-sided one-sample t-test against 0 of the per-fact mean slopes."""
    n: int
    n_facts: int = 0
    """Independent units: the facts (groups) the prompts state; each prompt alone without."""


def dose_response(
    slopes: Float[np.ndarray, " prompt"],
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> DoseResponse:
    """The mean of per-prompt slopes with a percentile bootstrap interval that resamples facts
    (``groups``: every wording of a fact moves together), and the t-test of the per-fact means.

    Without ``groups`` every prompt is its own fact.
    """
    s = np.asarray(slopes, dtype=np.float64)
    lo, hi = bootstrap_mean(s, groups=groups, n_resamples=n_resamples, ci=ci, seed=seed)
    facts = group_means(s, groups)
    varied = facts.size > 1 and np.ptp(facts) > 0
    p = float(sps.ttest_1samp(facts, 0.0).pvalue) if varied else float("nan")
    return DoseResponse(float(s.mean()), lo, hi, p, int(s.size), int(facts.size))


def signed(probe: str, response: str) -> bool:
    """Whether a probe's positive side says which way the answer should move.

    A classification probe's positive side is the true class, and the self-rating's ridge
    probe points to higher ratings: for both, a push along it that lowers the margin (or the
    rating) goes the wrong way. Any other ridge target (a number in the statement, say) has a
    sign that says nothing about the answer, so it is never flagged ``backwards``.
    """
    del response  # both responses (margin, rating) read "more true" upward
    return not probe.startswith("ridge:") or probe == "ridge:self_rating"


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
    "n_facts",
    "slope",
    "ci_low",
    "ci_high",
    "p_value",
    "null_p95",
    "p_null",
    "null_k",
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
    "n_facts",
    "carried_length",
    "carried",
    "slope_source",
    "source_beats_null",
    "slope_target",
    "slope_ratio",
    "ci_low",
    "ci_high",
    "p_value",
    "target_null_p95",
    "p_null",
    "null_k",
    "beats_null",
    "prompt_corr",
    "pearson_ce",
]


DIRECTION_KEYS = ["model", "dataset", "response", "kind", "probe", "source_layer", "layer"]


def slopes_frame(frame: Any) -> Any:
    """Each (direction, prompt)'s least-squares slope of its change against the dose, from a
    steering job's long table: the keys of :data:`DIRECTION_KEYS` present, ``row_hash``,
    ``slope`` (rows ordered by them). Every direction must see the same doses on every prompt."""
    keys = [k for k in DIRECTION_KEYS if k in frame.columns]
    a = frame["alpha"].to_numpy(np.float64)
    alphas = np.unique(a)
    if alphas.size < 2:
        raise ValueError(f"need responses at two or more doses, got {alphas.tolist()}")
    counts = frame.groupby([*keys, "row_hash"], sort=False)["alpha"].nunique()
    if (counts != alphas.size).any():
        raise ValueError("every direction and prompt needs a response at every dose")
    ac = a - alphas.mean()
    work = frame[[*keys, "row_hash"]].assign(_w=ac * frame["delta"].to_numpy(np.float64))
    out = work.groupby([*keys, "row_hash"], sort=True)["_w"].sum().rename("slope")
    out = (out / float(((alphas - alphas.mean()) ** 2).sum())).reset_index()
    if "split_key" in frame.columns:  # each prompt's fact, for intervals that resample facts
        facts = frame.drop_duplicates("row_hash").set_index("row_hash")["split_key"]
        out["split_key"] = facts.reindex(out["row_hash"]).to_numpy()
    return out


def _facts(slopes: Any) -> np.ndarray | None:
    """The fact (group) of each row of a slopes frame, None where the frame has none."""
    return slopes["split_key"].to_numpy() if "split_key" in slopes.columns else None


def _null_means(slopes: Any) -> np.ndarray:
    """Each null direction's mean slope over prompts."""
    return slopes[slopes["kind"] == "null"].groupby("probe")["slope"].mean().to_numpy()


def null_summary(observed: float, null_slopes: np.ndarray) -> tuple[float, float]:
    """(95th percentile of the null's |slope|, permutation p-value of |observed| against it)."""
    null = np.abs(np.asarray(null_slopes, dtype=np.float64))
    if null.size == 0 or not np.isfinite(observed):
        return float("nan"), float("nan")
    p = (1 + int((null >= abs(observed)).sum())) / (1 + null.size)
    return float(np.quantile(null, 0.95)), float(p)


def beats_null(fit: DoseResponse, null_p95: float) -> bool:
    """The slope's interval excludes 0 and its size exceeds the null's 95th percentile."""
    return bool(abs(fit.slope) > null_p95 and fit.ci_low * fit.ci_high > 0)


def _curves(frame: Any) -> list[dict[str, Any]]:
    """Mean response per probe and dose (with its standard error), and the null's range."""
    keys = ["model", "dataset", "response", "probe", "layer", "alpha"]
    probes = frame[frame["kind"] == "probe"]
    stats = probes.groupby(keys, sort=True)["delta"].agg(["mean", "std", "count"]).reset_index()
    stats["sem"] = (stats["std"] / np.sqrt(stats["count"])).fillna(0.0)
    rows = stats.rename(columns={"count": "n"})[CURVE_COLUMNS].to_dict("records")
    nulls = frame[frame["kind"] == "null"].groupby(keys, sort=True)["delta"].mean().reset_index()
    band_keys = ["model", "dataset", "response", "layer", "alpha"]
    for key, g in nulls.groupby(band_keys, sort=True):
        base = dict(zip(band_keys, key, strict=True))
        for stat, value in (("null_low", g["delta"].min()), ("null_high", g["delta"].max())):
            rows.append({**base, "probe": stat, "mean": float(value), "sem": 0.0, "n": len(g)})
    return rows


def self_tables(
    frame: Any, *, n_resamples: int = 1000, ci: float = 0.95, seed: int = 0
) -> tuple[Any, Any]:
    """The slope table and the mean response curves of one model's steering.

    ``frame`` is a ``steer_self`` job's long table: ``model, dataset, response, kind (probe |
    null), probe, source_layer, layer, norm, alpha, row_hash, clean, delta``.
    """
    import pandas as pd

    slopes = slopes_frame(frame)
    norms = frame.groupby(["model", "dataset", "layer"])["norm"].first()
    zero = frame[frame["alpha"] == 0.0].groupby(["model", "dataset", "response", "probe", "layer"])
    zero_max = zero["delta"].apply(lambda d: float(np.abs(d).max()))
    rows = []
    keys = ["model", "dataset", "response", "layer"]
    for (model, dataset, response, layer), g in slopes.groupby(keys, sort=True):
        null = _null_means(g)
        for probe, p in g[g["kind"] == "probe"].groupby("probe", sort=True):
            fit = dose_response(
                p["slope"].to_numpy(), groups=_facts(p), n_resamples=n_resamples, ci=ci, seed=seed
            )
            p95, p_null = null_summary(fit.slope, null)
            beats = beats_null(fit, p95)
            rows.append(
                {
                    "model": model,
                    "dataset": dataset,
                    "response": response,
                    "probe": probe,
                    "layer": int(layer),
                    "norm": float(norms[(model, dataset, layer)]),
                    "n": fit.n,
                    "n_facts": fit.n_facts,
                    "slope": fit.slope,
                    "ci_low": fit.ci_low,
                    "ci_high": fit.ci_high,
                    "p_value": fit.p_value,
                    "null_p95": p95,
                    "p_null": p_null,
                    "null_k": int(null.size),
                    "beats_null": beats,
                    "backwards": bool(beats and fit.slope < 0 and signed(probe, response)),
                    "zero_dose_max": zero_max.get(
                        (model, dataset, response, probe, layer), float("nan")
                    ),
                    "sign": SIGN[response],
                }
            )
    return (
        pd.DataFrame(rows, columns=STEER_COLUMNS),
        pd.DataFrame(_curves(frame), columns=CURVE_COLUMNS),
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

    ``carried`` is a ``steer_carried`` job's long table (``source_layer``, and ``layer``: the
    target's; ``carried_length`` and ``carried`` from the map); ``source_self`` and
    ``target_self`` the :func:`slopes_frame` of the two models' ``steer_self`` tables (the
    source's slopes and null, and the target's null). Per cell: both slopes, whether the
    source's beats its own null, the ratio (target / source, only where it does), the carried
    slope's interval, t-test and null p-value, and the Pearson correlation over prompts of the
    two models' per-prompt slopes (the steering analogue of Pearson_CE). A direction the map
    does not carry (``carried`` false) was not steered: its numbers are left empty.
    """
    import pandas as pd

    boot: dict[str, Any] = {"n_resamples": n_resamples, "ci": ci, "seed": seed}
    out = []
    keys = ["dataset", "response", "probe", "source_layer", "layer"]
    src_by = {k: g for k, g in source_self.groupby(["dataset", "response", "probe", "layer"])}
    null_keys = ["dataset", "response", "layer"]
    src_null = {k: _null_means(g) for k, g in source_self.groupby(null_keys)}
    tgt_null = {k: _null_means(g) for k, g in target_self.groupby(null_keys)}
    lengths = carried.drop_duplicates(keys).set_index(keys)
    for key, g in slopes_frame(carried).groupby(keys, sort=True):
        dataset, response, probe, ls, lt = key
        src = src_by[(dataset, response, probe, ls)]
        if not np.array_equal(src["row_hash"].to_numpy(), g["row_hash"].to_numpy()):
            raise ValueError(f"{dataset}: source and target were steered on different prompts")
        row = _carried_row(carried, key, src, g, src_null, tgt_null, lengths, boot)
        if not row["carried"]:
            _blank_uncarried(row)
        out.append(row)
    return pd.DataFrame(out, columns=CARRIED_COLUMNS)


def _carried_row(
    carried: Any,
    key: tuple[Any, ...],
    src: Any,
    g: Any,
    src_null: dict[Any, np.ndarray],
    tgt_null: dict[Any, np.ndarray],
    lengths: Any,
    boot: dict[str, Any],
) -> dict[str, Any]:
    """One row of :func:`carried_table`: a cell's source (``src``) and target (``g``) slopes."""
    dataset, response, probe, ls, lt = key
    slopes_s, slopes_t = src["slope"].to_numpy(), g["slope"].to_numpy()
    own = dose_response(slopes_s, groups=_facts(src), **boot)
    own_beats = beats_null(own, null_summary(own.slope, src_null[(dataset, response, ls)])[0])
    fit = dose_response(slopes_t, groups=_facts(g), **boot)
    null = tgt_null.get((dataset, response, lt), np.empty(0))
    p95, p_null = null_summary(fit.slope, null)
    varied = slopes_s.size > 2 and np.ptp(slopes_s) > 0 and np.ptp(slopes_t) > 0
    length = lengths.loc[key]
    return {
        "source": carried["source"].iloc[0],
        "target": carried["model"].iloc[0],
        "dataset": dataset,
        "response": response,
        "probe": probe,
        "source_layer": int(ls),
        "target_layer": int(lt),
        "n": fit.n,
        "n_facts": fit.n_facts,
        "carried_length": float(length.get("carried_length", np.nan)),
        "carried": bool(length.get("carried", True)),
        "slope_source": own.slope,
        "source_beats_null": own_beats,
        "slope_target": fit.slope,
        "slope_ratio": fit.slope / own.slope if own_beats else float("nan"),
        "ci_low": fit.ci_low,
        "ci_high": fit.ci_high,
        "p_value": fit.p_value,
        "target_null_p95": p95,
        "p_null": p_null,
        "null_k": int(null.size),
        "beats_null": beats_null(fit, p95),
        "prompt_corr": float(sps.pearsonr(slopes_s, slopes_t)[0]) if varied else np.nan,
        "pearson_ce": float("nan"),
    }


def _blank_uncarried(row: dict[str, Any]) -> None:
    """Empty the target's numbers of a direction the map does not carry (it was not steered)."""
    for col in ("slope_target", "slope_ratio", "ci_low", "ci_high", "p_value"):
        row[col] = float("nan")
    row.update(p_null=float("nan"), beats_null=False, prompt_corr=float("nan"))


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
