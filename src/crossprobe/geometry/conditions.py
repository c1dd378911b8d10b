"""Condition geometry against behaviour: do conditions that sit close in a model's residual
stream also make it behave alike?

A *condition* is any prefix of a prompt (a persona system prompt by default). For each model and
layer the geometry is computed from last-token activations of every (condition, question):

1. the **centroid** of a condition is the mean of its activations over the questions;
2. the centroids are **centred** by their mean over conditions (the global mean; with the same
   number of questions per condition it equals the mean over all rows);
3. each centred centroid is **L2-normalised**, and the geometry is the matrix of their cosines.

A **behaviour** table gives, for a *source* condition ``s`` and another condition ``c``, a number
``behaviour(s, c)``: any measured quantity from a user's file, or the built-in measured one,
``1 − mean_q JSD(p_{s,q}, p_{c,q}) / ln 2``, a similarity in [0, 1] between the model's next-token
distributions after probe question ``q`` under ``s`` and under ``c`` (probe questions disjoint
from the geometry's). It is a behavioural similarity, not the leakage of a trained behaviour: no
model is fine-tuned here.

Per source, Spearman ρ and Pearson r over the other conditions ``c`` between ``cos(s, c)`` and
``behaviour(s, c)``; pooled over sources by stacking the pairs. See docs/definitions.md,
"Condition geometry".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from jaxtyping import Float, Int
from scipy import stats

from crossprobe.errors import ConfigError

PromptFormat = Literal["raw", "chat"]
BUILTIN = "builtin"
MEASURED = "measured"
#: The fewest conditions a run may have: a per-source correlation needs 3 other conditions.
MIN_CONDITIONS = 4
POOLED = "pooled"

BEHAVIOUR_COLUMNS = ["source", "condition", "value"]
TABLE_COLUMNS = [
    "geometry_model",
    "behaviour_model",
    "via",
    "activations_model",
    "layer_position",
    "layer",
    "activations_layer",
    "source",
    "n",
    "spearman",
    "spearman_p",
    "pearson",
    "pearson_p",
]


# ---------------------------------------------------------------------------------------------
# The conditions set


class ConditionsSet(NamedTuple):
    """The conditions, the questions that give the geometry and the probe questions."""

    conditions: tuple[tuple[str, str], ...]
    """(name, text) of each condition, in order."""
    questions: tuple[str, ...]
    probe_questions: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.conditions]


def builtin_set() -> ConditionsSet:
    """The shipped personas, questions and probe questions (:mod:`crossprobe.geometry.personas`)."""
    from crossprobe.geometry.personas import PERSONAS, PROBE_QUESTIONS, QUESTIONS

    return ConditionsSet(tuple(PERSONAS.items()), QUESTIONS, PROBE_QUESTIONS)


def _read_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


def read_conditions(entry: str | Mapping[str, str], key: str) -> tuple[tuple[str, str], ...]:
    """Conditions from config: ``builtin``, an inline mapping name -> text, or a file (YAML
    mapping, or CSV with columns ``name`` and ``text``)."""
    if isinstance(entry, Mapping):
        out = tuple((str(k), str(v)) for k, v in entry.items())
    elif entry == BUILTIN:
        out = builtin_set().conditions
    else:
        p = _existing(entry, key)
        if p.suffix.lower() in (".yaml", ".yml"):
            data = _read_yaml(p)
            if not isinstance(data, Mapping):
                raise ConfigError(f"{key}: {entry} must hold a mapping of name: text")
            out = tuple((str(k), str(v)) for k, v in data.items())
        elif p.suffix.lower() == ".csv":
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
            if not {"name", "text"} <= set(df.columns):
                raise ConfigError(f"{key}: {entry} needs columns `name` and `text`")
            out = tuple(zip(df["name"], df["text"], strict=True))
        else:
            raise ConfigError(f"{key}: {entry}: give a .yaml or .csv file, or `builtin`")
    names = [n for n, _ in out]
    if POOLED in names:
        raise ConfigError(
            f"{key}: a condition is named {POOLED!r}, the name of the pooled statistic in "
            "geometry_behaviour.csv; rename it"
        )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{key}: condition names {dup} appear more than once")
    empty = [n for n, t in out if not n.strip() or not t.strip()]
    if empty:
        raise ConfigError(f"{key}: conditions {empty} have an empty name or text")
    if len(out) < MIN_CONDITIONS:
        raise ConfigError(
            f"{key}: {len(out)} conditions; give at least {MIN_CONDITIONS}, so that each source "
            "has 3 others to correlate over"
        )
    return out


def read_questions(
    entry: str | Sequence[str], key: str, builtin: tuple[str, ...]
) -> tuple[str, ...]:
    """Questions from config: ``builtin``, an inline list, or a file (YAML list, or text with
    one question per line)."""
    if isinstance(entry, str) and entry == BUILTIN:
        out = tuple(builtin)
    elif isinstance(entry, str):
        p = _existing(entry, key)
        if p.suffix.lower() in (".yaml", ".yml"):
            data = _read_yaml(p)
            if not isinstance(data, list):
                raise ConfigError(f"{key}: {entry} must hold a list of questions")
            out = tuple(str(q) for q in data)
        else:
            out = tuple(line.strip() for line in p.read_text().splitlines() if line.strip())
    else:
        out = tuple(str(q) for q in entry)
    if not out or any(not q.strip() for q in out):
        raise ConfigError(f"{key}: give at least one question, none empty")
    dup = sorted({q for q in out if out.count(q) > 1})
    if dup:
        raise ConfigError(f"{key}: questions {dup} appear more than once")
    return out


def _existing(path: str, key: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"{key}: file {path!r} does not exist; fix the path (relative to the directory you "
            f"run snakemake in), or use `{BUILTIN}`"
        )
    return p


def conditions_set(
    conditions: str | Mapping[str, str],
    questions: str | Sequence[str],
    probe_questions: str | Sequence[str],
) -> ConditionsSet:
    """The run's conditions set from its ``geometry`` keys; probe questions must be disjoint
    from the geometry's questions (``ConfigError`` naming the shared ones)."""
    b = builtin_set()
    out = ConditionsSet(
        read_conditions(conditions, "geometry.conditions"),
        read_questions(questions, "geometry.questions", b.questions),
        read_questions(probe_questions, "geometry.probe_questions", b.probe_questions),
    )
    shared = sorted(set(out.questions) & set(out.probe_questions))
    if shared:
        raise ConfigError(
            f"geometry.probe_questions: {shared} are also geometry.questions; the behaviour is "
            "measured on prompts disjoint from those giving the geometry"
        )
    return out


