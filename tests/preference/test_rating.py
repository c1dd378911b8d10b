"""Self-rated targets: the expected rating from a model's own logits, and its digit tokens."""

import numpy as np
import pytest
import torch
from _ablate_fixtures import PROMPTS, tiny_llama, tiny_tokenizer

from crossprobe.ablate import ablation_effects_by_layer
from crossprobe.errors import ConfigError
from crossprobe.preference.rating import RatingSpec, expected_rating_readout, rate

# Five tokens of the tiny vocabulary stand in for the digits 1..5.
DIGITS = ("cat", "dog", "sky", "sea", "blue")


def _digit_ids(tok):
    return [tok.convert_tokens_to_ids(t) for t in DIGITS]


def test_expected_rating_equals_a_full_softmax_renormalised_over_the_digits():
    model, tok = tiny_llama(seed=3), tiny_tokenizer()
    ids, values = _digit_ids(tok), [1, 2, 3, 4, 5]
    got = rate(model, tok, list(PROMPTS), ids, values, batch_size=3)
    # Reference: each prompt alone (no padding), the whole vocabulary's softmax at its end.
    for i, prompt in enumerate(PROMPTS):
        enc = tok(prompt, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**enc).logits[0, -1].double()
        p = torch.softmax(logits, -1)[ids]
        np.testing.assert_allclose(got.digit_mass[i], float(p.sum()), rtol=1e-4)
        want = float((p / p.sum()) @ torch.tensor(values, dtype=torch.float64))
        np.testing.assert_allclose(got.expected[i], want, rtol=1e-5)
    assert np.all((got.expected >= 1) & (got.expected <= 5))
    assert np.all((got.digit_mass > 0) & (got.digit_mass < 1))


def test_readout_is_the_expected_value_of_the_digit_softmax():
    read = expected_rating_readout([1, 2, 3])
    logits = torch.tensor([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, np.log(3.0), 0.0]])
    np.testing.assert_allclose(read(logits).numpy(), [2.0, 1.0, 2.0], rtol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        read(torch.zeros(1, 4))


def test_a_steered_rating_with_zero_dose_is_exactly_the_clean_rating():
    model, tok = tiny_llama(seed=4), tiny_tokenizer()
    ids, values = _digit_ids(tok), [1, 2, 3, 4, 5]
    v = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float32)
    v[0] = 0.0
    res = ablation_effects_by_layer(
        model, tok, list(PROMPTS), ids, {1: v}, edit="add",
        readout=expected_rating_readout(values), batch_size=4,
    )  # fmt: skip
    clean = rate(model, tok, list(PROMPTS), ids, values, batch_size=4).expected
    np.testing.assert_allclose(res.clean, clean, rtol=1e-5)
    assert np.all(res.effects[1][0] == 0.0)
    assert np.abs(res.effects[1][1:]).max() > 1e-4


def test_more_than_two_answer_tokens_need_a_readout():
    model, tok = tiny_llama(), tiny_tokenizer()
    with pytest.raises(ValueError, match="pair"):
        ablation_effects_by_layer(model, tok, ["the cat"], _digit_ids(tok), {1: np.ones((1, 32))})


@pytest.mark.parametrize(
    ("vocab", "fmt", "template", "tokens"),
    [
        # " 7" is one token (Llama 3, GPT-2): read it after the prompt as it is.
        ({f" {d}" for d in range(10)} | {str(d) for d in range(10)}, "raw", "Q: {statement} A:",
         tuple(f" {d}" for d in range(1, 10))),
        # Digits split from their space (SmolLM2, Gemma 3): the prompt ends with the space.
        ({str(d) for d in range(10)}, "raw", "Q: {statement} A: ", tuple(map(str, range(1, 10)))),
        # After a chat template's generation prompt: bare digits, the template as it is.
        ({f" {d}" for d in range(10)} | {str(d) for d in range(10)}, "chat", "Q: {statement} A:",
         tuple(map(str, range(1, 10)))),
    ],
)  # fmt: skip
def test_rating_tokens_follow_the_tokenizer(vocab, fmt, template, tokens):
    spec = RatingSpec(template="Q: {statement} A:")
    assert spec.for_model(fmt, lambda s: s in vocab) == (template, tokens)


def test_rating_spec_errors_name_the_problem():
    with pytest.raises(ConfigError, match="statement"):
        RatingSpec(template="no placeholder")
    with pytest.raises(ConfigError, match="single digits"):
        RatingSpec(low=1, high=10)
    with pytest.raises(ConfigError, match="not single tokens"):
        RatingSpec().for_model("raw", lambda s: False)
