"""Steering: known slopes, the zero dose, and hooks that leave the model as it was."""

import numpy as np
import pytest
import torch
from _ablate_fixtures import answer_ids, tiny_llama, tiny_tokenizer

from crossprobe.ablate import ablation_effects_by_layer
from crossprobe.preference.steer import (
    dose_response,
    prompt_slopes,
    steering_effects,
    steering_vectors,
    typical_spread,
)

PROMPTS = ["the cat is big", "the sky is blue and the sea is green", "paris is a city", "fire"]
ALPHAS = [-0.5, -0.25, 0.0, 0.25, 0.5]


def _linear_head_model():
    """A tiny Llama whose last block's output goes straight to the head (no final norm): its
    margin is linear in anything added there, with slope (W_pos − W_neg)·v."""
    model = tiny_llama(n_layers=3, seed=1)
    model.model.norm = torch.nn.Identity()
    return model


@pytest.mark.parametrize("fanout", [True, False])
def test_a_margin_linear_in_the_direction_gives_the_planted_slope(fanout):
    model, tok = _linear_head_model(), tiny_tokenizer()
    pos, neg = answer_ids(tok)
    w = model.lm_head.weight.detach()
    u = np.random.default_rng(0).standard_normal((2, 32)).astype(np.float32)
    norm = 3.0
    res = ablation_effects_by_layer(
        model,
        tok,
        PROMPTS,
        (pos, neg),
        {2: steering_vectors(u, ALPHAS, norm)},
        positions="skip_first",
        fanout=fanout,
        edit="add",
    )
    dm = res.effects[2].reshape(2, len(ALPHAS), len(PROMPTS))
    unit = u / np.linalg.norm(u, axis=1, keepdims=True)
    planted = norm * (unit @ (w[pos] - w[neg]).numpy())
    for k in range(2):
        np.testing.assert_allclose(prompt_slopes(ALPHAS, dm[k]), planted[k], rtol=1e-4)
        # The zero dose changes nothing: exactly with the fan-out (every copy replays the same
        # recorded rows); within float32 rounding with full passes, whose matrix products
        # round batch rows differently on some CPUs (seen: 1.2e-6 on an AMD EPYC).
        zero = np.abs(dm[k, ALPHAS.index(0.0)])
        assert np.all(zero == 0.0) if fanout else zero.max() < 1e-5


def test_steering_leaves_the_model_bit_identical_and_fanout_agrees():
    model, tok = tiny_llama(n_layers=3, seed=2), tiny_tokenizer()
    answers = answer_ids(tok)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.inference_mode():
        before = model(**enc).logits.clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    u = {1: np.random.default_rng(3).standard_normal((3, 32))}
    norms = {1: 2.0}
    clean, fx = steering_effects(model, tok, PROMPTS, answers, u, ALPHAS, norms)
    res = ablation_effects_by_layer(
        model,
        tok,
        PROMPTS,
        answers,
        {1: steering_vectors(u[1], ALPHAS, 2.0)},
        positions="skip_first",
        fanout=False,
        edit="add",
    )
    np.testing.assert_allclose(fx[1].reshape(-1, len(PROMPTS)), res.effects[1], atol=1e-4)
    assert fx[1].shape == (3, len(ALPHAS), len(PROMPTS))
    assert np.abs(fx[1]).max() > 1e-3
    with torch.inference_mode():
        after = model(**enc).logits
    assert torch.equal(before, after)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not any(b._forward_hooks for b in model.model.layers)


def test_dose_response_summary():
    slopes = np.array([1.0, 2.0, 3.0, 2.0])
    r = dose_response(slopes, n_resamples=500)
    assert r.slope == pytest.approx(2.0) and r.ci_low <= 2.0 <= r.ci_high and r.n == 4
    assert r.p_value < 0.05
    responses = np.outer(ALPHAS, [1.0, -2.0]) + 5.0
    np.testing.assert_allclose(prompt_slopes(ALPHAS, responses), [1.0, -2.0])
    # The spread about the mean, blind to the mean itself (median of distances 1, 1, 3, 3).
    points = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 3.0], [0.0, -3.0]])
    assert typical_spread(points) == pytest.approx(2.0)
    assert typical_spread(points + 100.0) == pytest.approx(2.0)
    v = steering_vectors(np.array([[2.0, 0.0]]), [-1.0, 0.0, 1.0], 4.0)
    np.testing.assert_allclose(v, [[-4.0, 0.0], [0.0, 0.0], [4.0, 0.0]])


