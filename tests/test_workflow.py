"""End to end: the real Snakefile on a reduced zoo, every stage, then checks on what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from crossprobe.stats import pearson
from crossprobe.transfer.cells import scored_cells

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

REDUCED = {
    "models": {
        "llama": {
            "zoo": {
                "arch": "llama",
                "tokenizer": "word",
                "d_model": 32,
                "steps": 150,
                "seed": 1,
                "families": ["larger_than", "parity"],
            }
        },
        "gpt2": {
            "zoo": {
                "arch": "gpt2",
                "tokenizer": "bpe",
                "d_model": 32,
                "steps": 150,
                "seed": 2,
                "families": ["larger_than", "parity"],
            }
        },
        "random": {
            "zoo": {
                "arch": "llama",
                "tokenizer": "word",
                "d_model": 32,
                "seed": 3,
                "trained": False,
                "families": ["larger_than", "parity"],
            }
        },
    },
    "datasets": {
        "larger_than": {"builtin": "larger_than", "targets": {"diff": "diff", "number": "n1"}},
        "parity": {"builtin": "parity", "targets": {"number": "n"}},
    },
    "layers": [0.0, 1.0],
    # Two trained models and a control give each trained target one source that counts (the
    # control never does): score those cells (the default asks for three).
    # Maps on both datasets' align rows pooled, as the shipped configs declare them.
    "transfer": {
        "bootstrap": 200,
        "null_directions": 16,
        "min_prompts": 200,
        "min_sources": 1,
        "align_on": ["larger_than", "parity"],
    },
    "steering": {"alphas": [-0.5, -0.25, 0.0, 0.25, 0.5], "null_directions": 4, "prompts": 48},
    "baselines": {"text-minilm": {"model": None}},
    "crosslabels": {"labels": ["margin"], "folds": 5},
}
BASELINE = "text-minilm"


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [
        SNAKEMAKE,
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        *args,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}")
    return res


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("run")
    (work / "config.yaml").write_text(yaml.safe_dump(REDUCED))
    snakemake(work)
    return work


def test_nothing_left_to_do_after_a_run(run):
    res = snakemake(run, "-n")
    assert "Nothing to be done" in res.stdout + res.stderr


def test_generalisation_table_and_figures(run):
    t = pd.read_csv(run / "results/tables/generalization.csv")
    assert {
        "model",
        "layer",
        "method",
        "train_dataset",
        "eval_dataset",
        "auroc",
        "accuracy",
        "recovered_accuracy",
    } <= set(t.columns)
    # models x layers x methods x train x eval, and the text baseline's one layer
    assert len(t) == 3 * 2 * 2 * 2 * 2 + 1 * 2 * 2 * 2
    assert set(t.loc[t["model"] == BASELINE, "layer"]) == {0}
    for m in [*REDUCED["models"], BASELINE]:
        assert (run / f"results/figures/generalization_{m}.png").stat().st_size > 10_000
        assert (run / f"results/figures/generalization_{m}.pdf").exists()


def test_activation_store_describes_itself(run):
    from crossprobe.cache import open_store

    st = open_store(run / "results/activations/gpt2/parity.zarr")
    assert st.layers == [0, 2]
    for key in (
        "model",
        "revision",
        "layers",
        "position",
        "template",
        "dtype",
        "crossprobe_version",
    ):
        assert key in st.attrs
    assert st.n_rows == len(pd.read_parquet(run / "results/datasets/parity.parquet"))


def test_diagonal_is_identity(run):
    t = pd.read_csv(run / "results/tables/transfer.csv")
    diag = t[t.source == t.target]
    assert len(diag) == 3 * 2 * 2 * 2
    assert (diag.pearson_ce == 1).all() and (diag.ci_low == 1).all() and (diag.ci_high == 1).all()
    assert np.allclose(diag.transfer_auroc, diag.target_auroc)
    assert np.allclose(diag.transfer_auroc, diag.source_auroc)
    assert np.allclose(diag.cosine, 1.0)


def test_transfer_table_columns_and_recomputable_rho(run):
    t = pd.read_csv(run / "results/tables/transfer.csv")
    need = {
        "source",
        "target",
        "dataset",
        "method",
        "source_layer",
        "target_layer",
        "n",
        "pearson_ce",
        "ci_low",
        "ci_high",
        "null_p95",
        "p_value",
        "transfer_auroc",
        "source_auroc",
        "target_auroc",
        "cosine",
        "map_r2",
        "source_floor",
        "target_floor",
        "scored",
    }
    assert need <= set(t.columns)
    # A cell is scored only if carried (and a control's cell only beside a counted source's).
    assert (t.n >= 200).all() and (t.carried | ~t.scored).all() and t.scored.any()
    # Into the untrained control, the trained models' larger_than mass-mean direction comes out
    # of the map a few hundredths as long as a random direction: reported as not carried
    # (no rho, not ablated: a zero vector moves nothing), never renormalised into noise.
    dropped = t[~t.carried]
    assert len(dropped) and (dropped.target == "random").all(), dropped
    assert dropped.pearson_ce.isna().all() and (dropped.target_effect == 0).all()
    assert (dropped.carried_length < 0.1).all() and (t[t.carried].carried_length >= 0.1).all()
    # The noise floor: a zero direction sent through the same passes moves no margin at all
    # (the reference copy sits in the same pass), and its effects are written per layer.
    assert (t.source_floor == 0).all() and (t.target_floor == 0).all()
    fx = pd.read_parquet(run / "results/effects/gpt2/parity/self.parquet")
    zero = [c for c in fx.columns if c.startswith("zero:")]
    assert len(zero) == 2 and (fx[zero].to_numpy() == 0).all()
    # At min_sources 2 the control does not make a trained target's second source: only the
    # cells into the control would be scored.
    again = scored_cells(t, min_prompts=200, min_sources=2, controls=["random"])
    off_diag = t.source != t.target
    into_control = (t.target == "random") & t.carried
    assert (again[off_diag] == into_control[off_diag]).all()
    off = t[t.source != t.target]
    assert len(off) == 6 * 2 * 2 * 2
    off = off[off.carried]
    assert ((off.ci_low <= off.pearson_ce) & (off.pearson_ce <= off.ci_high)).all()
    cell = off.iloc[0]
    fx = pd.read_parquet(run / f"results/cells/{cell.source}/{cell.target}/{cell.dataset}.parquet")
    assert set(fx.dataset) == {cell.dataset}
    sel = fx[(fx.method == cell.method) & (fx.source_layer == cell.source_layer)]
    assert sel.row.is_unique and len(sel) == cell.n
    assert pearson(sel.dm_source.to_numpy(), sel.dm_target.to_numpy()) == pytest.approx(
        cell.pearson_ce, abs=1e-5
    )


def test_trained_pairs_beat_their_null_and_the_random_control_does_not(run):
    """The zoo's known answer: larger_than's confidence grows with the numbers' distance in
    every trained model, so ablating its mass-mean direction at the last layer changes the
    margins of the same prompts alike (rho clearly above the random-direction null) and by far
    more than a random direction does. The untrained control's margin depends on no direction
    more than on a random one, so no pair with it beats its null, whatever rho says (into the
    control rho can beat the random-direction null: docs/definitions.md)."""
    t = pd.read_csv(run / "results/tables/transfer.csv")
    off = t[t.source != t.target]
    cells = off[
        (off.dataset == "larger_than")
        & (off.method == "dim")
        & (off.layer_position == off.layer_position.max())
    ]
    with_random = (cells.source == "random") | (cells.target == "random")
    trained, control = cells[~with_random], cells[with_random]
    assert len(trained) == 2 and len(control) == 4
    assert (trained.ci_low > trained.null_p95).all(), trained
    assert (trained.pearson_ce > 0.8).all(), trained
    assert (trained[["source_effect", "target_effect"]] > 10).all().all(), trained
    assert trained.beats_null.all(), trained
    assert control.pearson_ce.mean() < trained.pearson_ce.mean() - 0.5
    # On the control's side, the probe moves the margin no more than a few random directions.
    assert (control[control.source == "random"].source_effect < 10).all(), control
    assert (control[control.target == "random"].target_effect < 10).all(), control
    assert not control.beats_null.any(), control
    # ...and no cell of the run with the control beats its null.
    assert not off[(off.source == "random") | (off.target == "random")].beats_null.any()


def test_matrix_probebench_and_figures(run):
    m = pd.read_csv(run / "results/tables/transfer_matrix.csv")
    assert len(m) == 9
    assert (m[m.source == m.target].band == "identity").all()
    off = m[m.source != m.target]
    control = (off.source == "random") | (off.target == "random")
    assert (off[control].beats_null == 0).all() and (off[~control].beats_null >= 1).all(), off
    entries = list((run / "results/probebench").glob("*.yaml"))
    assert len(entries) == 2 * 2 * 2  # datasets x methods x layer positions
    doc = yaml.safe_load(entries[0].read_text())
    assert len(doc) == 6 and {
        "probeId",
        "sourceModel",
        "targetModel",
        "pearson_ce",
        "transfer_auroc",
        "notes",
    } <= set(doc[0])
    for name in ("transfer_matrix", "transfer_profiles", "cosine_vs_rho", "null_distribution"):
        assert (run / f"results/figures/{name}.png").stat().st_size > 10_000


def test_rerun_gives_byte_identical_tables(run):
    """Refitting the maps and redoing every ablation and statistic reproduces the tables."""
    tables = ["transfer.csv", "transfer_matrix.csv", "generalization.csv", "transfer_null.csv"]
    before = {t: (run / "results/tables" / t).read_bytes() for t in tables}
    snakemake(run, "--forcerun", "align", "ablate_self", "train")
    for t in tables:
        assert (run / "results/tables" / t).read_bytes() == before[t], t


def test_report_is_self_contained(run):
    snakemake(run, "--report", "results/report.html")
    html = (run / "results/report.html").read_text(errors="ignore")
    assert "transfer_matrix.png" in html and "Pearson_CE" in html


def test_answer_table_tells_trained_models_from_the_control(run):
    """Trained zoo models answer larger_than (their margin follows the label); the untrained
    control's margin does not."""
    a = pd.read_csv(run / "results/tables/answers.csv").set_index(["model", "dataset"])
    df = pd.read_parquet(run / "results/datasets/larger_than.parquet")
    assert (a["n"] == int((df["split"] == "test").sum())).loc[:, "larger_than"].all()
    for m in ("llama", "gpt2"):
        assert a.loc[(m, "larger_than"), "answer_auroc"] > 0.8
    assert 0.35 < a.loc[("random", "larger_than"), "answer_auroc"] < 0.65
    t = pd.read_csv(run / "results/tables/transfer.csv")
    row = t[(t.source == "random") & (t.target == "llama") & (t.dataset == "larger_than")].iloc[0]
    assert row.source_answer_auroc == pytest.approx(
        a.loc[("random", "larger_than"), "answer_auroc"]
    )
    assert row.target_answer_auroc == pytest.approx(a.loc[("llama", "larger_than"), "answer_auroc"])
    assert (run / "results/figures/answers.png").stat().st_size > 10_000


