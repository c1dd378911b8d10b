"""Tests for crossprobe.datasets: built-in families, loading, validation and splits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossprobe.datasets import (
    DEFAULT_FRACTIONS,
    FAMILIES,
    GROUP_COLUMN,
    SPLITS,
    check_disjoint,
    format_prompt,
    generate_builtin,
    number_words,
    read_dataset,
    read_table,
    split_of,
    statement_hash,
    validate_table,
    with_splits,
    write_dataset,
)
from crossprobe.errors import ConfigError

LARGER_THAN_CSV_SHA256 = "406d6872e97910f3af5a031600d4932b5a567b8666e7545c8b446057471ad723"


@pytest.fixture(scope="module")
def families() -> dict[str, pd.DataFrame]:
    return {name: generate_builtin(name) for name in FAMILIES}


# --- built-in families ---------------------------------------------------------------------


def test_number_words_known_answers():
    assert number_words(0) == "zero"
    assert number_words(13) == "thirteen"
    assert number_words(40) == "forty"
    assert number_words(51) == "fifty-one"
    assert number_words(300) == "three hundred"
    assert number_words(307) == "three hundred and seven"
    assert number_words(999) == "nine hundred and ninety-nine"
    with pytest.raises(ValueError):
        number_words(1000)


def test_larger_than_checksum_and_shape(families):
    df = families["larger_than"]
    csv = df.drop(columns="group").to_csv(index=False, lineterminator="\n")
    assert hashlib.sha256(csv.encode("utf-8")).hexdigest() == LARGER_THAN_CSV_SHA256
    assert list(df.columns) == ["statement", "label", "n1", "n2", "diff", "abs_diff", "group"]
    pair = (
        df["n1"].combine(df["n2"], min).astype(str)
        + " "
        + df["n1"].combine(df["n2"], max).astype(str)
    )
    assert (df["group"] == pair).all()  # the unordered pair: a comparison and its reverse
    assert len(df) == 1980
    numbers = set(df["n1"]) | set(df["n2"])
    assert len(numbers) == 45
    assert min(numbers) == 51 and max(numbers) == 99
    assert all(n % 10 != 0 for n in numbers)
    assert df["label"].sum() == 990
    assert (df["label"] == (df["n1"] > df["n2"]).astype(int)).all()
    assert (df["diff"] == df["n1"] - df["n2"]).all()
    assert df["statement"].iloc[0] == "Fifty-one is larger than fifty-two."
    assert df["statement"].iloc[-1] == "Ninety-nine is larger than ninety-eight."


def test_at_least_five_families_with_both_answer_vocabularies():
    assert len(FAMILIES) >= 5
    assert {"larger_than", "arithmetic", "parity", "membership", "category"} <= set(FAMILIES)
    assert {f.answers for f in FAMILIES.values()} == {(" True", " False"), (" Yes", " No")}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_invariants(name, families):
    family = FAMILIES[name]
    df = families[name]
    assert family.name == name
    pd.testing.assert_frame_equal(df, generate_builtin(name))
    assert list(df.columns[:2]) == ["statement", "label"]
    assert len(df) >= 1500
    assert set(df["label"].unique()) == {0, 1}
    assert 0.4 <= df["label"].mean() <= 0.6
    assert not df["statement"].duplicated().any()
    assert df["statement"].str.endswith(".").all()
    assert df["statement"].str[0].str.isupper().all()
    validate_table(df, source=name)
    split = with_splits(df, group=GROUP_COLUMN)
    assert ((split["split"] == "test") & (split["label"] == 1)).sum() >= 200
    # Splits by fact: no group (the fact a row states) crosses splits, and the shares stay near
    # the configured fractions.
    assert (split.groupby(GROUP_COLUMN)["split"].nunique() == 1).all()
    assert (split["split_key"] == df[GROUP_COLUMN].astype(str)).all()
    share = split["split"].value_counts(normalize=True)
    for s, frac in DEFAULT_FRACTIONS.items():
        assert abs(share[s] - frac) < 0.05, (name, share.to_dict())
    pos, neg = family.answers
    assert pos != neg and pos.startswith(" ") and neg.startswith(" ")
    assert "{statement}" in family.template
    prompt = format_prompt(family.template, df["statement"].iloc[0])
    assert df["statement"].iloc[0] in prompt


def test_family_label_known_answers(families):
    arith = families["arithmetic"].set_index("statement")["label"]
    assert arith["Three plus four is seven."] == 1
    assert arith["Ten minus three is seven."] == 1
    parity = families["parity"].set_index("statement")["label"]
    assert parity["Thirty-seven is an even number."] == 0
    assert parity["Thirty-seven is an odd number."] == 1
    category = families["category"].set_index("statement")["label"]
    assert category["A sparrow is a bird."] == 1
    assert category["An owl is a kind of bird."] == 1
    member = families["membership"]
    for row in member.itertuples():
        assert row.label == int(row.query in row.items.split(", "))


def test_unknown_family_lists_known():
    with pytest.raises(ConfigError, match="larger_than"):
        generate_builtin("nope")


# --- prompts -------------------------------------------------------------------------------


def test_format_prompt():
    assert format_prompt("{statement} True or false? Answer:", "A.") == "A. True or false? Answer:"
    with pytest.raises(ConfigError, match="statement"):
        format_prompt("True or false? Answer:", "A.")
    with pytest.raises(ConfigError):
        format_prompt("{statement} {other}", "A.")


# --- splits --------------------------------------------------------------------------------


def test_statement_hash_and_bucket_rule():
    s = "Fifty-one is larger than fifty-two."
    digest = hashlib.sha256(s.encode("utf-8")).hexdigest()
    assert statement_hash(s) == digest
    bucket = int(digest[:16], 16) / 2**64
    expected = "train" if bucket < 0.5 else "align" if bucket < 0.7 else "test"
    assert split_of(s) == expected
    assert split_of(s, {"train": 0.0, "align": 0.0, "test": 1.0}) == "test"
    assert split_of(s, {"train": 1.0, "align": 0.0, "test": 0.0}) == "train"


@pytest.mark.parametrize(
    "fractions",
    [
        {"train": 0.5, "align": 0.2, "test": 0.2},
        {"train": 1.2, "align": -0.2, "test": 0.0},
        {"train": 0.5, "align": 0.2, "test": 0.3, "dev": 0.0},
    ],
)
def test_bad_fractions(fractions):
    with pytest.raises(ConfigError):
        split_of("x", fractions)
    with pytest.raises(ConfigError):
        with_splits(pd.DataFrame({"statement": ["x"], "label": [1]}), fractions)


def test_with_splits_columns_and_order(families):
    df = families["membership"]
    out = with_splits(df)
    assert list(out.columns) == [
        "row",
        "statement",
        "label",
        "split",
        "row_hash",
        "split_key",
        "query",
        "items",
        "list_len",
        "position",
        "group",
    ]
    assert (out["row"] == np.arange(len(df))).all()
    assert (out["statement"] == df["statement"]).all()
    assert (out["label"] == df["label"]).all()
    assert set(out["split"]) == set(SPLITS)
    assert out["row_hash"].iloc[3] == statement_hash(df["statement"].iloc[3])
    assert "split" not in df.columns  # input untouched
    check_disjoint({"membership": out})


def test_splits_independent_of_order_and_other_rows(families):
    df = families["arithmetic"]
    base = with_splits(df).set_index("statement")["split"]
    shuffled = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    extra = pd.DataFrame({"statement": ["Zero plus zero is zero.", "A new row."], "label": [1, 0]})
    grown = pd.concat([extra, shuffled], ignore_index=True)
    for variant in (shuffled, grown):
        got = with_splits(variant).set_index("statement")["split"]
        assert (got.loc[base.index] == base).all()


def test_fractions_respected_on_large_family(families):
    df = pd.concat([families["parity"], families["larger_than"], families["category"]])
    share = with_splits(df)["split"].value_counts(normalize=True)
    for name, frac in DEFAULT_FRACTIONS.items():
        assert abs(share[name] - frac) < 0.03
    custom = {"train": 0.6, "align": 0.1, "test": 0.3}
    share = with_splits(df, custom)["split"].value_counts(normalize=True)
    for name, frac in custom.items():
        assert abs(share[name] - frac) < 0.03


def test_check_disjoint_detects_leakage():
    a = with_splits(pd.DataFrame({"statement": ["One.", "Two."], "label": [1, 0]}))
    b = with_splits(pd.DataFrame({"statement": ["Two.", "Three."], "label": [0, 1]}))
    check_disjoint({"a": a, "b": b})  # same statement, same split: fine
    leaked = b.copy()
    other = next(s for s in SPLITS if s != leaked.loc[0, "split"])
    leaked.loc[0, "split"] = other
    with pytest.raises(ConfigError, match="Two"):
        check_disjoint({"a": a, "b": leaked})
    within = pd.concat([a, leaked.iloc[:1]], ignore_index=True)
    with pytest.raises(ConfigError, match="Two"):
        check_disjoint({"within": within})
    with pytest.raises(ConfigError, match="nosplit"):
        check_disjoint({"nosplit": pd.DataFrame({"statement": ["x"], "label": [1]})})


# --- files ---------------------------------------------------------------------------------


def _sample() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "statement": ["One is odd.", "Two is odd.", "Three is odd."],
            "label": [1, 0, 1],
            "n": [1, 2, 3],
            "note": ["a", "b", "c"],
        }
    )


@pytest.mark.parametrize("ext", ["csv", "jsonl", "ndjson", "parquet"])
def test_read_table_round_trip(tmp_path, ext):
    df = _sample()
    path = tmp_path / f"data.{ext}"
    if ext == "csv":
        df.to_csv(path, index=False)
    elif ext == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    got = read_table(path)
    pd.testing.assert_frame_equal(got, df, check_dtype=False)
    assert got["label"].dtype == np.int64
    validate_table(got, source=str(path))


def test_read_table_geometry_of_truth_csv(tmp_path, families):
    path = tmp_path / "larger_than.csv"
    families["larger_than"].to_csv(path, index=False)
    got = read_table(path)
    pd.testing.assert_frame_equal(got, families["larger_than"])


@pytest.mark.parametrize(
    "labels", [[True, False, True], ["True", "False", "True"], ["true", "false", "true"]]
)
def test_read_table_boolean_labels(tmp_path, labels):
    df = _sample().assign(label=labels)
    csv, jsonl = tmp_path / "b.csv", tmp_path / "b.jsonl"
    df.to_csv(csv, index=False)
    df.to_json(jsonl, orient="records", lines=True)
    for path in (csv, jsonl):
        assert read_table(path)["label"].tolist() == [1, 0, 1]


def test_read_table_errors(tmp_path):
    with pytest.raises(ConfigError, match="missing.csv"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "data.txt").write_text("statement,label\n")
    with pytest.raises(ConfigError, match="data.txt"):
        read_table(tmp_path / "data.txt")
    (tmp_path / "broken.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(ConfigError, match="broken.parquet"):
        read_table(tmp_path / "broken.parquet")
    (tmp_path / "broken.jsonl").write_text('{"statement": "a", "label": 1}\n{not json\n')
    with pytest.raises(ConfigError, match="broken.jsonl"):
        read_table(tmp_path / "broken.jsonl")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ConfigError, match="empty.csv"):
        read_table(tmp_path / "empty.csv")


@pytest.mark.parametrize(
    ("frame", "task"),
    [
        (pd.DataFrame({"text": ["a", "b"], "label": [0, 1]}), "classification"),
        (pd.DataFrame({"statement": ["a", "b"]}), "classification"),
        (pd.DataFrame({"statement": [], "label": []}), "classification"),
        (pd.DataFrame({"statement": ["a", "  ", "c"], "label": [0, 1, 1]}), "classification"),
        (pd.DataFrame({"statement": ["a", None, "c"], "label": [0, 1, 1]}), "classification"),
        (pd.DataFrame({"statement": ["a", "b", "c"], "label": [0, 1, 2]}), "classification"),
        (pd.DataFrame({"statement": ["a", "b", "c"], "label": [0.5, 1, 0]}), "classification"),
        (
            pd.DataFrame({"statement": ["a", "b", "c"], "label": ["yes", "maybe", "no"]}),
            "classification",
        ),
        (pd.DataFrame({"statement": ["a", "b", "c"], "label": [1, 1, 1]}), "classification"),
        (pd.DataFrame({"statement": ["a", "b", "a"], "label": [1, 0, 0]}), "classification"),
        (pd.DataFrame({"statement": ["a", "b"], "label": ["x", 1.0]}), "regression"),
        (pd.DataFrame({"statement": ["a", "b"], "label": [np.nan, 1.0]}), "regression"),
        (pd.DataFrame({"statement": ["a", "b", "a"], "label": [0.1, 1.0, 0.2]}), "regression"),
        (pd.DataFrame({"statement": ["a", "b"], "label": [0.1, 1.0]}), "ordinal"),
    ],
)
def test_validate_table_errors_name_source(frame, task):
    with pytest.raises(ConfigError, match="my_source.csv"):
        validate_table(frame, source="my_source.csv", task=task)


def test_validate_table_accepts():
    dup = pd.DataFrame({"statement": ["a", "b", "a"], "label": [1, 0, 1]})
    validate_table(dup, source="dup")  # exact duplicates with equal labels are fine
    validate_table(dup.assign(label=[True, False, True]), source="bool")
    reg = pd.DataFrame({"statement": ["a", "b", "c"], "label": [0.5, -2.0, 3]})
    validate_table(reg, source="reg", task="regression")


def test_write_read_dataset_round_trip(tmp_path, families):
    df = with_splits(families["category"])
    path = tmp_path / "out" / "category.parquet"
    write_dataset(df, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["category.parquet"]
    pd.testing.assert_frame_equal(read_dataset(path), df)
    with pytest.raises(ConfigError, match="absent.parquet"):
        read_dataset(tmp_path / "absent.parquet")


def test_jsonl_metadata_kept(tmp_path):
    path = tmp_path / "meta.jsonl"
    rows = [{"statement": "A.", "label": 1, "extra": {"k": 1}}, {"statement": "B.", "label": 0}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    got = read_table(Path(path))
    assert list(got.columns) == ["statement", "label", "extra"]
