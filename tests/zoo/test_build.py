"""The zoo: tiny causal LMs trained on the built-in families, saved and loaded like hub models."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from crossprobe.datasets import (
    FAMILIES,
    GROUP_COLUMN,
    format_prompt,
    generate_builtin,
    with_splits,
)
from crossprobe.errors import ConfigError
from crossprobe.zoo.build import (
    ANSWERS,
    ZOO_JSON,
    ZooSpec,
    build_corpus,
    build_model,
    build_tokenizer,
    fit_zoo_model,
    init_model,
    save_zoo_model,
    train_zoo_model,
)

FAMS = ("larger_than", "parity")
TINY = {
    "n_layers": 2,
    "d_model": 32,
    "n_heads": 4,
    "steps": 30,
    "batch_size": 32,
    "families": FAMS,
}


def tiny(arch: str = "llama", tokenizer: str = "word", **kw) -> ZooSpec:
    return ZooSpec(arch=arch, tokenizer=tokenizer, **{**TINY, **kw})


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, str, str]]:
    return build_corpus(FAMS)


# ---------------------------------------------------------------------------------------------
# Corpus and tokenizers


def test_corpus_holds_out_test_rows_and_answers_follow_labels(corpus):
    assert corpus == build_corpus(FAMS)  # deterministic
    for fam in FAMS:
        family = FAMILIES[fam]
        df = with_splits(generate_builtin(fam), group=GROUP_COLUMN)
        prompt = {format_prompt(family.template, s): s for s in df["statement"]}
        label = dict(zip(df["statement"], df["label"], strict=True))
        split = dict(zip(df["statement"], df["split"], strict=True))
        rows = [(p, a) for f, p, a in corpus if f == fam]
        assert len(rows) == int((df["split"] != "test").sum())
        for p, a in rows:
            statement = prompt[p]
            assert split[statement] != "test"
            assert a == family.answers[0 if label[statement] == 1 else 1]


def test_corpus_holds_out_the_runs_own_test_split():
    from crossprobe.zoo.build import _examples

    splits = {"train": 0.3, "align": 0.2, "test": 0.5}
    df = with_splits(generate_builtin("parity"), splits, group=GROUP_COLUMN)
    template = FAMILIES["parity"].template
    test = {format_prompt(template, s) for s in df.loc[df["split"] == "test", "statement"]}
    rest = {format_prompt(template, s) for s in df.loc[df["split"] != "test", "statement"]}
    corpus = {p for _, p, _ in build_corpus(("parity",), splits)}
    assert corpus == rest and not corpus & test
    assert {e.prompt for e in _examples(("parity",), test=True, splits=splits)} == test
    # More held out than under the default fractions: those rows leave the corpus too.
    assert len(corpus) < len(build_corpus(("parity",)))
    # A family split by another column (as a run's `datasets.<name>.group` can ask) is held
    # out by that column: here the statement, so the corpus follows statement splits.
    by_statement = with_splits(generate_builtin("parity"), splits)
    rest = {
        format_prompt(template, s)
        for s in by_statement.loc[by_statement["split"] != "test", "statement"]
    }
    assert {p for _, p, _ in build_corpus(("parity",), splits, {"parity": None})} == rest


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_answers_are_single_tokens(kind, corpus):
    tok = build_tokenizer(kind, [p + a for _, p, a in corpus])
    ids = {a: tok(a, add_special_tokens=False)["input_ids"] for a in ANSWERS}
    assert all(len(v) == 1 for v in ids.values()), ids
    assert len({v[0] for v in ids.values()}) == len(ANSWERS)
    assert tok.padding_side == "right"
    assert tok.pad_token_id is not None and tok.eos_token_id is not None
    # A prompt followed by its answer encodes as the prompt's tokens plus the answer token.
    _, prompt, answer = corpus[0]
    assert tok(prompt + answer)["input_ids"] == tok(prompt)["input_ids"] + ids[answer]


def test_tokenizer_without_single_token_answers_fails_loudly():
    with pytest.raises(ConfigError, match="one token"):
        build_tokenizer("bpe", ["a b c"] * 3)


# ---------------------------------------------------------------------------------------------
# Models


@pytest.mark.parametrize(
    ("arch", "config_cls"),
    [("llama", "LlamaConfig"), ("gpt2", "GPT2Config"), ("qwen3", "Qwen3Config")],
)
def test_build_model_follows_spec(arch, config_cls, corpus):
    tok = build_tokenizer("word", [p + a for _, p, a in corpus])
    spec = tiny(arch, init_range=0.05)
    model = build_model(spec, len(tok), tok)
    cfg = model.config
    assert type(cfg).__name__ == config_cls
    assert cfg.num_hidden_layers == 2 and cfg.hidden_size == 32
    assert cfg.initializer_range == 0.05
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (
        tok.bos_token_id,
        tok.eos_token_id,
        tok.pad_token_id,
    )
    assert model.get_input_embeddings().weight.shape == (len(tok), 32)
    assert getattr(cfg, "max_position_embeddings", getattr(cfg, "n_positions", 0)) >= 64
    if arch != "gpt2":
        assert cfg.rope_parameters["rope_theta"] > 0
        assert cfg.head_dim == 8


# ---------------------------------------------------------------------------------------------
# Training, saving, loading


def _weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def _without_time(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "wall_seconds"}


def test_training_is_deterministic(tmp_path):
    spec = tiny("gpt2", "bpe", steps=20)
    m1 = train_zoo_model(spec, tmp_path / "a", log=quiet)
    m2 = train_zoo_model(spec, tmp_path / "b", log=quiet)
    assert _without_time(m1) == _without_time(m2)
    w1, w2 = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k
    assert (tmp_path / "a" / "tokenizer.json").read_text() == (
        tmp_path / "b" / "tokenizer.json"
    ).read_text()
    # A different seed gives different weights.
    train_zoo_model(replace(spec, seed=1, trained=False), tmp_path / "c", log=quiet)
    w3 = _weights(tmp_path / "c")
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)


@pytest.mark.parametrize(("arch", "kind"), [("llama", "word"), ("gpt2", "bpe"), ("qwen3", "bpe")])
def test_saved_model_loads_like_a_hub_model(tmp_path, arch, kind, corpus):
    spec = tiny(arch, kind, steps=10)
    result = fit_zoo_model(spec, log=quiet)
    out = tmp_path / "zoo"
    save_zoo_model(result, spec, out)
    assert (out / "model.safetensors").exists()
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    model.eval()
    prompts = [p for _, p, _ in corpus[:3]] + [p for _, p, _ in corpus[-3:]]
    for a in ANSWERS:
        assert (
            tok(a, add_special_tokens=False)["input_ids"]
            == result.tokenizer(a, add_special_tokens=False)["input_ids"]
        )
        assert len(tok(a, add_special_tokens=False)["input_ids"]) == 1
    assert tok(prompts)["input_ids"] == result.tokenizer(prompts)["input_ids"]
    assert tok.pad_token_id == result.tokenizer.pad_token_id

    tok.padding_side = "right"
    batch = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        loaded = model(**batch).logits
        original = result.model(**batch).logits
    assert torch.equal(loaded, original)

    record = json.loads((out / ZOO_JSON).read_text())
    assert record["spec"]["arch"] == arch and record["spec"]["families"] == list(FAMS)
    assert record["metrics"]["steps"] == 10
    assert set(record["metrics"]["test_accuracy"]) == set(FAMS)
    assert record["metrics"]["n_params"] == sum(p.numel() for p in model.parameters())
    assert {"torch", "transformers", "tokenizers"} <= set(record["versions"])


def test_training_lowers_answer_loss_and_untrained_is_the_init(tmp_path, corpus):
    spec = tiny("llama", "bpe", steps=40, families=("parity",))
    untrained = fit_zoo_model(replace(spec, trained=False), log=quiet)
    trained = fit_zoo_model(spec, log=quiet)
    assert untrained.metrics["steps"] == 0 and untrained.metrics["final_loss"] is None
    assert trained.metrics["test_answer_loss"] < untrained.metrics["test_answer_loss"] - 0.5
    assert trained.metrics["final_loss"] < untrained.metrics["test_answer_loss"]

    # The control is the exact starting point of training.
    init = init_model(spec, untrained.tokenizer).state_dict()
    for name, tensor in untrained.model.state_dict().items():
        assert torch.equal(tensor, init[name]), name
    assert any(
        not torch.equal(tensor, init[name]) for name, tensor in trained.model.state_dict().items()
    )
    # Seeding the init leaves the caller's random stream alone.
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    init_model(spec, untrained.tokenizer)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------------------------
# Graded targets


def test_larger_than_targets_follow_the_numerical_distance():
    from crossprobe.datasets import LARGER_THAN_DISTANCE_SCALE
    from crossprobe.zoo.build import _examples

    df = with_splits(generate_builtin("larger_than"), group=GROUP_COLUMN)
    df = df[df["split"] != "test"].sort_values("row", kind="stable")
    examples = [e for e in _examples(("larger_than", "parity"), test=False)]
    graded = [e for e in examples if e.family == "larger_than"]
    assert len(graded) == len(df)
    for e, diff, label in zip(graded, df["diff"], df["label"], strict=True):
        p_true = 1.0 / (1.0 + math.exp(-diff / LARGER_THAN_DISTANCE_SCALE))
        assert e.label == label
        assert e.answer_prob == pytest.approx(p_true if label == 1 else 1.0 - p_true)
        assert e.answer_prob > 0.5  # the answer is always the likelier one
    # A family without log-odds trains on its hard label.
    assert {e.answer_prob for e in examples if e.family == "parity"} == {1.0}


class _FixedLogits(torch.nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, input_ids, attention_mask):  # noqa: ARG002
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.logits)


def test_graded_answer_loss_is_the_soft_cross_entropy():
    from crossprobe.zoo.build import _losses

    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6)
    ids = torch.tensor([[1, 2, 4, 0], [3, 5, 0, 0], [2, 2, 2, 3]])
    plen = torch.tensor([2, 1, 3])
    negative = torch.tensor([5, 1, 0])
    prob = torch.tensor([0.9, 1.0, 0.6])
    model = _FixedLogits(logits)
    soft, _, last = _losses(model, ids, plen, negative, prob)
    rows = torch.arange(3)
    logp = torch.log_softmax(logits[rows, plen - 1], -1)
    answer = ids[rows, plen]
    expected = -(prob * logp[rows, answer] + (1 - prob) * logp[rows, negative]).mean()
    assert torch.allclose(soft, expected)
    assert torch.equal(last, logits[rows, plen - 1])
    # With probability 1 everywhere it is the plain cross-entropy of the answer token.
    hard, _, _ = _losses(model, ids, plen, negative, torch.ones(3))
    plain, _, _ = _losses(model, ids, plen)
    assert torch.allclose(hard, torch.nn.functional.cross_entropy(last, answer))
    assert torch.allclose(plain, hard)


# ---------------------------------------------------------------------------------------------
# Spec validation


def test_spec_defaults_and_from_dict():
    spec = ZooSpec.from_dict({"arch": "gpt2", "tokenizer": "bpe", "lr": "1e-3", "families": None})
    assert spec.lr == 1e-3 and spec.families == ()
    assert set(spec.resolved_families()) == set(FAMILIES)
    spec = ZooSpec.from_dict({"arch": "qwen3", "tokenizer": "word", "families": ["parity"]})
    assert spec.families == ("parity",)
    assert ZooSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"arch": "mamba"}, "arch"),
        ({"tokenizer": "sentencepiece"}, "tokenizer"),
        ({"n_layers": 0}, "n_layers"),
        ({"d_model": -8}, "d_model"),
        ({"n_heads": 0}, "n_heads"),
        ({"n_heads": 5}, "n_heads"),
        ({"steps": 0}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"lr": "fast"}, "lr"),
        ({"init_range": -0.1}, "init_range"),
        ({"seed": -1}, "seed"),
        ({"trained": "yes"}, "trained"),
        ({"families": ["larger_than", "astrology"]}, "families"),
        ({"families": "parity"}, "families"),
        ({"width": 64}, "width"),
    ],
)
def test_spec_validation_names_the_field(entry, field):
    with pytest.raises(ConfigError, match=field):
        ZooSpec.from_dict({"arch": "llama", "tokenizer": "word", **entry})


def test_spec_requires_arch_and_tokenizer():
    with pytest.raises(ConfigError, match="tokenizer"):
        ZooSpec.from_dict({"arch": "llama"})


# ---------------------------------------------------------------------------------------------
# Fine-tuning another model of the run (`base`)


def test_fine_tuning_a_base_keeps_its_shape_and_tokenizer_and_lowers_the_loss(tmp_path):
    base_spec = tiny("llama", "bpe", steps=40, families=("parity",))
    base = fit_zoo_model(replace(base_spec, trained=False), log=quiet)
    save_zoo_model(base, base_spec, tmp_path / "base")
    spec = ZooSpec.from_dict(
        {"base": "tiny", "steps": 40, "lr": 3e-3, "batch_size": 32, "families": ["parity"]}
    )
    tuned = fit_zoo_model(spec, log=quiet, base_dir=tmp_path / "base")
    again = fit_zoo_model(spec, log=quiet, base_dir=tmp_path / "base")
    assert tuned.metrics["base"] == "tiny" and tuned.metrics["steps"] == 40
    assert tuned.tokenizer.get_vocab() == base.tokenizer.get_vocab()
    assert tuned.model.config.to_dict()["num_hidden_layers"] == base_spec.n_layers
    assert tuned.metrics["test_answer_loss"] < base.metrics["test_answer_loss"] - 0.5
    start = base.model.state_dict()
    assert any(not torch.equal(t, start[k]) for k, t in tuned.model.state_dict().items())
    for k, t in tuned.model.state_dict().items():  # deterministic, like training from scratch
        assert torch.equal(t, again.model.state_dict()[k]), k
    with pytest.raises(ConfigError, match="needs its folder"):
        fit_zoo_model(spec, log=quiet)


def test_fine_tune_spec_leaves_out_shape_keys():
    spec = ZooSpec.from_dict({"base": "m", "steps": 5})
    assert spec.arch is None and spec.to_dict()["base"] == "m"
    assert not {"arch", "tokenizer", "n_layers", "d_model", "n_heads"} & set(spec.to_dict())
    assert ZooSpec.from_dict(spec.to_dict()) == spec
    assert "base" not in tiny().to_dict()  # a tiny model's params are what they were
    with pytest.raises(ConfigError, match=r"\['arch', 'd_model'\] do not apply"):
        ZooSpec.from_dict({"base": "m", "arch": "llama", "d_model": 32})
    with pytest.raises(ConfigError, match="trained: false"):
        ZooSpec.from_dict({"base": "m", "trained": False})
