"""Inputs are checked when the workflow is planned: each failure names the culprit and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from crossprobe.config import validate_config
from crossprobe.errors import ConfigError

ZOO = {"zoo": {"arch": "llama", "tokenizer": "word"}}


def base(**datasets):
    return {
        "models": {"a": ZOO, "b": {**ZOO, "zoo": {**ZOO["zoo"], "seed": 2}}},
        "datasets": datasets or {"parity": {"builtin": "parity"}},
    }


def fails(cfg, *fragments):
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    for f in fragments:
        assert f in str(e.value), str(e.value)


def rows(n=800, **extra):
    statements = [f"Item {i} is on the shelf." for i in range(n)]
    return pd.DataFrame({"statement": statements, "label": [i % 2 for i in range(n)], **extra})


def write(tmp_path: Path, df: pd.DataFrame, name="data.csv") -> str:
    path = tmp_path / name
    {
        "csv": lambda: df.to_csv(path, index=False),
        "jsonl": lambda: df.to_json(path, orient="records", lines=True),
        "parquet": lambda: df.to_parquet(path),
    }[name.rsplit(".", 1)[1]]()
    return str(path)


def test_a_good_file_dataset_passes(tmp_path):
    cfg = base(mine={"path": write(tmp_path, rows(1400), "data.parquet")})
    assert "mine" in validate_config(cfg).datasets


def test_unreadable_file(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not a parquet file")
    fails(base(mine={"path": str(bad)}), "broken.parquet")


def test_missing_columns(tmp_path):
    fails(
        base(mine={"path": write(tmp_path, rows().rename(columns={"label": "truth"}))}),
        "data.csv",
        "label",
    )


def test_empty_statements(tmp_path):
    df = rows()
    df.loc[3, "statement"] = "   "
    fails(base(mine={"path": write(tmp_path, df)}), "data.csv")


def test_single_class(tmp_path):
    df = rows()
    df["label"] = 1
    fails(base(mine={"path": write(tmp_path, df)}), "data.csv")


def test_non_binary_labels(tmp_path):
    df = rows()
    df.loc[0, "label"] = 3
    fails(base(mine={"path": write(tmp_path, df)}), "data.csv")


def test_conflicting_duplicates(tmp_path):
    df = pd.concat([rows(), pd.DataFrame({"statement": ["Item 0 is on the shelf."], "label": [1]})])
    fails(base(mine={"path": write(tmp_path, df, "data.jsonl")}), "data.jsonl")


def test_too_few_test_positives_unless_allowed(tmp_path):
    cfg = base(small={"path": write(tmp_path, rows(100))})
    fails(cfg, "datasets.small", "transfer.min_prompts=200")
    cfg["transfer"] = {"allow_unscored": True}
    assert validate_config(cfg).transfer.allow_unscored


def test_zoo_layers_out_of_range():
    cfg = base()
    cfg["models"]["a"] = {**ZOO, "layers": [0, 1, 7]}
    fails(cfg, "models.a.layers", "7")


def test_zoo_answer_that_is_not_a_token():
    cfg = base(parity={"builtin": "parity", "answers": [" Maybe", " No"]})
    fails(cfg, "models.a", "' Maybe'", "parity")


def local_model(tmp_path: Path, n_layers=4, words=("True", "False", "Yes")) -> str:
    d = tmp_path / "local-model"
    d.mkdir()
    (d / "config.json").write_text(
        json.dumps({"model_type": "llama", "num_hidden_layers": n_layers})
    )
    vocab = {"<unk>": 0, **{w: i + 1 for i, w in enumerate(words)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(d / "tokenizer.json"))
    return str(d)


def test_local_model_layers_checked_from_its_config(tmp_path):
    cfg = base()
    cfg["models"]["local"] = {"path": local_model(tmp_path, n_layers=2), "layers": [0, 1, 2]}
    fails(cfg, "models.local.layers", "2 blocks")


def test_local_model_answer_tokens_checked_from_its_tokenizer(tmp_path):
    cfg = base(parity={"builtin": "parity"})  # answers " Yes" / " No"; the tokenizer lacks "No"
    cfg["models"]["local"] = {"path": local_model(tmp_path)}
    fails(cfg, "models.local", "' No'")
    cfg["datasets"] = {"larger_than": {"builtin": "larger_than"}}  # " True" / " False"
    assert "local" in validate_config(cfg).models


def test_every_problem_is_reported_at_once(tmp_path):
    cfg = base(small={"path": write(tmp_path, rows(100))})
    cfg["models"]["a"] = {**ZOO, "layers": [0, 1, 9]}
    fails(cfg, "datasets.small", "models.a.layers")


def test_splits_that_overlap_stop_the_run(tmp_path, monkeypatch):
    """The run refuses statements that sit in two splits (here one dataset's splits are
    assigned from a shifted hash, so a statement shared with another dataset disagrees)."""
    import crossprobe.datasets as ds

    shared = rows(3000)
    one = write(tmp_path, shared, "one.csv")
    two = write(tmp_path, shared, "two.csv")
    real = ds.with_splits

    def shifted(df, fractions=None, **kw):
        out = real(df, fractions, **kw) if fractions is not None else real(df, **kw)
        if df["statement"].equals(shared["statement"]) and shifted.calls == 1:
            out["split"] = out["split"].map({"train": "align", "align": "test", "test": "train"})
        shifted.calls += 1
        return out

    shifted.calls = 0
    monkeypatch.setattr(ds, "with_splits", shifted)
    fails(
        base(one={"path": one}, two={"path": two}),
        "splits must be disjoint",
        "dataset 'one'",
        "dataset 'two'",
    )