def test_regression_probes_predict_their_target(run):
    """A ridge probe of larger_than's `diff` per model and layer: fit on train, scored on test,
    saved as a probe whose score reproduces the table's R² from the cached activations."""
    from crossprobe.cache import open_store
    from crossprobe.probes import load_probes
    from crossprobe.regression import r2

    t = pd.read_csv(run / "results/tables/regression.csv")
    assert set(t["model"]) == {*REDUCED["models"], BASELINE}
    assert set(zip(t["dataset"], t["target"], strict=True)) == {
        ("larger_than", "diff"),
        ("larger_than", "number"),
        ("parity", "number"),
    }
    sizes = t.groupby("model").size()  # a row per probe and stored layer (the baseline: one)
    assert (sizes.drop(BASELINE) == 3 * 2).all() and sizes[BASELINE] == 3
    trained = t[(t["model"] != "random") & (t["target"] == "diff")]
    assert trained["r2"].max() > 0.8
    df = pd.read_parquet(run / "results/datasets/larger_than.parquet")
    store = open_store(run / "results/activations/llama/larger_than.zarr")
    probes = load_probes(run / "results/regression/llama/larger_than/diff.safetensors")
    test = np.flatnonzero(store.split() == "test")
    for (method, layer), probe in probes.items():
        assert method == "ridge"
        got = r2(df["diff"].to_numpy(float)[test], probe.score(store.layer(layer, test)))
        row = t[(t["model"] == "llama") & (t["layer"] == layer) & (t["target"] == "diff")]
        assert got == pytest.approx(row["r2"].iloc[0], abs=1e-5)
    # `number` is shared by two datasets: each is held out once per model and layer.
    h = pd.read_csv(run / "results/tables/heldout.csv")
    assert set(h["target"]) == {"number"} and set(h["scheme"]) == {"hold_one_out"}
    assert (h.groupby(["model", "layer"]).size() == 2).all()
    assert set(h["test_datasets"]) == {"larger_than", "parity"}
    assert h[["r2", "r2_mean_adjusted", "pearson", "spearman"]].notna().all().all()
    assert (run / "results/figures/regression.png").stat().st_size > 10_000


