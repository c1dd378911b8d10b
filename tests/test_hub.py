"""Datasets from the hub and the seventeen presets, offline: each source's own schema in a few
rows (written here), through the preset, to statements, labels and groups."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from crossprobe import hub
from crossprobe.config import validate_config
from crossprobe.datasets import read_table, validate_table, with_splits
from crossprobe.errors import ConfigError
from crossprobe.hub import HubSource, generic_table, pick, rows_sha256
from crossprobe.presets import PRESETS, hub_dataset

ROOT = Path(__file__).resolve().parents[1]


def _choices(labels, texts):
    return {"label": list(labels), "text": list(texts)}


def fixture(preset: str, n: int = 3) -> dict[str, pd.DataFrame]:
    """``n`` rows per split of the source behind ``preset``, in that source's own columns."""
    kind, name = preset.split("/")
    src = PRESETS[preset].source
    if kind == "got":
        pos = pd.DataFrame({"statement": [f"City {i} is in Country {i}." for i in range(n)],
                            "label": [i % 2 for i in range(n)]})  # fmt: skip
        frames = {"pos": pos}
        if name in ("cities", "sp_en_trans", "larger_than"):
            frames["neg"] = pd.DataFrame({
                "statement": [f"City {i} is not in Country {i}." for i in range(n)],
                "label": [1 - i % 2 for i in range(n)]})  # fmt: skip
        return frames
    rows: list[dict] = []
    for i in range(n):
        if name == "imdb":
            rows.append({"text": f"Review {i}: a film.", "label": i % 2})
        elif name in ("amazon_polarity", "dbpedia_14"):
            rows.append({"title": f"T{i}", "content": f"Text {i}.", "label": i % 2})
        elif name == "ag_news":
            rows.append({"text": f"News {i}.", "label": i % 4})
        elif name == "rte":
            rows.append({"premise": f"P{i}.", "hypothesis": f"H{i}.", "idx": i, "label": i % 2})
        elif name == "copa":
            rows.append({"premise": f"P{i}.", "choice1": f"A{i}.", "choice2": f"B{i}.",
                         "question": "cause", "idx": i, "label": i % 2})  # fmt: skip
        elif name == "boolq":
            rows.append({"passage": f"Passage {i}.", "question": f"is {i} even",
                         "idx": i, "label": i % 2})  # fmt: skip
        elif name == "open_book_qa":
            rows.append({"id": f"q{i}", "question_stem": f"Stem {i} is",
                         "choices": _choices("ABCD", [f"c{i}{k}" for k in range(4)]),
                         "answerKey": "ABCD"[i % 4]})  # fmt: skip
        elif name == "common_sense_qa":
            rows.append({"id": f"q{i}", "question": f"Q{i}?", "question_concept": "x",
                         "choices": _choices("ABCDE", [f"c{i}{k}" for k in range(5)]),
                         "answerKey": "ABCDE"[i % 5]})  # fmt: skip
        elif name == "race":
            options = [f"o{i}{k}" for k in range(4)]
            rows.append({"example_id": f"e{i}", "article": f"Article {i}.", "question": f"Q{i}?",
                         "options": options, "answer": "ABCD"[i % 4]})  # fmt: skip
        else:  # arc
            rows.append({"id": f"q{i}", "question": f"Q{i}?",
                         "choices": _choices("ABCD", [f"c{i}{k}" for k in range(4)]),
                         "answerKey": "ABCD"[i % 4]})  # fmt: skip
    return {s: pd.DataFrame(rows) for s in src.splits}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_makes_true_and_false_statements_that_share_their_question(preset):
    frames = fixture(preset)
    p = PRESETS[preset]
    table = p.build(frames, p.source)
    validate_table(table, source=preset)
    assert set(table["label"]) == {0, 1}
    per_group = table.groupby("group")["label"].agg(["sum", "count"])
    if preset in ("got/cities_cities_conj", "got/cities_cities_disj"):
        assert (per_group["count"] == 1).all()  # unpaired: one statement per row
    else:
        # one true statement per question, beside at least one false one
        assert (per_group["sum"] == 1).all() and (per_group["count"] >= 2).all()
    split = with_splits(table, {"train": 0.5, "align": 0.2, "test": 0.3}, group="group")
    assert (split.groupby("group")["split"].nunique() == 1).all()
    assert "{statement}" in p.template and p.answers[0] != p.answers[1]


def test_dlk_statements_are_the_papers_prompt_filled_with_each_candidate():
    p = PRESETS["dlk/imdb"]
    table = p.build({"train": pd.DataFrame({"text": ["Great."], "label": [1]})}, p.source)
    assert table["statement"].tolist() == [
        'Consider the following example: "Great."\n'
        "Between negative and positive, the sentiment of this example is negative",
        'Consider the following example: "Great."\n'
        "Between negative and positive, the sentiment of this example is positive",
    ]
    assert table["label"].tolist() == [0, 1]
    assert p.template.format(statement="S") == "S\nTrue or false? Answer:"


