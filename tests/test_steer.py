"""Steering: known slopes, the zero dose, and hooks that leave the model as it was."""

import numpy as np
import pytest
import torch
from _ablate_fixtures import answer_ids, tiny_llama, tiny_tokenizer

from crossprobe.ablate import ablation_effects_by_layer
from crossprobe.steer import (
    dose_response,
    prompt_slopes,
    steering_effects,
    steering_vectors,
    typical_norm,
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
        assert np.all(dm[k, ALPHAS.index(0.0)] == 0.0)  # the zero dose changes nothing, exactly


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
    assert typical_norm(np.array([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]])) == pytest.approx(5.0)
    v = steering_vectors(np.array([[2.0, 0.0]]), [-1.0, 0.0, 1.0], 4.0)
    np.testing.assert_allclose(v, [[-4.0, 0.0], [0.0, 0.0], [4.0, 0.0]])
