"""The known answer on a real model: SmolLM2-135M against its exact functional copy.

The copy (``zoo: {base, trained: false, rotate: true}``) computes the same logits for every
input while its residual stream is SmolLM2's in another orthonormal basis. A probe carried into
it must have the same causal effect on every prompt: Pearson_CE ≥ 0.99 for every probe family,
the transfer AUROC of the source, and, where the probe's ablation moves the margin more than
random directions do, a cell that beats its null. 1,000 rows of `cities` with 70% of them in
`align` give the map more fitting rows (about 700) than SmolLM2 is wide (576), which an exact
map needs (a map fitted on fewer rows carries only their span). `cities`, because SmolLM2's
`dim` probe there moves the margin 4.0 times a typical random direction and beyond all of
them at its middle block (`benchmarks/bench_stability.py`); on `larger_than` one random
direction of eight moved it more than the probe did (4.9 against 3.2 times the median).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_real_models import SMOLLM2, _packages_installed
from test_workflow import snakemake

from crossprobe.convert import install_packaged

pytestmark = pytest.mark.slow

if not _packages_installed():  # test_real_models decides between skip and failure
    pytest.skip("real GGUF packages not installed (make real-models)", allow_module_level=True)


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory) -> Path:
    from crossprobe.datasets import generate_builtin

    work = tmp_path_factory.mktemp("copy")
    install_packaged(work / "gguf")
    generate_builtin("cities").head(1000).to_csv(work / "cities.csv", index=False)
    config = {
        "models": {
            "smollm2": {"gguf": f"gguf/{SMOLLM2}"},
            "smollm2-rot": {"zoo": {"base": "smollm2", "trained": False, "rotate": True}},
        },
        "datasets": {"cities": {"path": "cities.csv", "group": "group"}},
        "splits": {"train": 0.15, "align": 0.7, "test": 0.15},
        "layers": [0.5],
        "probes": ["dim", "logreg"],
        "transfer": {
            "null_directions": 16,
            "matched_null_directions": 4,
            "bootstrap": 200,
            "min_prompts": 10,
            "allow_unscored": True,
            "min_sources": 1,
        },
        "steering": {"enabled": False},
        "crosslabels": {"enabled": False},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(work)
    return work


def test_the_copy_answers_exactly_as_the_model_does(copy_run):
    answers = pd.read_csv(copy_run / "results/tables/answers.csv").set_index("model")
    assert answers.loc["smollm2", "answer_auroc"] == pytest.approx(
        answers.loc["smollm2-rot", "answer_auroc"], abs=1e-6
    )
    fx = pd.read_parquet(copy_run / "results/effects/smollm2/cities/self.parquet")
    fx_rot = pd.read_parquet(copy_run / "results/effects/smollm2-rot/cities/self.parquet")
    np.testing.assert_allclose(fx["clean"], fx_rot["clean"], atol=1e-3)


def test_every_probe_family_carries_into_the_exact_copy(copy_run):
    t = pd.read_csv(copy_run / "results/tables/transfer.csv")
    off = t[t.source != t.target]
    assert set(off["method"]) == {"dim", "logreg"} and len(off) == 4
    assert (off["pearson_ce"] >= 0.99).all(), off[["source", "method", "pearson_ce"]]
    assert off["carried"].all() and off["carried_length"].between(0.9, 1.1).all()
    np.testing.assert_allclose(off["transfer_auroc"], off["source_auroc"], atol=2e-3)
    # dim is rotation-equivariant: the copy's own probe is the carried one.
    assert (off[off.method == "dim"]["cosine"] > 0.999).all()
    assert (off["n_facts"] == off["n"]).all()  # one true statement per city


def test_the_gate_passes_where_the_ablation_moves_the_margin(copy_run):
    """An exact copy beats its null wherever both ablations beat their own random directions
    (recomputed here from the per-prompt effects); SmolLM2's `dim` direction at its middle
    block does (about 4 times a random direction)."""
    from crossprobe.transfer.cells import effect_beats_null

    t = pd.read_csv(copy_run / "results/tables/transfer.csv")
    off = t[t.source != t.target]
    fx = {
        m: pd.read_parquet(copy_run / f"results/effects/{m}/cities/self.parquet")
        for m in ("smollm2", "smollm2-rot")
    }

    def moves(model: str, method: str, layer: int) -> bool:
        null = [c for c in fx[model] if c.startswith(f"null:{layer}:")]
        dm = fx[model][f"probe:{method}:{layer}"].to_numpy()
        return effect_beats_null(dm, fx[model][null].to_numpy().T)

    for cell in off.itertuples():
        both = moves(cell.source, cell.method, cell.source_layer) and moves(
            cell.target, cell.method, cell.target_layer
        )
        assert cell.beats_null == both, cell
    assert off.loc[off.method == "dim", "beats_null"].all()
    assert (off["ci_low"] > off[["null_p95", "matched_null_p95"]].max(axis=1)).all()


def test_config_of_the_copy_is_checked(tmp_path):
    from crossprobe.config import validate_config
    from crossprobe.errors import ConfigError

    base = {"datasets": {"d": {"builtin": "larger_than"}}, "layers": [0.5]}
    bad = {"m": {"zoo": {"arch": "llama", "tokenizer": "word", "rotate": True}}}
    with pytest.raises(ConfigError, match="give `base`"):
        validate_config({**base, "models": bad}, inputs=False)
    same = {
        "a": {"path": "org/name"},
        "b": {"zoo": {"base": "a", "trained": False}},
    }
    with pytest.raises(ConfigError, match="unchanged"):
        validate_config({**base, "models": same}, inputs=False)
