import numpy as np
import pandas as pd
import pytest

from crossprobe.stats import effect_ratio
from crossprobe.transfer.cells import (
    CellInputs,
    band,
    effect_beats_null,
    overstatement_summary,
    probebench_entries,
    score_cell,
    scored_cells,
    transfer_matrix,
)


def inputs(dm_s, dm_t, null, **kw):
    d = np.ones(4)
    base = dict(
        dm_source_null=null,
        carried_direction=d,
        target_direction=d,
        transfer_auroc=0.9,
        source_auroc=0.9,
        target_auroc=0.9,
        map_r2=1.0,
    )
    return CellInputs(dm_source=dm_s, dm_target=dm_t, dm_null=null, **{**base, **kw})


def test_identity_cell_is_exactly_one():
    rng = np.random.default_rng(0)
    dm = rng.normal(size=250)
    res = score_cell(inputs(dm, dm, rng.normal(size=(8, 250))))
    assert (res["pearson_ce"], res["ci_low"], res["ci_high"]) == (1.0, 1.0, 1.0)
    assert res["cosine"] == 1.0 and res["n"] == 250
    assert res["p_value"] == pytest.approx(1 / 9)


def test_unrelated_effects_sit_in_the_null():
    rng = np.random.default_rng(1)
    res = score_cell(inputs(rng.normal(size=300), rng.normal(size=300), rng.normal(size=(32, 300))))
    assert abs(res["pearson_ce"]) < 0.2
    assert res["ci_low"] < 0 < res["ci_high"]
    assert res["p_value"] > 0.05


def test_correlated_effects_no_larger_than_a_random_direction_do_not_beat_the_null():
    """Pearson is blind to scale: a tiny effect that follows the source's is still rho ~ 1.
    Only the effect-size half of the null tells it from a mechanism the model uses."""
    rng = np.random.default_rng(3)
    n, k = 300, 32
    null = rng.normal(size=(k, n))  # each random direction moves the margin by about 1 RMS
    dm_s = 20.0 * rng.normal(size=n)  # a direction the source uses: ~20 random directions
    follows = dm_s / 20.0 + 0.1 * rng.normal(size=n)  # same pattern, random-direction size
    weak = score_cell(inputs(dm_s, 1.0 * follows, null))
    assert weak["ci_low"] > weak["null_p95"]  # rho alone says "transfer"
    assert weak["source_effect"] == pytest.approx(20.0, rel=0.1)
    assert weak["target_effect"] == pytest.approx(1.0, rel=0.1)
    assert not weak["beats_null"]
    # Larger than every random direction but less than twice their median: not yet.
    assert not score_cell(inputs(dm_s, 1.5 * follows, null))["beats_null"]
    strong = score_cell(inputs(dm_s, 3.0 * follows, null))
    assert strong["target_effect"] == pytest.approx(3.0, rel=0.1) and strong["beats_null"]
    assert not score_cell(inputs(dm_s, 3.0 * follows, null), min_effect_ratio=4)["beats_null"]
    # With no ratio asked for, the percentile test alone: beyond the null's 95th percentile.
    assert score_cell(inputs(dm_s, 1.5 * follows, null), min_effect_ratio=0)["beats_null"]
    assert not score_cell(inputs(dm_s, 1.0 * follows, null), min_effect_ratio=0)["beats_null"]
    # No defined ratio where the source's random directions move nothing.
    silent = score_cell(inputs(dm_s, 15.0 * follows, null, dm_source_null=np.zeros((k, n))))
    assert silent["ci_low"] > silent["null_p95"] and np.isnan(silent["source_effect"])
    assert not silent["beats_null"]


def test_effect_beats_null_is_a_percentile_test_and_a_ratio():
    null = np.vstack([np.full(4, float(v)) for v in range(1, 21)])  # RMS 1..20, median 10.5
    assert effect_beats_null(np.full(4, 21.0), null, 2.0) is True  # > p95 (19.05), 2x median
    assert effect_beats_null(np.full(4, 19.0), null, 0.0) is False  # inside the null
    assert effect_beats_null(np.full(4, 20.0), null, 2.0) is False  # < 2 × 10.5
    assert effect_beats_null(np.full(4, 21.0), np.empty((0, 4))) is False


def test_a_direction_the_map_does_not_carry_is_never_scored_or_beats_the_null():
    rng = np.random.default_rng(6)
    dm_s = 10 * rng.normal(size=300)
    res = score_cell(
        inputs(dm_s, dm_s + rng.normal(size=300), rng.normal(size=(16, 300)), carried=False,
               carried_length=0.02)
    )  # fmt: skip
    assert not res["carried"] and res["carried_length"] == 0.02
    assert np.isnan(res["pearson_ce"]) and not res["beats_null"]


