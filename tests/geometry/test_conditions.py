"""Condition geometry against behaviour: known answers for the geometry, the measured behaviour,
the statistics, the config checks, and a small workflow run on tiny local models."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from _ablate_fixtures import tiny_gpt2, tiny_llama, tiny_tokenizer
from scipy import stats
from scipy.spatial.distance import jensenshannon

from crossprobe.align import LinearMap, identity_map
from crossprobe.config import validate_config
from crossprobe.errors import ConfigError
from crossprobe.geometry.conditions import (
    POOLED,
    behaviour_frame,
    behaviour_matrix,
    builtin_set,
    carry_activations,
    centroids,
    condition_geometry,
    condition_prompts,
    correlate_sources,
    cosine_matrix,
    jsd_similarity,
    layer_sensitivity,
    normalised_centroids,
    source_pairs,
    word_overlap,
)

ROOT = Path(__file__).resolve().parents[2]
ZOO = {"zoo": {"arch": "llama", "tokenizer": "word"}}


def _names(n):
    return [f"c{i}" for i in range(n)]


def _planted(n=12, q=5, d=16, seed=0):
    """Activations of ``n`` conditions, ``q`` questions each, condition-major."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, d)) * 3 + rng.standard_normal((n, q, d))
    return x.reshape(n * q, d), np.repeat(np.arange(n), q)


# --------------------------------------------------------------------------------- geometry


def test_centroids_centring_and_normalisation_match_a_hand_computation():
    x = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [2.0, 2.0], [-1.0, -1.0], [-3.0, -1.0]])
    idx = np.array([0, 0, 1, 1, 2, 2])
    c = centroids(x, idx, 3)
    np.testing.assert_allclose(c, [[2.0, 1.0], [1.0, 3.0], [-2.0, -1.0]])
    # global mean of the centroids: (1/3, 1); centred: (5/3, 0), (2/3, 2), (-7/3, -2)
    centred = np.array([[5 / 3, 0.0], [2 / 3, 2.0], [-7 / 3, -2.0]])
    unit = normalised_centroids(c)
    np.testing.assert_allclose(unit, centred / np.linalg.norm(centred, axis=1, keepdims=True))
    cos = condition_geometry(x, idx, 3)
    want01 = (5 / 3 * 2 / 3) / (5 / 3 * math.hypot(2 / 3, 2.0))
    np.testing.assert_allclose(cos[0, 1], want01)
    np.testing.assert_allclose(np.diag(cos), 1.0)
    np.testing.assert_allclose(cos, cos.T)


def test_identical_conditions_are_an_error_not_a_nan():
    x = np.ones((6, 4))
    with pytest.raises(ValueError, match="centred centroid is zero"):
        condition_geometry(x, np.repeat(np.arange(3), 2), 3)
    with pytest.raises(ValueError, match="needs rows"):
        centroids(np.ones((2, 3)), np.array([0, 0]), 2)


def test_an_identity_or_orthogonal_map_keeps_the_geometry():
    x, idx = _planted(n=6, d=8)
    cos = condition_geometry(x, idx, 6)
    np.testing.assert_allclose(
        condition_geometry(carry_activations(identity_map(8), x), idx, 6), cos
    )
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((8, 8)))
    rot = LinearMap("procrustes", q, np.full(8, 5.0), q.T, np.zeros(8), 1.0, 1.0)
    np.testing.assert_allclose(
        condition_geometry(carry_activations(rot, x), idx, 6), cos, atol=1e-12
    )
    with pytest.raises(ValueError, match="do not fit"):
        carry_activations(identity_map(4), x)


def test_word_overlap_is_the_jaccard_index_of_lower_case_words():
    got = word_overlap(["The cat, the dog.", "a Dog and a cat", "fish"])
    # {the, cat, dog} and {a, dog, and, cat}: 2 shared of 5
    np.testing.assert_allclose(got, [[1, 2 / 5, 0], [2 / 5, 1, 0], [0, 0, 1]])


def test_word_overlap_reads_every_script_and_says_nan_for_texts_without_words():
    got = word_overlap(["Привет, мир!", "привет друг", "你好", "—", "…"])
    assert got[0, 1] == pytest.approx(1 / 3)  # {привет, мир} and {привет, друг}
    assert got[0, 2] == 0.0 and got[2, 2] == 1.0
    assert np.isnan(got[3, 4])  # two texts with no word share nothing countable, not all