def test_dose_response_resamples_facts_not_wordings():
    """Eight wordings of each of six facts give the interval and the t-test of six facts."""
    rng = np.random.default_rng(0)
    facts = rng.normal(1.0, 1.0, 6)
    copies = np.repeat(facts, 8)
    groups = np.repeat(np.arange(6), 8)
    by_fact = dose_response(copies, groups=groups, n_resamples=4000, seed=1)
    alone = dose_response(facts, n_resamples=4000, seed=1)
    naive = dose_response(copies, n_resamples=4000, seed=1)
    assert by_fact.n == 48 and by_fact.n_facts == 6 and naive.n_facts == 48
    assert by_fact.slope == pytest.approx(alone.slope)
    width = by_fact.ci_high - by_fact.ci_low
    assert width == pytest.approx(alone.ci_high - alone.ci_low, rel=0.1)
    assert width > 2.0 * (naive.ci_high - naive.ci_low)  # ≈ √8 narrower when wordings count
    assert by_fact.p_value == pytest.approx(alone.p_value)


# ---------------------------------------------------------------------------------------------
# Tables from long-format responses


def _long(model, dataset, probe_slopes, null_slopes, *, seed=0, n=40, layer=1, source=None):
    """A steering job's long table whose per-prompt responses are exactly linear in α with
    the given mean slopes (each prompt's slope jittered around it)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    hashes = [f"h{i:03d}" for i in range(n)]
    frames = []
    for kind, slopes in (("probe", probe_slopes), ("null", null_slopes)):
        for name, slope in slopes.items():
            per_prompt = slope + rng.normal(0, 0.1, n)
            per_prompt += slope - per_prompt.mean()  # the mean is exactly `slope`
            for a in ALPHAS:
                frames.append(
                    pd.DataFrame(
                        {
                            "model": model, "dataset": dataset, "response": "margin",
                            "kind": kind, "probe": name, "source_layer": layer, "layer": layer,
                            "norm": 2.0, "alpha": a, "row_hash": hashes, "clean": 0.0,
                            "delta": per_prompt * a,
                        }
                    )
                )  # fmt: skip
    out = pd.concat(frames, ignore_index=True)
    return out.assign(source=source) if source else out


def test_self_table_recovers_planted_slopes_and_its_null():
    from crossprobe.preference.steer import self_tables

    nulls = {f"null:{j}": s for j, s in enumerate(np.linspace(-0.3, 0.3, 9))}
    probes = {
        "dim": 2.0,
        "logreg": -1.5,
        "weak": 0.05,
        "weak_back": -0.25,  # its interval lies below 0, but it does not beat the null
        "ridge:number": -1.5,  # a sign that says nothing about the answer
        "ridge:self_rating": -1.5,
    }
    frame = _long("m", "d", probes, nulls)
    slopes, curves = self_tables(frame, n_resamples=200)
    by = slopes.set_index("probe")
    assert by.loc["weak_back", "ci_high"] < 0 and not by.loc["weak_back", "beats_null"]
    assert not by.loc["weak_back", "backwards"]
    assert by.loc["ridge:number", "beats_null"] and not by.loc["ridge:number", "backwards"]
    assert by.loc["ridge:self_rating", "backwards"]
    assert (by["null_k"] == 9).all()
    np.testing.assert_allclose(by.loc["dim", "slope"], 2.0, rtol=1e-9)
    np.testing.assert_allclose(by.loc["logreg", "slope"], -1.5, rtol=1e-9)
    assert by.loc["dim", "ci_low"] < 2.0 < by.loc["dim", "ci_high"]
    assert by.loc["dim", "beats_null"] and not by.loc["dim", "backwards"]
    assert by.loc["logreg", "backwards"] and by.loc["logreg", "beats_null"]
    assert not by.loc["weak", "beats_null"]
    # |slope| beyond every null slope: the smallest permutation p-value, 1 / (k + 1).
    assert by.loc["dim", "p_null"] == pytest.approx(1 / 10)
    np.testing.assert_allclose(
        by.loc["dim", "null_p95"], np.quantile(np.abs(list(nulls.values())), 0.95)
    )
    assert (slopes["zero_dose_max"] == 0).all()
    assert set(slopes["sign"].str[:1]) == {"+"}
    dim = curves[curves.probe == "dim"].set_index("alpha")["mean"]
    np.testing.assert_allclose(dim.to_numpy(), 2.0 * np.array(ALPHAS), atol=1e-12)
    band = curves[curves.probe.isin(["null_low", "null_high"])]
    assert len(band) == 2 * len(ALPHAS)


def test_carried_table_gives_the_slope_ratio_and_the_prompt_correlation():
    import pandas as pd

    from crossprobe.preference.steer import carried_table, slopes_frame, with_pearson_ce

    src = _long("s", "d", {"dim": 2.0}, {"null:0": 0.1}, seed=1)
    tgt = _long("t", "d", {"dim": 1.0}, {"null:0": 0.1, "null:1": -0.2}, seed=2)
    # Carried: the source's own per-prompt slopes, halved: ratio 0.5, correlation 1.
    carried = src[src.kind == "probe"].assign(
        model="t", source="s", delta=lambda f: f.delta / 2, carried_length=0.8, carried=True
    )
    src, tgt = slopes_frame(src), slopes_frame(tgt)
    table = carried_table(carried, src, tgt, n_resamples=200)
    row = table.iloc[0]
    assert row["source_beats_null"] and row["carried"] and row["carried_length"] == 0.8
    assert row["slope_source"] == pytest.approx(2.0)
    assert row["slope_target"] == pytest.approx(1.0)
    assert row["slope_ratio"] == pytest.approx(0.5)
    assert row["prompt_corr"] == pytest.approx(1.0)
    assert row["p_null"] == pytest.approx(1 / 3)
    transfer = pd.DataFrame(
        {"source": ["s"], "target": ["t"], "dataset": ["d"], "method": ["dim"],
         "source_layer": [1], "target_layer": [1], "pearson_ce": [0.7]}
    )  # fmt: skip
    assert with_pearson_ce(table, transfer)["pearson_ce"].tolist() == [0.7]
    shuffled = carried.assign(row_hash=carried["row_hash"].str.replace("h", "x"))
    with pytest.raises(ValueError, match="different prompts"):
        carried_table(shuffled, src, tgt)
    # A direction the map did not carry: reported as such, with no slope to read.
    dropped = carried_table(carried.assign(carried=False, carried_length=0.01), src, tgt)
    assert not dropped["carried"].iloc[0] and not dropped["beats_null"].iloc[0]
    assert dropped[["slope_target", "slope_ratio", "p_value"]].isna().all(axis=None)


def test_slope_ratio_only_where_the_source_slope_beats_its_null():
    from crossprobe.preference.steer import carried_table, slopes_frame

    # The source's own slope (0.05) is inside its null (|slopes| up to 0.3): no ratio.
    nulls = {f"null:{j}": s for j, s in enumerate(np.linspace(-0.3, 0.3, 9))}
    src = _long("s", "d", {"dim": 0.05}, nulls, seed=1)
    tgt = _long("t", "d", {"dim": 1.0}, nulls, seed=2)
    carried = src[src.kind == "probe"].assign(
        model="t", source="s", delta=lambda f: f.delta * 40, carried_length=1.0, carried=True
    )
    row = carried_table(carried, slopes_frame(src), slopes_frame(tgt), n_resamples=200).iloc[0]
    assert not row["source_beats_null"] and np.isnan(row["slope_ratio"])
    assert row["slope_target"] == pytest.approx(2.0)


def test_a_dotted_dataset_name_does_not_pick_up_another_datasets_ridge_probes(tmp_path):
    """Ridge probes live in one folder per dataset (`cities/`, `cities.big/`): a dataset's
    steering reads its own folder, and a file whose record names another dataset is refused."""
    from crossprobe.preference.jobs import _steering_probes
    from crossprobe.probes import Probe, save_probes

    def probe(v: float) -> Probe:
        d = np.full(4, v)
        return Probe("ridge", 1, d, d, 0.0, np.zeros(4), np.ones(4))

    save_probes(tmp_path / "own.safetensors", [Probe("dim", 1, *[np.ones(4)] * 2, 0.0,
                np.zeros(4), np.ones(4))], {"dataset": "cities"})  # fmt: skip
    folders = {}
    for dataset, target, v in (("cities", "number", 1.0), ("cities.big", "number", 2.0)):
        folders[dataset] = tmp_path / "regression" / dataset
        folders[dataset].mkdir(parents=True)
        meta = {"dataset": dataset, "target": target, "method": "ridge"}
        save_probes(folders[dataset] / f"{target}.safetensors", [probe(v)], meta)
    own = str(tmp_path / "own.safetensors")
    got = _steering_probes(own, [str(folders["cities"])], "cities")
    assert sorted(got) == [("dim", 1), ("ridge:number", 1)]
    assert got[("ridge:number", 1)].direction[0] == 1.0
    big = _steering_probes(own, [str(folders["cities.big"])], "cities.big")
    assert big[("ridge:number", 1)].direction[0] == 2.0
    # A folder of another dataset's probes is refused, never steered under this one's name.
    with pytest.raises(ValueError, match="not 'cities'"):
        _steering_probes(own, [str(folders["cities.big"])], "cities")
