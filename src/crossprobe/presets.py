"""The seventeen truth datasets of the cross-dataset study as presets (``datasets.<name>.preset``).

- ``dlk/*`` (imdb, amazon_polarity, ag_news, dbpedia_14, rte, copa, boolq): each source row
  becomes two statements, its true label and one false label filled into the dataset's prompt
  from the appendix of "Discovering Latent Knowledge" (Burns et al., 2022); label 1 on the
  true one. The prompt is followed by ``True or false? Answer:``, answered `` True`` or
  `` False``.
- ``repe/*`` (open_book_qa, common_sense_qa, race, arc_challenge, arc_easy): one statement per
  answer choice of a question, in the prompt of "Representation Engineering" (Zou et al., 2023,
  appendix D.1), which ends in a cue like "The probability of the answer being correct is",
  answered `` high`` or `` low``; label 1 on the correct choice.
- ``got/*`` (cities, sp_en_trans, larger_than, cities_cities_conj, cities_cities_disj): the
  statements of "The Geometry of Truth" (Marks and Tegmark, 2023), read from that repository's
  CSVs at a pinned commit; a statement and its negation (``neg_cities``, ``smaller_than``, ...)
  are paired row by row. Prompted like crossprobe's built-in families.

Every statement made from one source row or question shares its ``group``, so that a
question's true and false statements never sit on both sides of a split. A preset's template
and answers can be overridden with ``template`` and ``answers``; its source with ``hub`` keys
(a mirror, a revision, a row limit).
"""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from crossprobe.errors import ConfigError
from crossprobe.hub import HubDataset, HubSource, pick

TRUE_FALSE = ("{statement}\nTrue or false? Answer:", (" True", " False"))
#: Rows (or questions) a preset keeps unless its ``hub.limit`` says otherwise: 1,000 questions
#: give 2,000 (DLK) to 5,000 (RepE) statements, enough for 300 `test` positives per dataset.
DEFAULT_LIMIT = 1000


@dataclass(frozen=True)
class Preset:
    """How one dataset of the study is fetched and turned into statements."""

    source: HubSource
    build: Callable[[Mapping[str, pd.DataFrame], HubSource], pd.DataFrame]
    template: str
    answers: tuple[str, str]


# ---------------------------------------------------------------------------------------------
# DLK: one true and one false statement per row


@dataclass(frozen=True)
class _Dlk:
    prompt: str
    """The DLK prompt, with ``{label}`` (the candidate), and ``{label1}``/``{label2}`` (the two
    candidates in label order) where the prompt lists them."""
    labels: tuple[str, ...]
    """The text of each class index."""


_DLK: dict[str, tuple[str, str | None, tuple[str, ...], _Dlk]] = {
    # name: (hub id, config, splits, prompt)
    "imdb": ("stanfordnlp/imdb", None, ("train", "test"), _Dlk(
        'Consider the following example: "{text}"\n'
        "Between {label1} and {label2}, the sentiment of this example is {label}",
        ("negative", "positive"))),
    "amazon_polarity": ("fancyzhx/amazon_polarity", None, ("train", "test"), _Dlk(
        'Consider the following example: "{content}"\nChoice 1: {label1}\nChoice 2: {label2}\n'
        "Between choice 1 and choice 2, the sentiment of this example is {label}",
        ("negative", "positive"))),
    "ag_news": ("fancyzhx/ag_news", None, ("train", "test"), _Dlk(
        'Consider the following example: "{text}"\nChoice 1: {label1}\nChoice 2: {label2}\n'
        "Between choice 1 and choice 2, the topic of this example is {label}",
        ("World politics", "Sports", "Business", "Science and technology"))),
    "dbpedia_14": ("fancyzhx/dbpedia_14", None, ("train", "test"), _Dlk(
        'Consider the following example: "{content}"\nChoice 1: {label1}\nChoice 2: {label2}\n'
        "Between choice 1 and choice 2, the topic of this example is {label}",
        ("company", "educational institution", "artist", "athlete", "office holder",
         "mean of transportation", "building", "natural place", "village", "animal", "plant",
         "album", "film", "written work"))),
    "rte": ("aps/super_glue", "rte", ("train", "validation"), _Dlk(
        '{premise}\nQuestion: Does this imply that "{hypothesis}", yes or no?\n{label}',
        ("yes", "no"))),
    "copa": ("aps/super_glue", "copa", ("train", "validation"), _Dlk(
        'Consider the following premise: "{premise}"\nChoice 1: {choice1}\nChoice 2: {choice2}\n'
        "Q: Which one is more likely to be the {question}, choice 1 or choice 2?\n{label}",
        ("choice 1", "choice 2"))),
    "boolq": ("aps/super_glue", "boolq", ("train", "validation"), _Dlk(
        "Passage: {passage}\nAfter reading this passage, I have a question: {question}? "
        "True or false?\n{label}",
        ("false", "true"))),
}  # fmt: skip