def test_a_condition_named_pooled_is_an_error():
    from crossprobe.geometry.conditions import read_conditions

    conditions = {f"c{i}": f"text {i}" for i in range(4)} | {"pooled": "a persona"}
    with pytest.raises(ConfigError, match="pooled"):
        read_conditions(conditions, "geometry.conditions")


def test_behaviour_logits_of_a_bfloat16_model_are_float32():
    """The whole vocabulary's logits come from the float32 product of the final hidden state
    and the head, also for a bfloat16 model (its own bfloat16 logits are rounded)."""
    from crossprobe.ablate import last_token_logits

    model = tiny_llama().to(torch.bfloat16).eval()
    tok = tiny_tokenizer()
    prompts = ["a b c", "b c d e"]
    got = torch.cat(list(last_token_logits(model, tok, prompts, batch_size=2)))
    assert got.dtype == torch.float32
    for i, p in enumerate(prompts):
        enc = tok([p], return_tensors="pt")
        with torch.inference_mode():
            out = model(**enc, output_hidden_states=True)
        h = out.hidden_states[-1][0, -1].float()  # final-normed last state
        ref = h @ model.lm_head.weight.float().T
        torch.testing.assert_close(got[i], ref, rtol=1e-5, atol=1e-5)
        assert not torch.equal(got[i], out.logits[0, -1].float())  # not the bf16 logits


# --------------------------------------------------------------------------------- statistics


def _table(names, values):
    return behaviour_frame(names, values)


def test_a_monotone_function_of_the_cosine_gives_rho_one():
    x, idx = _planted(n=10)
    names = _names(10)
    cos = condition_geometry(x, idx, 10)
    result = correlate_sources(source_pairs(cos, names, _table(names, np.exp(2 * cos))))
    for name, c in result.items():
        assert c.spearman == pytest.approx(1.0), name
        assert c.n == (9 if name != POOLED else 90)
    # decreasing: -1
    result = correlate_sources(source_pairs(cos, names, _table(names, -(cos**3))))
    assert result[POOLED].spearman == pytest.approx(-1.0)


def test_a_shuffled_table_gives_rho_near_zero():
    n = 60
    x, idx = _planted(n=n, seed=2)
    names = _names(n)
    cos = condition_geometry(x, idx, n)
    table = _table(names, cos)
    table["value"] = np.random.default_rng(3).permutation(table["value"].to_numpy())
    result = correlate_sources(source_pairs(cos, names, table))
    assert abs(result[POOLED].spearman) < 0.06
    assert abs(np.median([c.spearman for s, c in result.items() if s != POOLED])) < 0.1


def test_the_pooled_statistic_is_scipys_on_the_stacked_pairs():
    x, idx = _planted(n=8, seed=4)
    names = _names(8)
    cos = condition_geometry(x, idx, 8)
    rng = np.random.default_rng(5)
    table = _table(names, cos + rng.standard_normal((8, 8)))
    pairs = source_pairs(cos, names, table)
    res = correlate_sources(pairs)
    xs, ys = [], []
    for i in range(8):
        for j in range(8):
            if i != j:
                xs.append(cos[i, j])
                ys.append(
                    table.set_index(["source", "condition"]).loc[(names[i], names[j]), "value"]
                )
    s, r = stats.spearmanr(xs, ys), stats.pearsonr(xs, ys)
    assert res[POOLED].n == 56
    np.testing.assert_allclose(res[POOLED].spearman, s.statistic)
    np.testing.assert_allclose(res[POOLED].spearman_p, s.pvalue)
    np.testing.assert_allclose(res[POOLED].pearson, r.statistic)
    np.testing.assert_allclose(res[POOLED].pearson_p, r.pvalue)
    one = pairs[pairs["source"] == "c3"]
    np.testing.assert_allclose(res["c3"].spearman, stats.spearmanr(one["cosine"], one["value"])[0])


def test_a_constant_behaviour_gives_nan_not_an_error():
    names = _names(5)
    x, idx = _planted(n=5)
    res = correlate_sources(
        source_pairs(condition_geometry(x, idx, 5), names, _table(names, np.ones((5, 5))))
    )
    assert math.isnan(res[POOLED].spearman)


def test_layer_sensitivity_marks_the_best_layer():
    rows = []
    for pos, rho in [(0, 0.2), (1, 0.7), (2, 0.5)]:
        for src, v in [("a", rho), ("b", rho - 0.1), (POOLED, rho)]:
            rows.append({"geometry_model": "m", "behaviour_model": "m", "via": "own",
                         "activations_model": "m", "layer_position": pos, "layer": 3 * pos,
                         "activations_layer": 3 * pos, "source": src, "n": 9, "spearman": v,
                         "spearman_p": 0.01, "pearson": v, "pearson_p": 0.01})  # fmt: skip
    out = layer_sensitivity(pd.DataFrame(rows))
    assert out["best"].tolist() == [False, True, False]
    np.testing.assert_allclose(out["median_source_spearman"], [0.15, 0.65, 0.45])