def plain_prompt(condition: str, question: str) -> str:
    """The raw-text prompt of a condition and a question: ``condition\\n\\nquestion``."""
    return f"{condition}\n\n{question}"


def condition_prompts(
    conditions: Sequence[tuple[str, str]],
    questions: Sequence[str],
    fmt: PromptFormat,
    tokenizer: Any = None,
) -> tuple[list[str], Int[np.ndarray, " row"]]:
    """Every (condition, question) prompt, condition-major, and each row's condition index.

    ``chat``: the tokenizer's chat template with the condition as the system turn and the
    question as the user turn, generation prompt on (:func:`crossprobe.prompts.format_prompts`);
    ``raw``: :func:`plain_prompt`.
    """
    from crossprobe.prompts import format_prompts

    prompts: list[str] = []
    for _, text in conditions:
        if fmt == "chat":
            prompts += format_prompts(tokenizer, list(questions), "{statement}", "chat", text)
        elif fmt == "raw":
            prompts += [plain_prompt(text, q) for q in questions]
        else:
            raise ValueError(f"unknown prompt format {fmt!r}: use 'raw' or 'chat'")
    index = np.repeat(np.arange(len(conditions)), len(questions))
    return prompts, index


def row_hashes(conditions: Sequence[tuple[str, str]], questions: Sequence[str]) -> list[str]:
    """A sha256 of each (condition text, question) row, condition-major (the store's row ids)."""
    import hashlib

    return [
        hashlib.sha256(f"{text}\x00{q}".encode()).hexdigest()[:16]
        for _, text in conditions
        for q in questions
    ]


# ---------------------------------------------------------------------------------------------
# Geometry