def test_rho_must_clear_the_map_matched_null_too():
    """A carried direction lies in the map's image: when random directions carried through the
    same map reproduce the source's pattern, rho beats the isotropic null but not this one."""
    rng = np.random.default_rng(7)
    n = 300
    dm_s = 10 * rng.normal(size=n)
    dm_t = dm_s + 2 * rng.normal(size=n)
    iso = rng.normal(size=(16, n))
    matched = 3 * (dm_s / 10 + 0.1 * rng.normal(size=(16, n)))  # every map direction agrees
    free = score_cell(inputs(dm_s, dm_t, iso))
    assert free["beats_null"] and free["matched_null_p95"] == free["null_p95"]
    tight = score_cell(inputs(dm_s, dm_t, iso, dm_matched_null=matched))
    assert tight["ci_low"] > tight["null_p95"] and tight["matched_null_p95"] > tight["ci_low"]
    assert not tight["beats_null"] and tight["matched_null_k"] == 16
    assert tight["matched_p_value"] > 0.5


def test_cells_count_facts():
    """Eight wordings of each of 25 facts: the interval widens to that of 25 facts, and a
    floor of 30 facts keeps the cell from beating its null."""
    rng = np.random.default_rng(9)
    facts = 10 * rng.normal(size=25)
    dm_s = np.repeat(facts, 8)
    dm_t = np.repeat(facts + 4 * rng.normal(size=25), 8)
    groups = np.repeat(np.arange(25), 8)
    null = rng.normal(size=(16, 200))
    res = score_cell(inputs(dm_s, dm_t, null, groups=groups), min_facts=30)
    naive = score_cell(inputs(dm_s, dm_t, null))
    assert res["n"] == 200 and res["n_facts"] == 25 and naive["n_facts"] == 200
    assert res["ci_high"] - res["ci_low"] > 2 * (naive["ci_high"] - naive["ci_low"])
    assert not res["beats_null"] and naive["beats_null"]


def test_effect_ratio_known_answer():
    null = np.array([[1.0, -1.0], [2.0, 2.0], [3.0, -3.0]])  # RMS 1, 2, 3: median 2
    assert effect_ratio(np.array([6.0, -6.0]), null) == pytest.approx(3.0)
    assert np.isnan(effect_ratio(np.ones(2), np.zeros((3, 2))))
    assert np.isnan(effect_ratio(np.ones(2), np.zeros((0, 2))))


def test_mismatched_prompts_are_refused():
    with pytest.raises(ValueError, match="same prompts"):
        score_cell(inputs(np.zeros(5), np.zeros(6), np.zeros((1, 5))))


@pytest.mark.parametrize(("rho", "name"), [(0.7, "strong"), (0.55, "partial"), (0.1, "weak")])
def test_bands(rho, name):
    assert band(rho) == name
    assert band(float("nan")) == "no data"


def table():
    rows = []
    for s in "ab":
        for t in "abc":
            rho = 1.0 if s == t else 0.5
            for m in ("dim", "logreg"):
                rows.append(
                    dict(
                        source=s,
                        target=t,
                        dataset="d",
                        method=m,
                        layer_position=0,
                        source_layer=1,
                        target_layer=1,
                        n=250,
                        pearson_ce=rho,
                        ci_low=rho - 0.1,
                        ci_high=rho + 0.1,
                        null_p95=0.2,
                        p_value=0.01,
                        source_effect=30.0,
                        target_effect=4.0,
                        beats_null=m == "dim" and s != t,
                        transfer_auroc=0.8,
                        cosine=0.9,
                        scored=True,
                    )
                )
    return pd.DataFrame(rows)


def test_matrix_counts_and_no_data_cells():
    m = transfer_matrix(table(), ["a", "b", "c"]).set_index(["source", "target"])
    assert m.loc[("a", "a"), "band"] == "identity" and m.loc[("a", "a"), "mean_pearson_ce"] == 1
    assert m.loc[("a", "b"), "n"] == 2 and m.loc[("a", "b"), "band"] == "partial"
    assert m.loc[("c", "a"), "band"] == "no data" and m.loc[("c", "a"), "n"] == 0
    assert m.loc[("a", "b"), "beats_null"] == 1  # the dim cell of the two
    assert m.loc[("a", "a"), "beats_null"] == 0 and m.loc[("c", "a"), "beats_null"] == 0