# --------------------------------------------------------------------------------- behaviour


def test_jsd_similarity_equals_scipy():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7), size=4)
    q = rng.dirichlet(np.ones(7), size=4)
    p[0, :3] = 0.0
    p[0] /= p[0].sum()
    with np.errstate(divide="ignore"):
        got = jsd_similarity(np.log(p), np.log(q))
    want = 1.0 - np.array([jensenshannon(a, b) ** 2 for a, b in zip(p, q, strict=True)]) / math.log(
        2
    )
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(jsd_similarity(np.log(q), np.log(q)), 1.0)
    with np.errstate(divide="ignore"):
        disjoint = np.log(np.array([[1.0, 0.0], [0.0, 1.0]]))
        assert jsd_similarity(disjoint[0], disjoint[1]) == pytest.approx(0.0)


def test_the_measured_behaviour_on_a_tiny_model_equals_a_scipy_computation():
    from crossprobe.ablate import last_token_logits

    model, tok = tiny_llama(seed=2), tiny_tokenizer()
    conditions = [("a", "the cat is big"), ("b", "the dog is small"), ("c", "the sea is blue"),
                  ("d", "a stone was cold")]  # fmt: skip
    probes = ["is the sun hot", "the tree", "a river"]
    prompts, idx = condition_prompts(conditions, probes, "raw")
    assert (
        prompts[1] == "the cat is big\n\nthe tree"
        and idx.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    )
    logits = torch.cat(list(last_token_logits(model, tok, prompts, batch_size=5)))
    logp = torch.log_softmax(logits.double(), -1).numpy().reshape(4, 3, -1)
    got = behaviour_matrix(logp)
    # Reference: each prompt alone (no padding), scipy's Jensen-Shannon distance squared.
    probs = []
    for prompt in prompts:
        with torch.inference_mode():
            out = model(**tok(prompt, return_tensors="pt")).logits[0, -1].double()
        probs.append(torch.softmax(out, -1).numpy())
    probs = np.array(probs).reshape(4, 3, -1)
    for i in range(4):
        for j in range(4):
            js = [jensenshannon(probs[i, k], probs[j, k], base=2) ** 2 for k in range(3)]
            np.testing.assert_allclose(got[i, j], 1.0 - np.mean(js), atol=1e-6)
    assert np.all(got[~np.eye(4, dtype=bool)] < 1.0)


def test_chat_prompts_put_the_condition_in_the_system_turn():
    tok = tiny_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    prompts, _ = condition_prompts([("a", "be a cat"), ("b", "be a dog")], ["hi"], "chat", tok)
    assert prompts == [
        "<system>be a cat</system><user>hi</user><assistant>",
        "<system>be a dog</system><user>hi</user><assistant>",
    ]


def test_the_builtin_set_is_disjoint_and_large_enough():
    b = builtin_set()
    assert 12 <= len(b.conditions) <= 16
    assert 8 <= len(b.questions) <= 12
    assert not set(b.questions) & set(b.probe_questions)


# --------------------------------------------------------------------------------- config


def _cfg(**geometry):
    return {
        "models": {"a": ZOO, "b": {**ZOO, "zoo": {**ZOO["zoo"], "seed": 2}}},
        "datasets": {"parity": {"builtin": "parity"}},
        "geometry": {"enabled": True, **geometry},
    }


def _fails(cfg, *fragments):
    with pytest.raises(ConfigError) as e:
        validate_config(cfg, inputs=False)
    for f in fragments:
        assert f in str(e.value), str(e.value)


def _user_table(tmp_path, names, drop=(), extra=(), suffix="csv"):
    rows = [(s, c, 0.5) for s in names for c in names if s != c and (s, c) not in drop]
    df = pd.DataFrame([*rows, *extra], columns=["source", "condition", "value"])
    path = tmp_path / f"behaviour.{suffix}"
    df.to_csv(path, index=False) if suffix == "csv" else df.to_parquet(path)
    return str(path)


