"""Scoring a probe's transfer from a source to a target model, and the transfer matrix.

A cell is (source, target, dataset, method, source_layer, target_layer). Its Pearson_CE is
the correlation over the same `test` prompts (label 1) of the effect of ablating the source's
own probe direction in the source and the carried direction in the target.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crossprobe.stats import (
    bootstrap_pearson,
    cosine,
    effect_ratio,
    null_test,
    overstatement,
    pearson,
)
from crossprobe.transfer.options import TransferOptions

#: Prompts a cell needs before its rho counts toward a score, whatever floor the run sets: a run
#: may lower ``transfer.min_prompts`` to compute smaller cells, and those stay unscored.
SCORED_MIN_PROMPTS = 200

CELL_COLUMNS = [
    "source",
    "target",
    "dataset",
    "method",
    "layer_position",
    "source_layer",
    "target_layer",
    "n",
    "n_facts",
    "carried_length",
    "carried",
    "pearson_ce",
    "ci_low",
    "ci_high",
    "null_p95",
    "p_value",
    "null_k",
    "matched_null_p95",
    "matched_p_value",
    "matched_null_k",
    "source_effect",
    "target_effect",
    "source_floor",
    "target_floor",
    "beats_null",
    "transfer_auroc",
    "source_auroc",
    "target_auroc",
    "cosine",
    "map_r2",
    "scored",
]

STRONG, PARTIAL = 0.70, 0.40


@dataclass(frozen=True)
class CellInputs:
    """Everything one cell's scores are computed from."""

    dm_source: np.ndarray
    """Effect of the source probe in the source, per prompt."""
    dm_target: np.ndarray
    """Effect of the carried probe in the target, same prompts."""
    dm_null: np.ndarray
    """Effects of k random target directions at the target layer, [k, prompt]."""
    dm_source_null: np.ndarray
    """Effects of k random source directions at the source layer, [k, prompt]."""
    carried_direction: np.ndarray
    """d_{s->t} in the target's space."""
    target_direction: np.ndarray
    """The target's own probe direction for the same dataset, method and layer."""
    transfer_auroc: float
    source_auroc: float
    target_auroc: float
    map_r2: float
    floor_source: float = 0.0
    """Noise floor at the source layer: RMS Δm of an explicit zero direction (exactly 0 when
    the reference copy in each pass cancels all rounding)."""
    floor_target: float = 0.0
    """Noise floor at the target layer, the same way."""
    groups: np.ndarray | None = None
    """Each prompt's fact (its group, the split key): the unit the bootstrap resamples."""
    carried_length: float = 1.0
    """``‖A·u‖`` relative to a random unit direction's through the same map (1 on the diagonal)."""
    carried: bool = True
    """Whether the map carries the direction (its relative length reaches the floor)."""
    dm_matched_null: np.ndarray | None = None
    """Effects of k random source directions carried through the map, [k, prompt] (None on the
    diagonal, where the map is the identity and this null is the target's own)."""


def score_cell(
    inputs: CellInputs,
    *,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    min_effect_ratio: float = TransferOptions.min_effect_ratio,
    min_facts: int = 0,
) -> dict[str, Any]:
    """Pearson_CE with its fact-resampled bootstrap CI, both nulls and the cosine baseline.

    ``beats_null`` needs, all at once: the direction carried (:attr:`CellInputs.carried`); rho's
    interval above the 95th percentile of both random-direction nulls (the target's own,
    isotropic, and the map-matched one); each ablation's effect beating its own model's null
    (:func:`effect_beats_null`: above the 95th percentile of the random directions' effects
    and at least ``min_effect_ratio`` times their median), since Pearson's rho is blind to
    scale and two effects no larger than a random direction's can still correlate; each effect
    at least ``min_effect_ratio`` (and 2) times its model's noise floor (the RMS Δm of a zero
    direction), so that rounding noise can neither pass for an effect nor narrow the null; and
    at least ``min_facts`` facts. A direction that is not carried gets no rho (NaN).

    Every statistic of one cell, in the order docs/definitions.md defines them; it reads best
    whole, as that page's checklist.
    """
    if inputs.dm_source.shape != inputs.dm_target.shape:
        raise ValueError(
            f"source effects {inputs.dm_source.shape} and target effects "
            f"{inputs.dm_target.shape} must cover the same prompts"
        )
    boot: dict[str, Any] = {"n_resamples": n_resamples, "ci": ci, "seed": seed}
    corr = bootstrap_pearson(inputs.dm_source, inputs.dm_target, groups=inputs.groups, **boot)
    if not inputs.carried:
        corr = corr._replace(rho=float("nan"), ci_low=float("nan"), ci_high=float("nan"))
    null_rhos = np.array([pearson(inputs.dm_source, row) for row in inputs.dm_null])
    null = null_test(corr.rho, null_rhos)
    matched_src = inputs.dm_matched_null if inputs.dm_matched_null is not None else inputs.dm_null
    matched_rhos = np.array([pearson(inputs.dm_source, row) for row in matched_src])
    matched = null_test(corr.rho, matched_rhos)
    effects = (
        effect_ratio(inputs.dm_source, inputs.dm_source_null),
        effect_ratio(inputs.dm_target, inputs.dm_null),
    )
    moved = all(
        effect_beats_null(dm, dm_null, min_effect_ratio)
        for dm, dm_null in (
            (inputs.dm_source, inputs.dm_source_null),
            (inputs.dm_target, inputs.dm_null),
        )
    )
    above_floor = all(
        _rms(dm) >= max(min_effect_ratio, 2.0) * floor
        for dm, floor in (
            (inputs.dm_source, inputs.floor_source),
            (inputs.dm_target, inputs.floor_target),
        )
    )
    # An undefined (nan) effect ratio or interval never beats the null.
    beats = (
        inputs.carried
        and corr.ci_low > max(null.p95, matched.p95)
        and moved
        and above_floor
        and corr.n_groups >= min_facts
    )
    return {
        "n": corr.n,
        "n_facts": corr.n_groups,
        "carried_length": inputs.carried_length,
        "carried": bool(inputs.carried),
        "pearson_ce": corr.rho,
        "ci_low": corr.ci_low,
        "ci_high": corr.ci_high,
        "null_p95": null.p95,
        "p_value": null.p_value,
        "null_k": null.k,
        "matched_null_p95": matched.p95,
        "matched_p_value": matched.p_value,
        "matched_null_k": matched.k,
        "source_effect": effects[0],
        "target_effect": effects[1],
        "source_floor": inputs.floor_source,
        "target_floor": inputs.floor_target,
        "beats_null": bool(beats),
        "transfer_auroc": inputs.transfer_auroc,
        "source_auroc": inputs.source_auroc,
        "target_auroc": inputs.target_auroc,
        "cosine": cosine(inputs.carried_direction, inputs.target_direction),
        "map_r2": inputs.map_r2,
        "_null_rhos": null_rhos,
        "_matched_rhos": matched_rhos if inputs.dm_matched_null is not None else np.empty(0),
    }