def test_probe_similarity_tables(run):
    """Within each model every pair of probes at each layer (1 on the diagonal); across models
    the carried direction against the target's own probe, whose same-probe cosine is the
    transfer table's cosine baseline."""
    w = pd.read_csv(run / "results/tables/similarity.csv")
    assert set(w["model"]) == set(REDUCED["models"])
    diag = w[w["probe_a"] == w["probe_b"]]
    np.testing.assert_allclose(diag["cosine"], 1.0, atol=1e-9)
    assert {"larger_than.diff/ridge", "parity/logreg"} <= set(w["probe_a"])
    a = pd.read_csv(run / "results/tables/similarity_across.csv")
    t = pd.read_csv(run / "results/tables/transfer.csv")
    t = t[t["source"] != t["target"]]
    row = t.iloc[0]
    probe = f"{row.dataset}/{row.method}"
    got = a[
        (a.source == row.source)
        & (a.target == row.target)
        & (a.source_layer == row.source_layer)
        & (a.target_layer == row.target_layer)
        & (a.source_probe == probe)
        & (a.target_probe == probe)
    ]["cosine"]
    assert got.iloc[0] == pytest.approx(row.cosine, abs=1e-5)
    assert (run / "results/figures/similarity.png").stat().st_size > 10_000


def test_steering_tables(run):
    """Every probe of every model steered at each layer: planted-free invariants (the zero dose
    changes nothing, exactly; slopes recomputable from the per-prompt responses) and the
    carried table beside Pearson_CE of the same cells."""
    from crossprobe.preference.steer import prompt_slopes

    t = pd.read_csv(run / "results/tables/steering.csv")
    assert set(t["model"]) == set(REDUCED["models"])
    probes = {"dim", "logreg", "ridge:diff", "ridge:number"}
    assert set(t["probe"]) == probes and set(t["response"]) == {"margin"}
    # a row per (model, dataset, probe, layer): larger_than has 4 probes, parity 3
    assert (t.groupby("model").size() == (4 + 3) * 2).all()
    assert (t["n"] == 48).all()
    # The zero dose changes nothing: exactly, or within float32 rounding on CPUs whose matrix
    # products round the rows of a batch differently.
    assert (t["zero_dose_max"] < 1e-5).all()
    assert t[["slope", "ci_low", "ci_high", "p_value", "null_p95", "p_null"]].notna().all().all()
    assert (t["ci_low"] <= t["slope"]).all() and (t["slope"] <= t["ci_high"]).all()
    long = pd.read_parquet(run / "results/steering/llama/larger_than/self.parquet")
    row = t[(t.model == "llama") & (t.dataset == "larger_than") & (t.probe == "dim")].iloc[0]
    one = long[(long.probe == "dim") & (long.layer == row.layer) & (long.response == "margin")]
    wide = one.pivot(index="row_hash", columns="alpha", values="delta")
    slope = prompt_slopes(wide.columns.to_numpy(), wide.to_numpy().T).mean()
    assert slope == pytest.approx(row.slope, rel=1e-5)
    assert set(long[long.kind == "null"]["probe"]) == {f"null:{j}" for j in range(4)}

    c = pd.read_csv(run / "results/tables/steering_carried.csv")
    pairs = {(s, t) for s in REDUCED["models"] for t in REDUCED["models"] if s != t}
    assert set(zip(c["source"], c["target"], strict=True)) == pairs
    margin = c[c.probe.isin(["dim", "logreg"])]
    assert margin.loc[margin.carried, "pearson_ce"].notna().all()
    assert margin.loc[~margin.carried, ["pearson_ce", "slope_target"]].isna().all(axis=None)
    assert c[c.probe.str.startswith("ridge:")]["pearson_ce"].isna().all()
    ok = c["source_beats_null"].astype(bool) & c["carried"].astype(bool)
    assert ok.any() and c.loc[~ok, "slope_ratio"].isna().all()
    np.testing.assert_allclose(
        c.loc[ok, "slope_ratio"], c.loc[ok, "slope_target"] / c.loc[ok, "slope_source"], rtol=1e-5
    )
    assert (c["n_facts"] <= c["n"]).all() and (t["n_facts"] <= t["n"]).all()
    assert (t["null_k"] == 4).all()
    for name in ("steering.png", "steering_carried.png"):
        assert (run / "results/figures" / name).stat().st_size > 10_000