def _false_label(true: int, n: int, key: str) -> int:
    """One wrong class, chosen by a hash of the row (the only one for two classes)."""
    others = [i for i in range(n) if i != true]
    return others[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(others)]


def _dlk_builder(
    name: str, spec: _Dlk
) -> Callable[[Mapping[str, pd.DataFrame], HubSource], pd.DataFrame]:
    def build(frames: Mapping[str, pd.DataFrame], src: HubSource) -> pd.DataFrame:
        rows = []
        for split, df in frames.items():
            _require(df, ["label"], src, split)
            keys = [f"{name}:{split}:{i}" for i in range(len(df))]
            for i in pick(keys, src.limit, name):
                row, key = df.iloc[i], keys[i]
                true = int(row["label"])
                if not 0 <= true < len(spec.labels):  # unlabelled rows (super_glue's test: -1)
                    continue
                pair = sorted((true, _false_label(true, len(spec.labels), key)))
                args = {k: row[k] for k in df.columns if isinstance(row[k], str)}
                for cand in pair:
                    text = spec.prompt.format(
                        **args,
                        label=spec.labels[cand],
                        label1=spec.labels[pair[0]],
                        label2=spec.labels[pair[1]],
                    )
                    rows.append(
                        {
                            "statement": text,
                            "label": int(cand == true),
                            "group": key,
                            "source_split": split,
                            "candidate": spec.labels[cand],
                        }  # fmt: skip
                    )
        return _dedupe(pd.DataFrame(rows))

    return build


# ---------------------------------------------------------------------------------------------
# RepE: one statement per answer choice


_REPE_CUE_CORRECT = "The probability of the answer being correct is"

_REPE: dict[str, tuple[str, str | None, str, str, Callable[[pd.Series], tuple[list[str], int]]]] = {
    # name: (hub id, config, prompt with {answer}, cue, (choices, index of the correct one))
    "open_book_qa": ("allenai/openbookqa", "main",
        "Consider the correctness of the following fact:\nFact: {question_stem} {answer}",
        "The probability of the fact being correct is",
        lambda r: (list(r["choices"]["text"]), list(r["choices"]["label"]).index(r["answerKey"]))),
    "common_sense_qa": ("tau/commonsense_qa", None,
        "Based on commonsense reasoning, consider the plausibility of the\nanswer to the "
        "following question:\nQuestion: {question}\nAnswer: {answer}",
        "The probability of the answer being plausible is",
        lambda r: (list(r["choices"]["text"]), list(r["choices"]["label"]).index(r["answerKey"]))),
    "race": ("ehovy/race", "all",
        "Consider the correctness of the answer to the following question based on the "
        "article:\n\nArticle: {article}\n\nQuestion: {question}\nAnswer: {answer}",
        _REPE_CUE_CORRECT,
        lambda r: (list(r["options"]), "ABCD".index(r["answer"]))),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge",
        "Consider the correctness of the answer to the following question:\n\n"
        "Question: {question}\nAnswer: {answer}",
        _REPE_CUE_CORRECT,
        lambda r: (list(r["choices"]["text"]), list(r["choices"]["label"]).index(r["answerKey"]))),
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy",
        "Consider the correctness of the answer to the following question:\n\n"
        "Question: {question}\nAnswer: {answer}",
        _REPE_CUE_CORRECT,
        lambda r: (list(r["choices"]["text"]), list(r["choices"]["label"]).index(r["answerKey"]))),
}  # fmt: skip