def centroids(
    x: Float[np.ndarray, "row d"], condition: Int[np.ndarray, " row"], n: int
) -> Float[np.ndarray, "n d"]:
    """The mean activation of each condition (float64); every condition needs a row."""
    x = np.asarray(x, dtype=np.float64)
    condition = np.asarray(condition)
    if condition.shape != (x.shape[0],):
        raise ValueError(f"condition index {condition.shape} does not fit activations {x.shape}")
    counts = np.bincount(condition, minlength=n)
    if counts.shape[0] != n or (counts == 0).any():
        raise ValueError(f"every one of the {n} conditions needs rows; counts {counts.tolist()}")
    sums = np.zeros((n, x.shape[1]))
    np.add.at(sums, condition, x)
    return sums / counts[:, None]


def normalised_centroids(c: Float[np.ndarray, "n d"]) -> Float[np.ndarray, "n d"]:
    """Centroids minus their mean over conditions, each scaled to unit L2 norm."""
    centred = np.asarray(c, dtype=np.float64) - c.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    if (norms <= 1e-12 * max(1.0, float(np.abs(c).max()))).any():
        raise ValueError(
            "a centred centroid is zero: the conditions do not change the activations "
            "(e.g. a tokenizer that reads every condition as unknown tokens)"
        )
    return centred / norms


def cosine_matrix(unit: Float[np.ndarray, "n d"]) -> Float[np.ndarray, "n n"]:
    """Pairwise cosines of unit rows (diagonal exactly 1)."""
    cos = np.clip(unit @ unit.T, -1.0, 1.0)
    np.fill_diagonal(cos, 1.0)
    return cos


def condition_geometry(
    x: Float[np.ndarray, "row d"], condition: Int[np.ndarray, " row"], n: int
) -> Float[np.ndarray, "n n"]:
    """Centroids, centred and normalised, then their cosine matrix."""
    return cosine_matrix(normalised_centroids(centroids(x, condition, n)))


def geometry_frame(
    model: str, layer_position: int, layer: int, names: Sequence[str], cos: Any
) -> pd.DataFrame:
    """The cosine matrix in long form (every ordered pair, the diagonal included)."""
    n = len(names)
    a, b = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return pd.DataFrame(
        {
            "model": model,
            "layer_position": layer_position,
            "layer": layer,
            "condition_a": np.asarray(names, dtype=object)[a.ravel()],
            "condition_b": np.asarray(names, dtype=object)[b.ravel()],
            "cosine": np.asarray(cos).ravel(),
        }
    )


# ---------------------------------------------------------------------------------------------
# The measured behaviour


def jsd_similarity(
    logp: Float[np.ndarray, "*k vocab"], logq: Float[np.ndarray, "*k vocab"]
) -> Float[np.ndarray, "*k"]:
    """``1 − JSD(p, q) / ln 2`` from log-probabilities over the last axis (1: the same
    distribution, 0: disjoint supports)."""
    logp, logq = np.asarray(logp, np.float64), np.asarray(logq, np.float64)
    logm = np.logaddexp(logp, logq) - math.log(2.0)
    jsd = np.clip(0.5 * (_kl_to(logp, logm) + _kl_to(logq, logm)), 0.0, math.log(2.0))
    return 1.0 - jsd / math.log(2.0)


def _kl_to(logp: np.ndarray, logm: np.ndarray) -> np.ndarray:
    """``KL(p ‖ m)`` over the last axis; a term with ``p = 0`` is 0 (never ``0·(−inf)``)."""
    p = np.exp(logp)
    diff = np.zeros_like(logp)
    np.subtract(logp, logm, out=diff, where=p > 0)
    return (p * diff).sum(-1)