def test_unknown_and_missing_conditions_in_a_user_table_are_errors(tmp_path):
    names = builtin_set().names
    path = _user_table(tmp_path, names, extra=[("pirate", "astronaut", 0.1)])
    _fails(_cfg(behaviour=path, behaviour_model="a"), "astronaut", "behaviour.csv")
    path = _user_table(tmp_path, names, drop=[("pirate", "chef")], suffix="parquet")
    _fails(_cfg(behaviour=path, behaviour_model="a"), "'pirate'", "['chef']", "behaviour.parquet")
    good = _user_table(tmp_path, names)
    _fails(_cfg(behaviour=good), "geometry.behaviour_model")
    _fails(_cfg(behaviour=good, behaviour_model="zz"), "geometry.behaviour_model", "'zz'")
    run = validate_config(_cfg(behaviour=good, behaviour_model="a"), inputs=False)
    assert run.geometry.behaviour_model == "a" and not run.geometry.measured
    _fails(_cfg(behaviour=str(tmp_path / "nope.csv"), behaviour_model="a"), "does not exist")


def test_other_geometry_config_errors(tmp_path):
    b = builtin_set()
    _fails(_cfg(probe_questions=[b.questions[0], "Fine?"]), "geometry.probe_questions")
    _fails(_cfg(conditions={"x": "a", "y": "b", "z": "c"}), "geometry.conditions", "at least 4")
    _fails(_cfg(prompt_format={"c": "chat"}), "geometry.prompt_format", "'c'")
    _fails(_cfg(figure_layer=5), "geometry.figure_layer")
    _fails(_cfg(models=["a", "zz"]), "geometry.models", "'zz'")
    assert validate_config(_cfg(models=["b"]), inputs=False).geometry.models == ("b",)
    _fails(_cfg(conditions=str(tmp_path / "none.yaml")), "geometry.conditions", "does not exist")
    _fails(_cfg(colour="red"), "geometry", "colour")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({f"p{i}": f"text {i}" for i in range(5)}))
    (tmp_path / "q.txt").write_text("one?\n\ntwo?\n")
    run = validate_config(
        _cfg(conditions=str(tmp_path / "c.yaml"), questions=str(tmp_path / "q.txt")), inputs=False
    )
    assert run.geometry.names == [f"p{i}" for i in range(5)]
    assert run.geometry.questions == ("one?", "two?")
    assert not validate_config({**_cfg(), "geometry": {}}, inputs=False).geometry.enabled


def test_chat_without_a_chat_template_is_an_error_before_any_job(tmp_path):
    d = _save(tmp_path / "m", tiny_llama(), tiny_tokenizer())
    cfg = _workflow_config({"m": {"path": str(d)}}, prompt_format={"m": "chat"})
    with pytest.raises(ConfigError, match="geometry.prompt_format: chat needs a chat template"):
        validate_config(cfg)


# --------------------------------------------------------------------------------- workflow

WORKFLOW_CONDITIONS = {
    "cat": "the cat is big and old",
    "dog": "the dog is small and new",
    "sea": "the sea is blue and cold",
    "sky": "the sky is blue and very big",
    "sun": "the sun is hot and red",
    "stone": "a stone was dry and cold",
}


def _save(folder: Path, model, tok) -> Path:
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _statements(path: Path) -> str:
    """A small dataset in the tiny tokenizer's words (the maps are fit on its align rows)."""
    subjects = [
        f"{d} {n}"
        for d in ("the", "a")
        for n in ("cat", "dog", "sky", "sea", "sun", "moon", "tree", "river", "stone")
    ]
    adjectives = ["blue", "green", "red", "big", "small", "hot", "cold", "wet", "dry", "old", "new"]
    rows = [(f"{s} {v} {m}{a}", int(a in adjectives[:5]))
            for s in subjects for v in ("is", "was") for m in ("", "very ", "not ")
            for a in adjectives]  # fmt: skip
    pd.DataFrame(rows, columns=["statement", "label"]).to_csv(path, index=False)
    return str(path)


def _workflow_config(models, data=None, **geometry):
    return {
        "models": models,
        "datasets": {"words": {"path": data}}
        if data
        else {"larger_than": {"builtin": "larger_than"}},
        "layers": [0, 1],
        "transfer": {"min_sources": 1, "min_prompts": 20, "allow_unscored": True},
        "steering": {"enabled": False},
        "geometry": {
            "enabled": True,
            "conditions": WORKFLOW_CONDITIONS,
            "questions": ["is the tree green", "the river is wet", "a moon", "is it not red"],
            "probe_questions": ["the tree is", "a river", "is the moon"],
            "via_map": False,
            **geometry,
        },
    }