def effect_beats_null(
    dm: np.ndarray, dm_null: np.ndarray, min_ratio: float = TransferOptions.min_effect_ratio
) -> bool:
    """Whether an ablation moves the margin more than random directions of its model do.

    Its RMS over prompts must exceed the 95th percentile of the k random directions' RMS
    effects (a one-sided permutation test at 5%, resolution 1/(k+1)) and be at least
    ``min_ratio`` times their median (:func:`crossprobe.stats.effect_ratio`).
    """
    null = np.asarray(dm_null, dtype=np.float64)
    if null.ndim != 2 or null.shape[0] == 0:
        return False
    rms_null = np.sqrt(np.mean(null**2, axis=1))
    ratio = effect_ratio(dm, null)
    return bool(_rms(dm) > np.percentile(rms_null, 95) and ratio >= min_ratio)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def noise_floor(dm_zero: np.ndarray | None) -> float:
    """RMS over prompts of a zero direction's Δm (0 for effects written without one)."""
    return 0.0 if dm_zero is None else _rms(dm_zero)


def band(rho: float) -> str:
    """The strong / partial / weak band of a mean rho."""
    if not np.isfinite(rho):
        return "no data"
    return "strong" if rho >= STRONG else "partial" if rho >= PARTIAL else "weak"


def scoring_floor(min_prompts: int) -> int:
    """Prompts a scored cell needs: ``min_prompts``, and never fewer than SCORED_MIN_PROMPTS."""
    return max(int(min_prompts), SCORED_MIN_PROMPTS)


def scored_cells(
    table: pd.DataFrame,
    *,
    min_prompts: int,
    min_sources: int,
    controls: Collection[str] = (),
    min_facts: int = 0,
) -> pd.Series:
    """Which cells count toward a score (a boolean per row of ``table``).

    A cell needs a finite rho over enough prompts (:func:`scoring_floor`) and ``min_facts``
    facts, and a direction the map carried. An off-diagonal
    cell also needs its probe (dataset, method, layer position) carried into its target from at
    least ``min_sources`` distinct source models whose cells have that much, not counting the
    ``controls``; single pairs are reported but not scored. A diagonal cell (the identity)
    needs only its prompts.
    """
    ok = (table["n"] >= scoring_floor(min_prompts)) & np.isfinite(table["pearson_ce"])
    if "n_facts" in table.columns:
        ok &= table["n_facts"] >= min_facts
    if "carried" in table.columns:
        ok &= table["carried"].astype(bool)
    off = table["source"] != table["target"]
    keys = ["target", "dataset", "method", "layer_position"]
    counted = ok & off & ~table["source"].isin(list(controls))
    sources = table["source"].where(counted).groupby([table[k] for k in keys])
    return (ok & (~off | (sources.transform("nunique") >= min_sources))).astype(bool)


