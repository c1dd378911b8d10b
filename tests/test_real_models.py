"""End to end on real pretrained LMs: SmolLM2-135M-Instruct and Gemma 3 270M from the GGUF
files that PyPI packages ship (``make real-models``), through every stage of the workflow.

A reduced run (120 rows of `cities`, two layers, two null directions) keeps it to a few
minutes; the full real run is ``make real`` (docs/real-models.md). Without the packages
the test is skipped, unless ``CROSSPROBE_REAL_MODELS=required`` (as CI sets it), where their
absence is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_workflow import snakemake

from crossprobe.convert import PACKAGED, install_packaged, sha256_file

pytestmark = pytest.mark.slow

SMOLLM2, GEMMA3 = PACKAGED


def _packages_installed() -> bool:
    return all(importlib.util.find_spec(p) is not None for p in set(PACKAGED.values()))


if not _packages_installed():
    if os.environ.get("CROSSPROBE_REAL_MODELS") == "required":
        raise RuntimeError("the real GGUF packages are not installed: run `make real-models`")
    pytest.skip("real GGUF packages not installed (make real-models)", allow_module_level=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from crossprobe.datasets import generate_builtin

    work = tmp_path_factory.mktemp("real")
    install_packaged(work / "gguf")
    generate_builtin("cities").head(120).to_csv(work / "cities.csv", index=False)
    config = {
        "models": {
            "smollm2": {"gguf": f"gguf/{SMOLLM2}"},
            "gemma3": {"gguf": f"gguf/{GEMMA3}"},
        },
        # The model rates each statement itself: the regression target `self_rating`.
        "datasets": {"cities": {"path": "cities.csv", "rating": {}}},
        "layers": [0.5, 1.0],
        "transfer": {
            "null_directions": 2,
            "bootstrap": 100,
            "min_prompts": 10,
            "allow_unscored": True,
            "min_sources": 1,
        },
        "steering": {"alphas": [-0.5, 0.0, 0.5], "null_directions": 2, "prompts": 12},
        # A text baseline from a real model of the run: SmolLM2's converted folder, mean-pooled.
        "baselines": {"text-smollm2": {"model": "smollm2"}},
        "crosslabels": {"labels": ["margin", "self_rating"], "folds": 3},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(work)
    return work


def test_each_gguf_converted_once_into_a_plain_folder(run):
    for name, file in (("smollm2", SMOLLM2), ("gemma3", GEMMA3)):
        folder = run / "results/models" / name
        record = json.loads((folder / "gguf.json").read_text())
        assert record["sha256"] == sha256_file(run / "gguf" / file)
        assert record["dtype"] == "float32"
        assert "quantization_config" not in json.loads((folder / "config.json").read_text())
        assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    assert json.loads((run / "results/models/gemma3/config.json").read_text())["model_type"] == (
        "gemma3_text"
    )


def test_cached_activations_equal_transformers_own_from_the_gguf(run):
    """The store holds what transformers computes from the GGUF itself (no conversion)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from crossprobe.cache import open_store
    from crossprobe.datasets import format_prompt, read_dataset

    store = open_store(run / "results/activations/smollm2/cities.zarr")
    df = read_dataset(run / "results/datasets/cities.parquet")
    tok = AutoTokenizer.from_pretrained(run / "gguf", gguf_file=SMOLLM2)
    model = AutoModelForCausalLM.from_pretrained(
        run / "gguf", gguf_file=SMOLLM2, dtype=torch.float32
    )
    rows = [0, 7, 42]
    with torch.no_grad():
        for r in rows:
            prompt = format_prompt(store.attrs["template"], df["statement"][r])
            ids = tok(prompt, return_tensors="pt")
            out = model(**ids, output_hidden_states=True)
            layer = store.layers[0]  # not the last block: hidden_states there is final-normed
            expected = out.hidden_states[layer + 1][0, -1].numpy()
            got = store.layer(layer, np.array([r]))[0]
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_answers_and_transfer_tables(run):
    answers = pd.read_csv(run / "results/tables/answers.csv")
    df = pd.read_parquet(run / "results/datasets/cities.parquet")
    assert set(answers["model"]) == {"smollm2", "gemma3"}
    assert (answers["n"] == int((df["split"] == "test").sum())).all()
    assert answers["answer_auroc"].between(0, 1).all()
    t = pd.read_csv(run / "results/tables/transfer.csv")
    diag = t[t.source == t.target]
    assert (diag.pearson_ce == 1).all()
    off = t[t.source != t.target]
    assert set(zip(off.source, off.target, strict=True)) == {
        ("smollm2", "gemma3"),
        ("gemma3", "smollm2"),
    }
    assert np.isfinite(off.pearson_ce).all() and np.isfinite(off.cosine).all()
    lookup = answers.set_index("model")["answer_auroc"]
    np.testing.assert_allclose(off.source_answer_auroc, lookup[off.source].to_numpy())
    np.testing.assert_allclose(off.target_answer_auroc, lookup[off.target].to_numpy())
    for fig in ("transfer_matrix", "cosine_vs_rho", "answers", "generalization_gemma3"):
        assert (run / f"results/figures/{fig}.png").stat().st_size > 10_000


def test_ablation_logs_show_progress(run):
    log = (run / "results/logs/ablate/gemma3/cities/self.log").read_text()
    # Per layer: two probes, two null directions and the zero direction of the noise floor.
    assert "gemma3/cities (2 layers, 10 directions)" in log and "prompt/s" in log
    assert "noise floor (RMS Δm of a zero direction) 0" in log