def test_workflow_geometry_targets_on_tiny_local_models(tmp_path):
    work = tmp_path / "run"
    work.mkdir()
    models = {
        "llama": {"path": str(_save(tmp_path / "llama", tiny_llama(seed=1), tiny_tokenizer()))},
        "gpt2": {"path": str(_save(tmp_path / "gpt2", tiny_gpt2(seed=2), tiny_tokenizer()))},
    }
    # via_map: the datasets are extracted and aligned for the maps between the two models.
    cfg = _workflow_config(models, _statements(work / "words.csv"), via_map=True)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"),
           "--directory", str(work), "--configfile", str(work / "config.yaml"), "--cores", "2",
           "geometry"]  # fmt: skip
    res = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert res.returncode == 0, res.stderr[-6000:]
    results = work / "results"
    assert not (results / "effects").exists()  # nothing of the transfer stage beyond the maps
    geometry = pd.read_csv(results / "tables/geometry.csv")
    assert set(geometry["model"]) == {"llama", "gpt2"} and len(geometry) == 2 * 2 * 36
    table = pd.read_csv(results / "tables/geometry_behaviour.csv")
    # every behaviour model against every geometry model at both layers, 6 sources + pooled;
    # and each model's activations carried into the other through the maps
    own, mapped = table[table["via"] == "own"], table[table["via"] == "map"]
    assert len(own) == 2 * 2 * 2 * 7 and len(mapped) == 2 * 2 * 7
    assert (mapped["activations_model"] == mapped["behaviour_model"]).all()
    assert (mapped["geometry_model"] != mapped["behaviour_model"]).all()
    assert table["spearman"].notna().all()
    words = table[table["via"] == "words"]  # the wording baseline, once per behaviour model
    assert len(words) == 2 * 7 and set(words["layer"]) == {-1}
    pairs = pd.read_csv(results / "tables/geometry_behaviour_values.csv")
    for _, row in table[table["source"] == POOLED].iterrows():
        sub = pairs[(pairs["geometry_model"] == row["geometry_model"])
                    & (pairs["behaviour_model"] == row["behaviour_model"])
                    & (pairs["via"] == row["via"])
                    & (pairs["layer_position"] == row["layer_position"])]  # fmt: skip
        assert len(sub) == row["n"] == 30
        np.testing.assert_allclose(
            stats.spearmanr(sub["cosine"], sub["value"])[0], row["spearman"], rtol=1e-5
        )
    behaviour = pd.read_parquet(results / "geometry/llama/behaviour.parquet")
    assert ((behaviour["value"] > 0) & (behaviour["value"] < 1)).all()
    m = behaviour.pivot(index="source", columns="condition", values="value")
    np.testing.assert_allclose(m.to_numpy(), m.T.to_numpy())  # symmetric (NaN diagonal too)
    layers = pd.read_csv(results / "tables/geometry_layers.csv")
    assert layers.groupby(["geometry_model", "behaviour_model", "via"])["best"].sum().eq(1).all()
    for fig in ("geometry.png", "geometry_behaviour.png"):
        assert (results / "figures" / fig).stat().st_size > 10_000
    cos = geometry[(geometry["model"] == "llama") & (geometry["layer_position"] == 1)]
    assert np.allclose(cos[cos["condition_a"] == cos["condition_b"]]["cosine"], 1.0)
    assert cosine_matrix(np.eye(2)).tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_every_geometry_rule_has_a_resource_estimate():
    from crossprobe.cluster.resources import Sizer, load_cluster

    run = validate_config(_cfg(), inputs=False)
    sizer = Sizer(run, load_cluster())
    for rule in ("geometry_extract", "geometry_behaviour"):
        job = sizer.resources(rule, {"model": "a"})
        assert job.gpu is not None and job.runtime > 0 and job.mem_mb > 0
    assert sizer.resources("geometry_tables", {}).gpu is None


def test_a_user_table_is_read_per_behaviour_model(tmp_path):
    from types import SimpleNamespace

    from crossprobe.geometry.jobs import _behaviours

    names = _names(4)
    path = _user_table(tmp_path, names)
    smk = SimpleNamespace(
        params=SimpleNamespace(behaviour=path, behaviour_model="a"),
        input=SimpleNamespace(behaviour=[path]),
    )
    got = _behaviours(smk)
    assert list(got) == ["a"] and len(got["a"]) == 12
    df = pd.read_csv(path).assign(model=["a"] * 6 + ["b"] * 6)
    df.to_parquet(tmp_path / "two.parquet")
    smk.input.behaviour = [str(tmp_path / "two.parquet")]
    smk.params.behaviour = str(tmp_path / "two.parquet")
    assert {m: len(t) for m, t in _behaviours(smk).items()} == {"a": 6, "b": 6}