def _question_ids(df: pd.DataFrame) -> list[str]:
    """Each question's id in its source (``id``, or RACE's ``example_id``), else its index."""
    for column in ("id", "example_id"):
        if column in df.columns:
            return df[column].astype(str).tolist()
    return [str(i) for i in range(len(df))]


def _repe_builder(
    name: str, prompt: str, choices: Callable[[pd.Series], tuple[list[str], int]]
) -> Callable[[Mapping[str, pd.DataFrame], HubSource], pd.DataFrame]:
    def build(frames: Mapping[str, pd.DataFrame], src: HubSource) -> pd.DataFrame:
        rows = []
        for split, df in frames.items():
            keys = [f"{name}:{q}" for q in _question_ids(df)]
            for i in pick(keys, src.limit, name):
                row = df.iloc[i]
                try:
                    options, correct = choices(row)
                except (KeyError, ValueError, TypeError) as e:
                    raise ConfigError(
                        f"{src.path} ({split}) row {i}: not a {name} question ({e})"
                    ) from None
                args = {k: row[k] for k in df.columns if isinstance(row[k], str) and k != "answer"}
                for j, option in enumerate(options):
                    rows.append({"statement": prompt.format(**args, answer=option),
                                 "label": int(j == correct), "group": keys[i],
                                 "source_split": split, "candidate": option})  # fmt: skip
        return _dedupe(pd.DataFrame(rows))

    return build


# ---------------------------------------------------------------------------------------------
# Geometry of Truth: CSVs from its repository at a pinned commit