def transfer_matrix(table: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Mean rho per (source, target) over scored cells, with the count n, the band, how many
    of those n cells beat their null (``beats_null``; none is counted on the diagonal), and how
    many of the pair's probes the map did not carry (``not_carried``: never in the mean).

    The diagonal is the identity: 1.0 wherever the model has cells at all, with n its cells.
    """
    scored = table[table["scored"].astype(bool) & np.isfinite(table["pearson_ce"])]
    rows = []
    for s in models:
        for t in models:
            if s == t:  # the identity: every cell of the model, scored or not
                sub = table[(table.source == s) & (table.target == t)]
                mean = 1.0 if len(sub) else float("nan")
            else:
                sub = scored[(scored.source == s) & (scored.target == t)]
                mean = float(sub["pearson_ce"].mean()) if len(sub) else float("nan")
            rows.append(
                {
                    "source": s,
                    "target": t,
                    "mean_pearson_ce": mean,
                    "n": len(sub),
                    "beats_null": 0 if s == t else int(sub["beats_null"].astype(bool).sum()),
                    "not_carried": _not_carried(table, s, t),
                    "band": "identity" if s == t else band(mean),
                }
            )
    return pd.DataFrame(rows)


def _not_carried(table: pd.DataFrame, source: str, target: str) -> int:
    if "carried" not in table.columns:
        return 0
    pair = table[(table.source == source) & (table.target == target)]
    return int((~pair["carried"].astype(bool)).sum())


def overstatement_summary(table: pd.DataFrame) -> dict[str, float | int]:
    """Median cosine against median rho over the run's scored off-diagonal cells."""
    off = table[(table.source != table.target) & table["scored"].astype(bool)]
    o = overstatement(off["cosine"].to_numpy(), off["pearson_ce"].to_numpy())
    return {
        "cells": o.cells,
        "median_cosine": o.median_cosine,
        "median_pearson_ce": o.median_rho,
        "overstatement": o.overstatement,
    }


def probe_id(row: Mapping[str, object]) -> str:
    """A probe across models: dataset, method and layer position (relative depth slot)."""
    return f"{row['dataset']}-{row['method']}-p{row['layer_position']}"


def probebench_entries(table: pd.DataFrame) -> dict[str, list[dict[str, object]]]:
    """One entry per off-diagonal cell, grouped by probe id."""
    out: dict[str, list[dict[str, object]]] = {}
    off = table[table.source != table.target].sort_values(
        ["dataset", "method", "layer_position", "source", "target"]
    )
    for row in off.to_dict("records"):
        pid = probe_id(row)
        out.setdefault(pid, []).append(
            {
                "probeId": pid,
                "sourceModel": row["source"],
                "targetModel": row["target"],
                "pearson_ce": _num(row["pearson_ce"]),
                "transfer_auroc": _num(row["transfer_auroc"]),
                "notes": (
                    f"layers {row['source_layer']}->{row['target_layer']}; "
                    f"95% CI [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}] over "
                    f"{row.get('n_facts', row['n'])} facts; n={row['n']}; "
                    f"{'carried' if row.get('carried', True) else 'NOT carried by the map'} "
                    f"(length x{_fmt(row.get('carried_length', float('nan')))}); "
                    f"null p95={_fmt(row['null_p95'])}, p={_fmt(row['p_value'])}; "
                    f"effect x{_fmt(row['source_effect'])} source, "
                    f"x{_fmt(row['target_effect'])} target (random direction = 1); "
                    f"{'beats' if row['beats_null'] else 'does not beat'} its null; "
                    f"cosine={_fmt(row['cosine'])}; "
                    f"{'scored' if row['scored'] else 'not scored'}"
                ),
            }
        )
    return out


def _num(x: object) -> float | None:
    v = float(x)  # type: ignore[arg-type]
    return round(v, 6) if np.isfinite(v) else None


def _fmt(x: object) -> str:
    v = float(x)  # type: ignore[arg-type]
    return f"{v:.3f}" if np.isfinite(v) else "nan"


# ---------------------------------------------------------------------------------------------
# The models' own answers

ANSWER_COLUMNS = ["model", "dataset", "n", "positives", "answer_auroc", "answer_accuracy"]


def answer_summary(margins: Mapping[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """Per (model, dataset): AUROC of the model's own answer margin against the label on the
    ``test`` rows, and its accuracy (margin > 0 for label 1, < 0 for label 0).

    A causal agreement on the margin only means something where this AUROC is well above 0.5:
    otherwise the model's answer does not depend on the feature its probes find.
    """
    from crossprobe.stats import accuracy, auroc

    rows = []
    for (model, dataset), df in sorted(margins.items()):
        y = (df["label"].to_numpy(np.float64) > 0.5).astype(int)
        m = df["margin"].to_numpy(np.float64)
        rows.append(
            {
                "model": model,
                "dataset": dataset,
                "n": len(df),
                "positives": int(y.sum()),
                "answer_auroc": auroc(y, m),
                "answer_accuracy": accuracy(y, m),
            }
        )
    return pd.DataFrame(rows, columns=ANSWER_COLUMNS)


def with_answer_auroc(table: pd.DataFrame, answers: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each cell's ``source_answer_auroc`` and ``target_answer_auroc``."""
    a = answers.set_index(["model", "dataset"])["answer_auroc"]
    out = table.copy()
    for side in ("source", "target"):
        keys = pd.MultiIndex.from_arrays([out[side], out["dataset"]])
        out[f"{side}_answer_auroc"] = a.reindex(keys).to_numpy()
    return out