def test_crosslabels_own_answers_beat_another_models(run):
    """AB against AA on the models' own answer margins: a probe on the untrained control's
    activations predicts the control's margins far better than a trained model's activations
    do (their answers differ), and every (activations, labels) cell is there, the text
    baseline's included, on the same rows."""
    t = pd.read_csv(run / "results/tables/crosslabels.csv")
    models = list(REDUCED["models"])
    assert set(t["activations"]) == {*models, BASELINE} and set(t["labels"]) == set(models)
    assert set(t["label"]) == {"margin"}
    assert t.groupby("dataset")["n"].nunique().eq(1).all()  # one set of rows per dataset
    assert len(t) == (len(models) + 1) * len(models) * 2 * 2  # x labels x datasets x positions
    df = pd.read_parquet(run / "results/datasets/larger_than.parquet")
    answers = pd.read_parquet(run / "results/effects/random/larger_than/answer.parquet")
    assert t.loc[t["dataset"] == "larger_than", "n"].iloc[0] <= len(answers)
    assert t.loc[t["dataset"] == "larger_than", "n"].iloc[0] <= int((df.split == "test").sum())
    last = t[t["layer_position"] == 1].set_index(["dataset", "activations", "labels"])["r2"]
    for dataset in ("larger_than", "parity"):
        own = last[dataset, "random", "random"]
        for m in ("llama", "gpt2"):
            assert own > last[dataset, m, "random"] + 0.1, (dataset, m)
    assert t.loc[t["activations"] == BASELINE, "layer"].eq(0).all()
    s = pd.read_csv(run / "results/tables/crosslabels_summary.csv")
    assert set(s["labels"]) == set(models)
    assert (run / "results/figures/crosslabels.png").stat().st_size > 10_000