GOT_REPOSITORY = "saprmarks/geometry-of-truth"
GOT_COMMIT = "91b2232"
GOT_URL = "https://raw.githubusercontent.com/{repo}/{commit}/datasets/{name}.csv"
#: name: (positive CSV, negated CSV or None for an unpaired set)
_GOT: dict[str, tuple[str, str | None]] = {
    "cities": ("cities", "neg_cities"),
    "sp_en_trans": ("sp_en_trans", "neg_sp_en_trans"),
    "larger_than": ("larger_than", "smaller_than"),
    "cities_cities_conj": ("cities_cities_conj", None),
    "cities_cities_disj": ("cities_cities_disj", None),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def got_csv(name: str, folder: Path, *, online: bool, commit: str = GOT_COMMIT) -> Path:
    """One Geometry of Truth CSV, from ``folder/<commit>/`` or fetched there once.

    Its sha256 is written beside it when fetched and checked on every later read, so a file
    changed in the cache is caught."""
    path = folder / commit / f"{name}.csv"
    check = path.with_suffix(".csv.sha256")
    if not path.is_file():
        if not online:
            raise FileNotFoundError(f"{path} (Geometry of Truth's {name}.csv at {commit})")
        path.parent.mkdir(parents=True, exist_ok=True)
        url = GOT_URL.format(repo=GOT_REPOSITORY, commit=commit, name=name)
        tmp = path.with_suffix(".partial")
        with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 (a pinned https URL)
            tmp.write_bytes(r.read())
        tmp.replace(path)
        check.write_text(_sha256(path) + "\n")
    if check.is_file() and check.read_text().strip() != _sha256(path):
        raise ConfigError(f"{path}: its sha256 is not the one recorded when it was fetched; "
                          "delete it and fetch it again")  # fmt: skip
    return path


def got_frames(preset: str, folder: Path, *, online: bool) -> tuple[dict[str, pd.DataFrame], str]:
    """The CSVs of a ``got/*`` preset, as frames named after their role (``pos``, ``neg``)."""
    pos, neg = _GOT[preset.removeprefix("got/")]
    frames = {"pos": pd.read_csv(got_csv(pos, folder, online=online))}
    if neg is not None:
        frames["neg"] = pd.read_csv(got_csv(neg, folder, online=online))
    return frames, GOT_COMMIT


def _got_builder(name: str) -> Callable[[Mapping[str, pd.DataFrame], HubSource], pd.DataFrame]:
    def build(frames: Mapping[str, pd.DataFrame], src: HubSource) -> pd.DataFrame:
        pos, neg = frames["pos"], frames.get("neg")
        _require(pos, ["statement", "label"], src, "pos")
        if neg is not None:
            _require(neg, ["statement", "label"], src, "neg")
            if len(neg) != len(pos):
                raise ConfigError(
                    f"got/{name}: {len(pos)} statements against {len(neg)} negations; the two "
                    "CSVs pair row by row"
                )
        keys = [f"got/{name}:{i}" for i in range(len(pos))]
        rows = []
        for i in pick(keys, src.limit, name):
            for role, df in (("pos", pos), ("neg", neg)):
                if df is None:
                    continue
                r = df.iloc[i]
                rows.append({"statement": str(r["statement"]), "label": int(r["label"]),
                             "group": keys[i], "source_split": role})  # fmt: skip
        return _dedupe(pd.DataFrame(rows))

    return build


# ---------------------------------------------------------------------------------------------


def _require(df: pd.DataFrame, columns: list[str], src: HubSource, split: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(f"{src.path} ({split}): no column {missing} (it has {list(df.columns)})")


def _dedupe(table: pd.DataFrame) -> pd.DataFrame:
    """Drop a statement that an earlier fact already made (a duplicate review, a repeated
    question), so that one text never sits in two facts, and so in two splits."""
    if table.empty:
        return table
    first = table.groupby("statement", sort=False)["group"].transform("first")
    return table[table["group"] == first].drop_duplicates("statement").reset_index(drop=True)


def _presets() -> dict[str, Preset]:
    out: dict[str, Preset] = {}
    for name, (path, config, splits, dlk) in _DLK.items():
        src = HubSource(path=path, name=config, splits=splits, limit=DEFAULT_LIMIT)
        out[f"dlk/{name}"] = Preset(src, _dlk_builder(name, dlk), *TRUE_FALSE)
    for name, (path, config, prompt, cue, choices) in _REPE.items():
        src = HubSource(path=path, name=config, splits=("train", "validation"), limit=DEFAULT_LIMIT)
        out[f"repe/{name}"] = Preset(
            src, _repe_builder(name, prompt, choices), "{statement}\n" + cue, (" high", " low")
        )
    for name in _GOT:
        src = HubSource(path=GOT_REPOSITORY, revision=GOT_COMMIT, splits=("pos",), limit=None)
        out[f"got/{name}"] = Preset(src, _got_builder(name), "{statement} True or false? Answer:",
                                    (" True", " False"))  # fmt: skip
    return out


PRESETS: dict[str, Preset] = _presets()
_HUB_KEYS = {f.name for f in fields(HubSource)}


def hub_dataset(name: str, entry: Mapping[str, Any]) -> HubDataset:
    """The hub dataset that config entry ``datasets.<name>`` (with ``hub`` or ``preset``)
    describes; ``ConfigError`` naming the key for an unknown preset or hub key."""
    hub = dict(entry.get("hub") or {})
    unknown = sorted(set(hub) - _HUB_KEYS)
    if unknown:
        raise ConfigError(f"datasets.{name}.hub: unknown keys {unknown}; use {sorted(_HUB_KEYS)}")
    for key in ("splits", "data_files"):
        if isinstance(hub.get(key), str):
            hub[key] = (hub[key],)
        elif key in hub:
            hub[key] = tuple(hub[key])
    preset = entry.get("preset")
    if preset is None:
        if "path" not in hub:
            raise ConfigError(f"datasets.{name}.hub: give `path` (a hub id, a builder or a folder)")
        return HubDataset(name, HubSource(**hub))
    if preset not in PRESETS:
        raise ConfigError(
            f"datasets.{name}.preset: unknown preset {preset!r}; choose one of "
            f"{', '.join(sorted(PRESETS))}"
        )
    p = PRESETS[preset]
    return HubDataset(name, replace(p.source, **hub), preset=preset, build=p.build)


def preset_prompt(preset: str) -> tuple[str, tuple[str, str]]:
    """A preset's template and answers."""
    return PRESETS[preset].template, PRESETS[preset].answers


__all__ = ["PRESETS", "Preset", "got_frames", "hub_dataset", "preset_prompt"]