def behaviour_matrix(
    logprobs: Float[np.ndarray, "condition probe vocab"],
) -> Float[np.ndarray, "n n"]:
    """``behaviour(s, c)``: :func:`jsd_similarity` averaged over the probe prompts, for every
    ordered pair of conditions (symmetric, diagonal 1)."""
    n = logprobs.shape[0]
    out = np.ones((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = float(jsd_similarity(logprobs[i], logprobs[j]).mean())
    return out


def behaviour_frame(names: Sequence[str], matrix: Any) -> pd.DataFrame:
    """A behaviour matrix as the table every behaviour takes: source, condition, value (the
    off-diagonal pairs)."""
    rows = [
        (s, c, float(matrix[i, j]))
        for i, s in enumerate(names)
        for j, c in enumerate(names)
        if i != j
    ]
    return pd.DataFrame(rows, columns=BEHAVIOUR_COLUMNS)


# ---------------------------------------------------------------------------------------------
# A user's behaviour table


def read_behaviour_table(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        return pd.read_parquet(p)
    if p.suffix.lower() == ".csv":
        return pd.read_csv(p)
    raise ConfigError(f"geometry.behaviour: {path}: give a .csv or .parquet table")


def check_behaviour_table(
    df: pd.DataFrame, names: Sequence[str], where: str, models: Iterable[str] = ()
) -> None:
    """A user's behaviour table fits the conditions set: columns ``source``, ``condition``,
    ``value`` (and optionally ``model``), every name a known condition, finite values, one value
    per (model, source, condition), and every source with a value for every other condition.
    ``ConfigError`` naming the file and the offending names otherwise."""
    missing_cols = [c for c in BEHAVIOUR_COLUMNS if c not in df.columns]
    if missing_cols:
        raise ConfigError(f"{where}: no column(s) {missing_cols} (columns: {list(df.columns)})")
    known = set(names)
    for col in ("source", "condition"):
        unknown = sorted(set(df[col].astype(str)) - known)
        if unknown:
            raise ConfigError(
                f"{where}: {col} names {unknown} are not conditions of geometry.conditions "
                f"(known: {list(names)}); fix the table or the conditions"
            )
    if "model" in df.columns:
        bad = sorted(set(df["model"].astype(str)) - set(models))
        if bad:
            raise ConfigError(f"{where}: models {bad} are not models of this run")
    values = pd.to_numeric(df["value"], errors="coerce").to_numpy(float)
    if not np.isfinite(values).all():
        raise ConfigError(f"{where}: {int((~np.isfinite(values)).sum())} values are not finite")
    keys = [c for c in ("model", "source", "condition") if c in df.columns]
    dup = df[df.duplicated(keys, keep=False)]
    if len(dup):
        raise ConfigError(f"{where}: pairs given twice: {dup[keys].head(3).values.tolist()}")
    groups = df.groupby(keys[:-1]) if len(keys) > 2 else df.groupby("source")
    for key, sub in groups:
        source = key[-1] if isinstance(key, tuple) else key
        missing = sorted(known - {source} - set(sub["condition"].astype(str)))
        if missing:
            raise ConfigError(
                f"{where}: source {source!r} has no value for conditions {missing}; give every "
                "other condition a value"
            )


# ---------------------------------------------------------------------------------------------
# Statistics


class Correlation(NamedTuple):
    n: int
    spearman: float
    spearman_p: float
    pearson: float
    pearson_p: float


def correlation(x: Float[np.ndarray, " k"], y: Float[np.ndarray, " k"]) -> Correlation:
    """Spearman and Pearson between ``x`` and ``y`` with their two-sided p-values (NaN where
    either is constant or not finite, or with fewer than 3 pairs)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape:
        raise ValueError(f"x {x.shape} and y {y.shape} differ")
    n = int(x.size)
    if n < 3 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return Correlation(n, math.nan, math.nan, math.nan, math.nan)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(n, math.nan, math.nan, math.nan, math.nan)
    s = stats.spearmanr(x, y)
    r = stats.pearsonr(x, y)
    return Correlation(n, float(s.statistic), float(s.pvalue), float(r.statistic), float(r.pvalue))


def source_pairs(
    cos: Float[np.ndarray, "n n"], names: Sequence[str], behaviour: pd.DataFrame
) -> pd.DataFrame:
    """Every (source, condition) pair of ``behaviour`` with its cosine (columns source,
    condition, cosine, value), the diagonal left out."""
    index = {n: i for i, n in enumerate(names)}
    b = behaviour[behaviour["source"] != behaviour["condition"]]
    i = b["source"].map(index).to_numpy()
    j = b["condition"].map(index).to_numpy()
    return pd.DataFrame(
        {
            "source": b["source"].to_numpy(),
            "condition": b["condition"].to_numpy(),
            "cosine": np.asarray(cos)[i, j],
            "value": b["value"].to_numpy(float),
        }
    )


def correlate_sources(pairs: pd.DataFrame) -> dict[str, Correlation]:
    """Per source over its other conditions, and ``pooled`` over every pair stacked."""
    out = {
        str(s): correlation(sub["cosine"].to_numpy(), sub["value"].to_numpy())
        for s, sub in pairs.groupby("source", sort=False)
    }
    out[POOLED] = correlation(pairs["cosine"].to_numpy(), pairs["value"].to_numpy())
    return out


def layer_sensitivity(table: pd.DataFrame) -> pd.DataFrame:
    """Per (geometry model, behaviour model, via, layer): the pooled correlation and the spread
    of the per-source ρ; ``best`` marks the layer with the highest pooled ρ of its group."""
    keys = ["geometry_model", "behaviour_model", "via"]
    rows = []
    for key, sub in table.groupby([*keys, "layer_position", "layer"], sort=False):
        pooled = sub[sub["source"] == POOLED].iloc[0]
        per = sub.loc[sub["source"] != POOLED, "spearman"].to_numpy(float)
        finite = per[np.isfinite(per)]
        rows.append(
            {
                **dict(zip([*keys, "layer_position", "layer"], key, strict=True)),
                "pooled_spearman": pooled["spearman"],
                "pooled_spearman_p": pooled["spearman_p"],
                "pooled_pearson": pooled["pearson"],
                "pooled_n": pooled["n"],
                "n_sources": int(per.size),
                "median_source_spearman": float(np.median(finite)) if finite.size else math.nan,
                "min_source_spearman": float(finite.min()) if finite.size else math.nan,
                "max_source_spearman": float(finite.max()) if finite.size else math.nan,
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    rank = out.groupby(keys, sort=False)["pooled_spearman"].transform(
        lambda s: s == s.max() if s.notna().any() else False
    )
    return out.assign(best=rank.astype(bool))


def word_overlap(texts: Sequence[str]) -> Float[np.ndarray, "n n"]:
    """Jaccard similarity of the conditions' sets of lower-case words (letters and digits of
    any script, with inner apostrophes; NaN between two texts without any): a baseline that knows
    only the wording (if it predicts the behaviour as well as the geometry does, the geometry
    adds nothing the texts did not say)."""
    import re

    words = [set(re.findall(r"[^\W_]+(?:'[^\W_]+)*", t.lower())) for t in texts]
    n = len(words)
    out = np.ones((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            union = words[i] | words[j]
            # Two texts with no words at all share nothing we can count: NaN, not a match.
            out[i, j] = out[j, i] = len(words[i] & words[j]) / len(union) if union else np.nan
    return out


#: The key of the word-overlap baseline's rows (no model, no layer).
WORDS_KEY = {"geometry_model": "words", "via": "words", "activations_model": "",
             "layer_position": -1, "layer": -1, "activations_layer": -1}  # fmt: skip


def carry_activations(fmap: Any, x: Float[np.ndarray, "row d_s"]) -> Float[np.ndarray, "row d_t"]:
    """Activations of the map's source model in its target's space: ``A·x + b`` per row."""
    x = np.asarray(x, np.float64)
    if x.shape[-1] != fmap.d_source:
        raise ValueError(f"activations {x.shape} do not fit map A {fmap.A.shape}")
    return x @ np.asarray(fmap.A, np.float64).T + np.asarray(fmap.b, np.float64)


def analysis_rows(
    key: Mapping[str, Any],
    cos: Float[np.ndarray, "n n"],
    names: Sequence[str],
    behaviour: pd.DataFrame,
) -> list[dict[str, Any]]:
    """The rows of geometry_behaviour.csv for one geometry (``key``: its model, layer, via...)
    against one behaviour table: one row per source, then ``pooled``."""
    result = correlate_sources(source_pairs(cos, names, behaviour))
    return [{**key, "source": s, **c._asdict()} for s, c in result.items()]