def test_dlk_with_many_classes_pairs_the_truth_with_one_wrong_class():
    p = PRESETS["dlk/ag_news"]
    df = pd.DataFrame({"text": [f"n{i}" for i in range(40)], "label": [i % 4 for i in range(40)]})
    table = p.build({"train": df}, p.source)
    assert len(table) == 80
    wrong = table[table["label"] == 0]["candidate"]
    right = table[table["label"] == 1].set_index("group")["candidate"]
    assert (wrong.to_numpy() != right.loc[table[table["label"] == 0]["group"]].to_numpy()).all()
    assert wrong.nunique() == 4  # the wrong class varies from row to row


def test_super_glue_rows_without_a_label_are_left_out():
    p = PRESETS["dlk/rte"]
    df = pd.DataFrame({"premise": ["a", "b"], "hypothesis": ["c", "d"], "label": [0, -1]})
    assert len(p.build({"train": df}, p.source)) == 2


def test_repe_statements_end_before_the_cue_and_the_answer_is_high_or_low():
    p = PRESETS["repe/arc_easy"]
    table = p.build(fixture("repe/arc_easy", 1), p.source)
    first = table.iloc[0]["statement"]
    assert first.endswith("Answer: c00") and "Question: Q0?" in first
    assert p.template.endswith("The probability of the answer being correct is")
    assert p.answers == (" high", " low")
    race = PRESETS["repe/race"]
    t = race.build(fixture("repe/race", 2), race.source)
    assert t.groupby("group").size().tolist() == [4, 4]
    # answer A, then B (the validation split repeats the same questions: kept once)
    assert t[t["label"] == 1]["candidate"].tolist() == ["o00", "o11"]


def test_geometry_of_truth_pairs_a_statement_with_its_negation_row_by_row():
    p = PRESETS["got/cities"]
    table = p.build(fixture("got/cities", 4), p.source)
    for _, g in table.groupby("group"):
        assert sorted(g["source_split"]) == ["neg", "pos"] and g["label"].sum() == 1
    bad = fixture("got/cities", 4)
    bad["neg"] = bad["neg"].iloc[:3]
    with pytest.raises(ConfigError, match="pair row by row"):
        p.build(bad, p.source)


def test_a_limit_picks_the_same_rows_whatever_the_sources_order():
    keys = [f"k{i}" for i in range(100)]
    chosen = {keys[i] for i in pick(keys, 10, "s")}
    shuffled = keys[::-1]
    assert {shuffled[i] for i in pick(shuffled, 10, "s")} == chosen
    assert chosen != set(keys[:10])  # not the first rows


def test_a_duplicate_statement_keeps_only_its_first_fact():
    p = PRESETS["dlk/imdb"]
    df = pd.DataFrame({"text": ["Same.", "Same.", "Other."], "label": [1, 1, 0]})
    table = p.build({"train": df}, p.source)
    assert table["statement"].is_unique and table["group"].nunique() == 2


# ---------------------------------------------------------------------------------------------
# `hub:` through the datasets library, on local files


def _local(tmp_path: Path, kind: str) -> dict:
    df = pd.DataFrame({
        "text": [f"Statement number {i}." for i in range(12)],
        "truth": [i % 2 for i in range(12)],
        "fact": [f"f{i // 2}" for i in range(12)],
    })  # fmt: skip
    if kind == "disk":
        import datasets

        datasets.Dataset.from_pandas(df).save_to_disk(str(tmp_path / "saved"))
        return {"path": str(tmp_path / "saved")}
    path = tmp_path / f"rows.{kind}"
    {"parquet": df.to_parquet, "csv": lambda p: df.to_csv(p, index=False),
     "json": lambda p: df.to_json(p, orient="records", lines=True)}[kind](path)  # fmt: skip
    return {"path": kind, "data_files": [str(path)]}


@pytest.mark.parametrize("kind", ["parquet", "csv", "json", "disk"])
def test_hub_reads_local_files_through_datasets_and_records_where_they_came_from(
    tmp_path, monkeypatch, kind
):
    monkeypatch.chdir(tmp_path)
    entry = {"hub": {**_local(tmp_path, kind), "statement": "text", "label": "truth",
                     "group": "fact", "limit": 4}}  # fmt: skip
    ds = hub_dataset("mine", entry)
    ds.ensure()
    table = read_table(ds.path)
    assert table["group"].nunique() == 4 and len(table) == 8  # 4 facts of 2 rows each
    prov = json.loads(ds.path.with_suffix(".json").read_text())
    assert prov["rows"] == 8 and prov["sha256"] == rows_sha256(table)
    assert prov["source"]["path"] == entry["hub"]["path"] and prov["resolved_revision"] is None