def test_chat_prompts_and_their_checks_on_the_real_tokenizers(run):
    """SmolLM2-Instruct's own template (from its GGUF, kept by the conversion): the chat prompt
    ends with the generation prompt, its trailing newline makes " True" a wrong answer and
    "True" a right one, and the GGUF header's check agrees with the converted tokenizer's.
    Gemma 3 (a base model) has no template; its BOS is left out of the ablation."""
    from crossprobe.config import DatasetSpec
    from crossprobe.convert import read_header
    from crossprobe.models import content_positions, load_tokenizer, special_token_ids
    from crossprobe.prompts import format_prompts, gguf_prompt_check, tokenizer_prompt_check

    ds = DatasetSpec("cities", "cities", None, "{statement} True or false?", (" True", " False"))
    tok = load_tokenizer(str(run / "results/models/smollm2"))
    (text,) = format_prompts(tok, ["The city of Paris is in France."], ds.template, "chat")
    assert text.endswith("<|im_start|>assistant\n") and "Paris is in France." in text
    tail = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    assert tok(text)["input_ids"][-len(tail) :] == tail
    assert len(tok("True", add_special_tokens=False)["input_ids"]) == 1
    header = gguf_prompt_check(read_header(run / "gguf" / SMOLLM2, tokens=True))
    for check in (tokenizer_prompt_check(tok), header):
        assert check(ds, "chat", ("True", "False")) == []
        (problem,) = check(ds, "chat", (" True", " False"))
        assert "whitespace" in problem
        assert check(ds, "raw", (" True", " False")) == []
    gemma = load_tokenizer(str(run / "results/models/gemma3"))
    assert not getattr(gemma, "chat_template", None)
    enc = gemma(["The city of Paris is in France."], return_tensors="pt")
    assert enc["input_ids"][0, 0] == gemma.bos_token_id
    keep = content_positions(
        enc["input_ids"], enc["attention_mask"], special_token_ids(gemma), "skip_first"
    )
    assert not keep[0, 0] and keep[0, 1:].all()


def test_self_ratings_from_the_models_own_digits(run):
    """Both tokenizers split " 7" into a space and "7": the rating prompt ends with the space and
    the bare digits are read. Each row's expected rating lies on the scale, the digits hold
    most of the probability, and the ridge probe of `self_rating` is in the regression table."""
    from crossprobe.models import load_tokenizer

    df = pd.read_parquet(run / "results/datasets/cities.parquet")
    for model in ("smollm2", "gemma3"):
        r = pd.read_parquet(run / f"results/ratings/{model}/cities.parquet")
        assert r["row_hash"].tolist() == df["row_hash"].tolist()
        assert r["rating"].between(1, 9).all() and r["rating"].std() > 0
        assert r["digit_mass"].between(0, 1).all()
        log = (run / f"results/logs/rate/{model}/cities.log").read_text()
        assert "how true is this? Answer: '" in log and "['1', '2'" in log
        tok = load_tokenizer(str(run / f"results/models/{model}"))
        assert len(tok.encode(" 7", add_special_tokens=False)) == 2
    t = pd.read_csv(run / "results/tables/regression.csv")
    rated = t[t["target"] == "self_rating"]
    assert set(rated["model"]) == {"smollm2", "gemma3"} and rated["r2"].notna().all()


def test_steering_on_real_models(run):
    """Margin and rating responses for every probe (the ridge probe of the self-rating too),
    with the zero dose changing nothing."""
    t = pd.read_csv(run / "results/tables/steering.csv")
    assert set(t["response"]) == {"margin", "rating"}
    assert set(t["probe"]) == {"dim", "logreg", "ridge:self_rating"}
    # Zero, or float32 rounding where a CPU's matrix products round batch rows differently.
    assert (t["zero_dose_max"] < 1e-4).all()
    c = pd.read_csv(run / "results/tables/steering_carried.csv")
    assert set(zip(c.source, c.target, strict=True)) == {
        ("smollm2", "gemma3"),
        ("gemma3", "smollm2"),
    }
    assert np.isfinite(c["slope_target"]).all()


def test_text_baseline_from_a_real_model_and_crosslabels(run):
    """SmolLM2's mean-pooled last hidden state of each bare statement, stored like activations
    and equal to a masked mean recomputed with transformers; and the AB-against-AA table with
    both real models' margins and self-ratings."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from crossprobe.cache import open_store

    store = open_store(run / "results/activations/text-smollm2/cities.zarr")
    assert store.layers == [0] and store.attrs["model"] == "text-smollm2"
    df = pd.read_parquet(run / "results/datasets/cities.parquet")
    folder = run / "results/models/smollm2"
    tok, lm = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    for row in (0, 7):
        ids = tok(df["statement"].iloc[row], return_tensors="pt")
        with torch.no_grad():
            ref = lm(**ids).last_hidden_state[0].mean(dim=0).numpy()
        np.testing.assert_allclose(store.layer(0, np.array([row]))[0], ref, rtol=1e-3, atol=1e-3)
    g = pd.read_csv(run / "results/tables/generalization.csv")
    assert "text-smollm2" in set(g["model"])
    t = pd.read_csv(run / "results/tables/crosslabels.csv")
    assert set(t["activations"]) == {"smollm2", "gemma3", "text-smollm2"}
    assert set(t["label"]) == {"margin", "self_rating"}
    assert set(t["labels"]) == {"smollm2", "gemma3"} and t["r2"].notna().all()