def test_overstatement_and_probebench():
    o = overstatement_summary(table())
    assert o["overstatement"] == pytest.approx((0.9 - 0.5) / 0.9)
    entries = probebench_entries(table())
    assert set(entries) == {"d-dim-p0", "d-logreg-p0"}
    cells = entries["d-dim-p0"]
    assert len(cells) == 4  # off-diagonal cells only
    assert {
        "probeId",
        "sourceModel",
        "targetModel",
        "pearson_ce",
        "transfer_auroc",
        "notes",
    } <= set(cells[0])
    assert "n=250" in cells[0]["notes"]
    assert "x30.000 source, x4.000 target" in cells[0]["notes"]
    assert "beats its null" in cells[0]["notes"]
    assert "does not beat its null" in entries["d-logreg-p0"][0]["notes"]


def full_table(models="abcd", n=250):
    """Every ordered pair of ``models``, one probe per pair, rho 0.5 off the diagonal."""
    rows = [
        dict(
            source=s,
            target=t,
            dataset="d",
            method="dim",
            layer_position=0,
            n=n,
            pearson_ce=1.0 if s == t else 0.5,
            beats_null=False,
        )
        for s in models
        for t in models
    ]
    return pd.DataFrame(rows)


def test_a_transfer_is_scored_with_enough_distinct_sources():
    t = full_table("abcd")  # three sources into every target
    diag = t.source == t.target
    assert scored_cells(t, min_prompts=200, min_sources=3).all()
    only_diag = scored_cells(t, min_prompts=200, min_sources=4)
    assert only_diag[diag].all() and not only_diag[~diag].any()
    # A source whose rho is missing does not count: into "d", only b and c remain.
    t.loc[(t.source == "a") & (t.target == "d"), "pearson_ce"] = np.nan
    s = scored_cells(t, min_prompts=200, min_sources=3)
    assert not s[(t.target == "d") & ~diag].any()
    assert s[(t.target == "a") & ~diag].all()


def test_cells_under_200_prompts_are_never_scored():
    small = full_table("abcd", n=150)
    assert not scored_cells(small, min_prompts=100, min_sources=1).any()
    assert scored_cells(full_table("abcd", n=250), min_prompts=200, min_sources=1).all()
    assert not scored_cells(full_table("abcd", n=250), min_prompts=300, min_sources=1).any()


def test_cells_with_few_facts_or_a_direction_not_carried_are_never_scored():
    t = full_table("abcd", n=250).assign(n_facts=40, carried=True)
    assert scored_cells(t, min_prompts=200, min_sources=1, min_facts=30).all()
    assert not scored_cells(t, min_prompts=200, min_sources=1, min_facts=41).any()
    dropped = t.assign(carried=t.source == t.target)  # only the diagonal carried
    s = scored_cells(dropped, min_prompts=200, min_sources=1, min_facts=30)
    assert s[t.source == t.target].all() and not s[t.source != t.target].any()


def test_diagonal_is_the_identity_even_when_nothing_is_scored():
    t = full_table("ab", n=250)
    t["scored"] = scored_cells(t, min_prompts=200, min_sources=3)
    m = transfer_matrix(t, ["a", "b"]).set_index(["source", "target"])
    assert m.loc[("a", "a"), "mean_pearson_ce"] == 1.0 and m.loc[("a", "a"), "n"] == 1
    assert m.loc[("a", "b"), "band"] == "no data" and m.loc[("a", "b"), "n"] == 0


def test_controls_do_not_count_toward_min_sources():
    """Four models, "d" a control: into a, b and c only two sources count, so their cells are
    not scored at min_sources=3, whatever the control does; into d the three others count."""
    t = full_table("abcd")
    off = t.source != t.target
    s = scored_cells(t, min_prompts=200, min_sources=3, controls=["d"])
    assert not s[off & (t.target != "d")].any()
    assert s[off & (t.target == "d")].all()
    assert s[~off].all()
    # The control's own cells follow their target's count: from d into a needs 3 non-controls.
    assert scored_cells(t, min_prompts=200, min_sources=2, controls=["d"])[off].all()
    assert scored_cells(t, min_prompts=200, min_sources=3).all()  # counted, d makes three


def test_effects_below_the_noise_floor_never_beat_the_null():
    rng = np.random.default_rng(5)
    n = 300
    null = 0.05 * rng.normal(size=(32, n))
    dm_s = rng.normal(size=n)
    dm_t = dm_s + 0.1 * rng.normal(size=n)
    clear = score_cell(inputs(dm_s, dm_t, null))
    assert clear["beats_null"] and clear["source_floor"] == clear["target_floor"] == 0.0
    # The same effects, with a target whose zero direction moves the margin by RMS 0.6: an
    # effect of RMS ~1 is under 2 floors, below min_effect_ratio (2).
    noisy = score_cell(inputs(dm_s, dm_t, null, floor_target=0.6))
    assert noisy["target_floor"] == 0.6 and not noisy["beats_null"]
    assert score_cell(inputs(dm_s, dm_t, null, floor_target=0.05))["beats_null"]