def _cfg(tmp_path: Path, datasets: dict) -> dict:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["datasets"] = datasets
    cfg["transfer"] = {**cfg.get("transfer", {}), "align_on": "each", "allow_unscored": True}
    return cfg


def test_a_missing_column_or_split_is_named_when_the_workflow_is_planned(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = _local(tmp_path, "parquet")
    cfg = _cfg(tmp_path, {"mine": {"hub": {**local, "statement": "sentence", "label": "truth"}}})
    with pytest.raises(ConfigError, match=r"datasets\.mine.*no column 'sentence'"):
        validate_config(cfg)
    cfg["datasets"]["mine"]["hub"] = {**local, "statement": "text", "label": "truth",
                                      "splits": ["validation"]}  # fmt: skip
    with pytest.raises(ConfigError, match=r"datasets\.mine.*no split \['validation'\]"):
        validate_config(cfg)


def test_a_hub_dataset_not_on_this_machine_stops_the_plan_with_the_fetch_command(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for entry in ({"hub": {"path": "nobody/not-a-dataset"}}, {"preset": "got/cities"}):
        with pytest.raises(ConfigError, match=r"python -m crossprobe\.hub fetch"):
            validate_config(_cfg(tmp_path, {"x": entry}))
        assert not hub.TABLE_DIR.exists() or not list(hub.TABLE_DIR.glob("x-*.parquet"))


def test_a_changed_source_is_a_new_table_so_what_depends_on_it_reruns():
    a = hub_dataset("d", {"preset": "dlk/imdb"})
    b = hub_dataset("d", {"preset": "dlk/imdb", "hub": {"revision": "abc123"}})
    c = hub_dataset("d", {"preset": "dlk/imdb", "hub": {"limit": 10}})
    assert len({a.path, b.path, c.path}) == 3 and b.source.revision == "abc123"
    with pytest.raises(ConfigError, match=r"datasets\.d\.preset: unknown preset"):
        hub_dataset("d", {"preset": "dlk/nope"})
    with pytest.raises(ConfigError, match=r"datasets\.d\.hub: unknown keys \['colum'\]"):
        hub_dataset("d", {"hub": {"path": "x/y", "colum": "s"}})


def test_generic_tables_keep_other_columns_for_regression_targets():
    df = pd.DataFrame({"statement": ["a", "b"], "label": [0.5, 2.0], "extra": [1, 2]})
    t = generic_table({"train": df}, HubSource(path="parquet"))
    assert list(t["extra"]) == [1, 2] and list(t["group"]) == ["train:0", "train:1"]


# ---------------------------------------------------------------------------------------------
# configs/truth-suite.yaml


def test_the_truth_suite_names_the_seventeen_and_each_builds_from_its_fixture(
    tmp_path, monkeypatch
):
    cfg = yaml.safe_load((ROOT / "configs" / "truth-suite.yaml").read_text())
    run = validate_config(cfg, inputs=False)
    presets = sorted(spec.hub["preset"] for spec in run.datasets.values() if spec.hub)
    assert presets == sorted(PRESETS) and len(presets) == 17
    monkeypatch.chdir(tmp_path)

    def answered(src, *, online=False):  # the hub call, answered from the fixtures
        preset = next(p for p, v in PRESETS.items() if v.source.path == src.path
                      and v.source.name == src.name)  # fmt: skip
        return fixture(preset, 6), "0123abcd"

    monkeypatch.setattr(hub, "load_rows", answered)
    monkeypatch.setattr("crossprobe.presets.got_frames",
                        lambda preset, folder, online: (fixture(preset, 6), "91b2232"))  # fmt: skip
    for name, spec in run.datasets.items():
        ds = hub_dataset(name, {"hub": spec.hub["source"], "preset": spec.hub["preset"]})
        ds.ensure()
        assert Path(spec.path) == ds.path
        validate_table(read_table(ds.path), source=name)
        prov = json.loads(ds.path.with_suffix(".json").read_text())
        assert prov["preset"] == spec.hub["preset"] and prov["resolved_revision"]


def test_the_workflow_plans_and_builds_a_hub_dataset_like_a_built_in_one(tmp_path):
    """`snakemake` on a config whose dataset is `hub:` (local Parquet through `datasets`): the
    table is made when the workflow is planned, and the `dataset` rule splits it by fact."""
    import subprocess
    import sys

    cfg = _cfg(tmp_path, {"mine": {"hub": {**_local(tmp_path, "parquet"), "statement": "text",
                                           "label": "truth", "group": "fact"}}})  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
           str(tmp_path), "--cores", "1", "results/datasets/mine.parquet"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    table = pd.read_parquet(tmp_path / "results" / "datasets" / "mine.parquet")
    assert len(table) == 12 and (table.groupby("group")["split"].nunique() == 1).all()
    made = list((tmp_path / "data" / "hub").glob("mine-*.parquet"))
    assert len(made) == 1 and made[0].with_suffix(".json").is_file()
