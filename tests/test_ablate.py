"""Directional ablation and token margins on tiny random-init Llama and GPT-2 models."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from _ablate_fixtures import (
    HIDDEN,
    INIT_STD,
    PROMPTS,
    answer_ids,
    tiny_gpt2,
    tiny_llama,
    tiny_tokenizer,
)
from _tiny import ARCHS

from crossprobe.ablate import (
    ablation_effects,
    ablation_effects_by_layer,
    directional_ablation,
    margin_from_logits,
    random_directions,
    token_margins,
    unit_directions,
)
from crossprobe.models import decoder_blocks, forward_hooks, last_token_index

MODELS = {"llama": tiny_llama, "gpt2": tiny_gpt2}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    return MODELS[request.param]()


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _encode(tok, prompts=PROMPTS):
    tok.padding_side = "right"
    enc = tok(list(prompts), return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


def _directions(k: int, seed: int = 0) -> np.ndarray:
    """Non-unit, non-orthogonal directions, so normalisation inside is exercised."""
    g = np.random.default_rng(seed).standard_normal((k, HIDDEN)).astype(np.float32)
    return g * np.arange(1, k + 1, dtype=np.float32)[:, None]


def _reference_hook(u: torch.Tensor):
    """Independent float64 ablation of copy k along unit u[k], for comparison."""

    def hook(module, args, out):
        x = out if isinstance(out, torch.Tensor) else out[0]
        k = u.shape[0]
        x64 = x.double().reshape(k, -1, *x.shape[1:])
        u64 = u.double()
        proj = (x64 * u64[:, None, None, :]).sum(-1, keepdim=True)
        new = (x64 - proj * u64[:, None, None, :]).reshape(x.shape).to(x.dtype)
        return new if isinstance(out, torch.Tensor) else (new, *out[1:])

    return hook


def _reference_margins(model, tok, prompts, answers, hooks=()):
    """Margins from the full logits, one unpadded prompt at a time."""
    out = []
    with torch.inference_mode(), forward_hooks(hooks):
        for p in prompts:
            ids = tok(p, return_tensors="pt")["input_ids"]
            logits = model(input_ids=ids).logits[0, -1].float()
            out.append(float(logits[answers[0]] - logits[answers[1]]))
    return np.asarray(out, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# The hook


@pytest.mark.parametrize("layer", [0, 1])
def test_block_output_has_no_component_along_each_direction(model, tok, layer):
    ids, mask = _encode(tok)
    d = _directions(3)
    u = unit_directions(d)
    captured = {}

    def capture(module, args, out):
        captured["x"] = out if isinstance(out, torch.Tensor) else out[0]

    blocks = decoder_blocks(model)
    with torch.inference_mode():
        # transformers installs its hidden-state recording hooks at the first such call, before
        # ours: the ablation must still come first, so hidden_states shows the ablated output.
        clean = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        with (
            directional_ablation(model, layer, d),
            forward_hooks([(blocks[layer], capture)]),
        ):
            out = model(
                input_ids=ids.repeat(3, 1),
                attention_mask=mask.repeat(3, 1),
                output_hidden_states=True,
            )
    x = captured["x"].reshape(3, len(PROMPTS), ids.shape[1], HIDDEN)
    proj = torch.einsum("kbtd,kd->kbt", x.float(), u)
    assert proj.abs().max() < 1e-5 * x.abs().max()
    # The ablated tensor is the one the rest of the model sees as hidden_states[layer + 1].
    if layer < len(blocks) - 1:
        assert torch.equal(out.hidden_states[layer + 1], captured["x"])
    # Without the hook each copy does have a component along its direction.
    h = clean.hidden_states[layer + 1]
    assert torch.einsum("btd,kd->kbt", h.float(), u).abs().max() > 1e-2


def test_unit_directions_normalise_and_keep_zero():
    d = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    u = unit_directions(d)
    assert torch.allclose(u[0], torch.tensor([0.6, 0.8]))
    assert torch.equal(u[1], torch.zeros(2))


def test_zero_direction_changes_nothing(model, tok):
    answers = answer_ids(tok)
    d = _directions(3)
    d[1] = 0.0
    eff = ablation_effects(model, tok, PROMPTS, answers, 1, d)
    assert np.all(eff[1] == 0.0)
    assert np.abs(eff[0]).max() > 1e-3 and np.abs(eff[2]).max() > 1e-3
    ids, mask = _encode(tok)
    with torch.inference_mode():
        clean = model(input_ids=ids, attention_mask=mask).logits
        with directional_ablation(model, 1, np.zeros((1, HIDDEN), dtype=np.float32)):
            ablated = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(clean, ablated)


def test_hooks_are_removed_on_exit_and_on_error(model, tok):
    ids, mask = _encode(tok)
    d = _directions(2)
    n_hooks = [len(b._forward_hooks) for b in decoder_blocks(model)]
    with torch.inference_mode():
        before = model(input_ids=ids, attention_mask=mask).logits
        with directional_ablation(model, 0, d, scope="from_layer"):
            during = model(input_ids=ids.repeat(2, 1), attention_mask=mask.repeat(2, 1)).logits
        after = model(input_ids=ids, attention_mask=mask).logits
        with pytest.raises(RuntimeError), directional_ablation(model, 0, d):
            raise RuntimeError("boom")
        after_error = model(input_ids=ids, attention_mask=mask).logits
    assert not torch.allclose(during[: len(ids)], before)
    assert torch.equal(before, after)
    assert torch.equal(before, after_error)
    assert [len(b._forward_hooks) for b in decoder_blocks(model)] == n_hooks


def test_hook_rejects_batch_that_is_not_k_copies(model, tok):
    ids, mask = _encode(tok, PROMPTS[:3])
    with (
        torch.inference_mode(),
        directional_ablation(model, 0, _directions(2)),
        pytest.raises(ValueError, match=r"\(3, "),
    ):
        model(input_ids=ids, attention_mask=mask)


def test_bad_arguments_raise_value_errors(model, tok):
    answers = answer_ids(tok)
    n_layers = len(decoder_blocks(model))
    with (
        pytest.raises(ValueError, match="out of range"),
        directional_ablation(model, n_layers, _directions(1)),
    ):
        pass
    with (
        pytest.raises(ValueError, match="scope"),
        directional_ablation(model, 0, _directions(1), scope="everywhere"),
    ):
        pass
    with pytest.raises(ValueError, match=r"\(3,\)"):
        unit_directions(np.ones(3))
    with pytest.raises(ValueError, match=r"width 32"):
        ablation_effects(model, tok, PROMPTS[:2], answers, 0, np.ones((2, 31)))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        ablation_effects(model, tok, PROMPTS[:2], answers, 0, _directions(1), clean=np.ones(5))
    with pytest.raises(ValueError, match="vocabulary"):
        token_margins(model, tok, PROMPTS[:2], (0, 10_000))


# ---------------------------------------------------------------------------------------------
# Margins


def test_margin_is_blind_to_a_constant_and_gathers_the_last_index():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, 11, generator=g)
    last = torch.tensor([4, 0, 2, 3])
    m = margin_from_logits(logits, last, (7, 2))
    expected = torch.stack([logits[i, last[i], 7] - logits[i, last[i], 2] for i in range(4)])
    assert m.dtype == torch.float32
    assert torch.allclose(m, expected)
    shifted = margin_from_logits(logits + 123.0, last, (7, 2))
    per_row = logits + torch.randn(4, 5, 1, generator=g) * 50.0
    assert torch.allclose(shifted, m, atol=1e-4)
    assert torch.allclose(margin_from_logits(per_row, last, (7, 2)), m, atol=1e-4)
    half = margin_from_logits(logits.to(torch.bfloat16), last, (7, 2))
    assert half.dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(4, 5, 11\)"):
        margin_from_logits(logits, last[:3], (7, 2))


def test_bfloat16_margins_are_computed_in_float32_at_the_head(tok):
    """A bf16 model's margins come from the final hidden state and the head's two answer rows
    in float32, not from bf16 logits (whose rounding here is larger than the tolerance)."""
    model = tiny_llama().to(torch.bfloat16)
    with torch.no_grad():  # logits of a realistic size, so that bf16 rounding shows
        model.lm_head.weight.mul_(40.0)
    answers = answer_ids(tok)
    w = model.lm_head.weight[list(answers)].float()
    want, rounded = [], []
    with torch.inference_mode():
        for p in PROMPTS:
            out = model(**tok(p, return_tensors="pt"), output_hidden_states=True)
            h = out.hidden_states[-1][0, -1].float()  # the final norm's output
            two = h @ w.T
            want.append(float(two[0] - two[1]))
            bf = out.logits[0, -1, list(answers)].float()
            rounded.append(float(bf[0] - bf[1]))
    want, rounded = np.asarray(want), np.asarray(rounded)
    # One prompt per batch, as in the reference: in bf16 a padded batch rounds the blocks'
    # arithmetic differently, which is not what this test is about.
    got = token_margins(model, tok, PROMPTS, answers, batch_size=1)
    tol = 1e-5 * np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    assert np.abs(rounded - want).max() > 20 * tol  # what margins from bf16 logits would be


def test_token_margins_match_unpadded_full_logits(model, tok):
    answers = answer_ids(tok)
    tok.padding_side = "left"  # another tool switched it: margins must not care
    try:
        got = token_margins(model, tok, PROMPTS, answers, batch_size=4)
        assert tok.padding_side == "left"
    finally:
        tok.padding_side = "right"
    np.testing.assert_allclose(got, _reference_margins(model, tok, PROMPTS, answers), atol=1e-5)
    assert got.dtype == np.float32 and got.shape == (len(PROMPTS),)


def test_last_index_follows_the_mask(tok):
    ids, mask = _encode(tok)
    lengths = torch.tensor([len(p.split()) for p in PROMPTS])
    assert torch.equal(last_token_index(mask), lengths - 1)


# ---------------------------------------------------------------------------------------------
# Effects


def test_batched_directions_equal_each_direction_alone(model, tok):
    answers = answer_ids(tok)
    d = _directions(5)
    together = ablation_effects(model, tok, PROMPTS, answers, 1, d)
    alone = np.stack(
        [ablation_effects(model, tok, PROMPTS, answers, 1, d[i : i + 1])[0] for i in range(5)]
    )
    assert together.shape == (5, len(PROMPTS)) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_effects_match_a_reference_ablation(model, tok):
    answers = answer_ids(tok)
    d = _directions(2)
    u = unit_directions(d)
    clean = _reference_margins(model, tok, PROMPTS, answers)
    eff = ablation_effects(model, tok, PROMPTS, answers, 0, d)
    for k in range(2):
        block = decoder_blocks(model)[0]
        ref = _reference_margins(
            model, tok, PROMPTS, answers, [(block, _reference_hook(u[k : k + 1]))]
        )
        np.testing.assert_allclose(eff[k], ref - clean, atol=1e-5)


def test_from_layer_scope_equals_ablating_every_later_block(model, tok):
    answers = answer_ids(tok)
    d = _directions(2)
    u = unit_directions(d)
    blocks = decoder_blocks(model)
    clean = token_margins(model, tok, PROMPTS, answers)
    one = ablation_effects(model, tok, PROMPTS, answers, 0, d, scope="layer", clean=clean)
    many = ablation_effects(model, tok, PROMPTS, answers, 0, d, scope="from_layer", clean=clean)
    assert np.abs(one - many).max() > 1e-3
    for k in range(2):
        hooks = [(b, _reference_hook(u[k : k + 1])) for b in blocks]
        ref = _reference_margins(model, tok, PROMPTS, answers, hooks)
        np.testing.assert_allclose(many[k], ref - clean, atol=1e-5)


def test_effects_do_not_depend_on_batch_size(model, tok):
    answers = answer_ids(tok)
    d = _directions(10)
    # batch_size 2 allows 16 rows a pass: the 10 directions go in two groups of 8 and 2.
    small = ablation_effects(model, tok, PROMPTS, answers, 1, d, batch_size=2)
    large = ablation_effects(model, tok, PROMPTS, answers, 1, d, batch_size=32)
    np.testing.assert_allclose(small, large, atol=1e-5)
    m1 = token_margins(model, tok, PROMPTS, answers, batch_size=1)
    m3 = token_margins(model, tok, PROMPTS, answers, batch_size=3)
    np.testing.assert_allclose(m1, m3, atol=1e-5)


def test_random_directions_are_unit_and_deterministic():
    a = random_directions(HIDDEN, 7, seed=3)
    assert a.shape == (7, HIDDEN) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(a, random_directions(HIDDEN, 7, seed=3))
    assert not np.allclose(a, random_directions(HIDDEN, 7, seed=4))
    assert random_directions(HIDDEN, 0, seed=3).shape == (0, HIDDEN)


# ---------------------------------------------------------------------------------------------
# Fan-out: blocks below the ablated layer run once per prompt batch


@pytest.fixture(scope="module", params=ARCHS)
def arch_model(request):
    import transformers as T
    from _tiny import tiny_model

    # Sliding windows shorter than the longest prompt, so Gemma's per-layer masks differ.
    extra = {"sliding_window": 4} if request.param.startswith("Gemma") else {}
    return tiny_model(getattr(T, request.param), initializer_range=INIT_STD, **extra)


@pytest.fixture(scope="module")
def word_tok():
    from _tiny import tiny_tokenizer as tiny_word_tokenizer

    return tiny_word_tokenizer()


FANOUT_PROMPTS = [
    "the cat is big",
    "sky",
    "the dog is not a small red fish in the sea of london",
    "paris is the capital of france",
    "water is wet",
    "snow is white and the night is dark",
    "fire",
]


@pytest.mark.parametrize("scope", ["layer", "from_layer"])
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_fanout_equals_full_forward_passes(arch_model, word_tok, scope, layer, caplog):
    answers = (word_tok.convert_tokens_to_ids("True"), word_tok.convert_tokens_to_ids("False"))
    d = np.random.default_rng(layer).standard_normal((5, 32)).astype(np.float32)
    d[2] = 0.0
    kw = {"scope": scope, "batch_size": 3}
    with caplog.at_level("WARNING", logger="crossprobe.ablate"):
        fast = ablation_effects(arch_model, word_tok, FANOUT_PROMPTS, answers, layer, d, **kw)
    assert not caplog.records, caplog.text  # no fall-back: the replay was verified
    slow = ablation_effects(
        arch_model, word_tok, FANOUT_PROMPTS, answers, layer, d, fanout=False, **kw
    )
    assert fast.shape == (5, len(FANOUT_PROMPTS)) and fast.dtype == np.float32
    # Exactly 0 on an AMD EPYC; on an Intel Xeon the BLAS rounds rows of one batch differently.
    assert np.abs(fast[2]).max() <= 1e-5
    assert np.abs(slow).max() > 1e-3  # effects far above float rounding
    np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_fanout_single_prompt_and_given_clean(model, tok):
    answers = answer_ids(tok)
    d = _directions(3)
    for prompts in (PROMPTS[:1], PROMPTS):
        clean = token_margins(model, tok, prompts, answers, batch_size=4)
        fast = ablation_effects(model, tok, prompts, answers, 1, d, batch_size=4, clean=clean)
        slow = ablation_effects(model, tok, prompts, answers, 1, d, batch_size=4, fanout=False)
        np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_fanout_skips_blocks_below_the_layer(tok):
    model = tiny_llama(n_layers=4)
    answers = answer_ids(tok)
    d = _directions(4)
    with _block_calls(model) as calls:
        ablation_effects(model, tok, PROMPTS, answers, 2, d, batch_size=len(PROMPTS))
    # One clean pass through every block, one verification replay and one fan-out replay of
    # the blocks above layer 2; the blocks up to layer 2 run once.
    assert calls == [1, 1, 1, 3]


def test_fanout_falls_back_when_replay_is_wrong(model, tok, monkeypatch, caplog):
    import crossprobe.ablate as ab

    answers = answer_ids(tok)
    d = _directions(3)
    slow = ablation_effects(model, tok, PROMPTS, answers, 0, d, fanout=False)
    # A norm that is not the model's: the verification must catch it.
    monkeypatch.setattr(ab, "final_norm", lambda m: torch.nn.Identity())
    with caplog.at_level("WARNING", logger="crossprobe.ablate"):
        got = ablation_effects(model, tok, PROMPTS, answers, 0, d)
    assert "fan-out" in caplog.text
    np.testing.assert_allclose(got, slow, atol=1e-5)


def test_final_norm_is_found():
    import transformers as T
    from _tiny import tiny_model

    from crossprobe.ablate import final_norm

    expected = {
        "LlamaConfig": lambda m: m.model.norm,
        "GPT2Config": lambda m: m.transformer.ln_f,
        "GPTNeoXConfig": lambda m: m.gpt_neox.final_layer_norm,
        "Gemma3TextConfig": lambda m: m.model.norm,
    }
    for arch, where in expected.items():
        m = tiny_model(getattr(T, arch))
        assert final_norm(m) is where(m)


@pytest.mark.parametrize("fanout", [True, False])
def test_oom_halves_the_batch_and_gives_the_same_effects(tok, monkeypatch, caplog, fanout):
    import crossprobe.ablate as ab

    model, answers, d = tiny_llama(), answer_ids(tok), _directions(5)
    prompts = PROMPTS * 2
    expected = ablation_effects(model, tok, prompts, answers, 1, d, batch_size=2, fanout=fanout)
    real = ab._last_logits if not fanout else ab._replay
    rows = []

    def flaky(*args, **kwargs):
        n = args[3].shape[0] * args[4].shape[0] if fanout else args[1].shape[0]
        rows.append(n)
        if n > 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(ab, "_last_logits" if not fanout else "_replay", flaky)
    with caplog.at_level("WARNING", logger="crossprobe.ablate"):
        got = ablation_effects(model, tok, prompts, answers, 1, d, batch_size=8, fanout=fanout)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert "retrying with batch size 4" in caplog.text and "batch size 2" in caplog.text
    assert max(rows) > 16
    if not fanout:  # (a replay that fails otherwise falls back to full passes instead)
        monkeypatch.setattr(
            ab, "_last_logits", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("assert"))
        )
        with pytest.raises(RuntimeError, match="assert"):  # other errors are not retried
            ablation_effects(model, tok, prompts, answers, 1, d, batch_size=8, fanout=False)


@pytest.mark.gpu
@pytest.mark.parametrize("scope", ["layer", "from_layer"])
def test_fanout_equals_full_forward_passes_on_cuda(tok, scope, caplog):
    answers = answer_ids(tok)
    d = _directions(6)
    cpu = ablation_effects(tiny_llama(), tok, PROMPTS, answers, 1, d, scope=scope)
    model = tiny_llama().to("cuda")
    with caplog.at_level("WARNING", logger="crossprobe.ablate"):
        fast = ablation_effects(model, tok, PROMPTS, answers, 1, d, scope=scope, batch_size=4)
    assert not caplog.records, caplog.text
    slow = ablation_effects(
        model, tok, PROMPTS, answers, 1, d, scope=scope, batch_size=4, fanout=False
    )
    np.testing.assert_allclose(fast, slow, atol=1e-4)
    np.testing.assert_allclose(fast, cpu, atol=1e-4)
    # bfloat16: the replay still verifies, and agrees with the slow path within bf16 rounding.
    model = model.to(torch.bfloat16)
    with caplog.at_level("WARNING", logger="crossprobe.ablate"):
        fast = ablation_effects(model, tok, PROMPTS, answers, 1, d, scope=scope, batch_size=4)
    assert not caplog.records, caplog.text
    slow = ablation_effects(
        model, tok, PROMPTS, answers, 1, d, scope=scope, batch_size=4, fanout=False
    )
    np.testing.assert_allclose(fast, slow, atol=0.05 * float(np.abs(slow).max()) + 1e-2)


def test_several_layers_at_once_equal_one_layer_at_a_time(tok):
    """One clean pass per batch serves every layer: the same effects as separate calls, the
    clean margins of token_margins, and the blocks below the shallowest layer run once."""
    from crossprobe.ablate import ablation_effects_by_layer

    model, answers = tiny_llama(n_layers=4), answer_ids(tok)
    dirs = {0: _directions(3), 2: _directions(2), 3: _directions(4)}
    res = ablation_effects_by_layer(model, tok, PROMPTS, answers, dirs, batch_size=len(PROMPTS))
    for layer, d in dirs.items():
        alone = ablation_effects(model, tok, PROMPTS, answers, layer, d)
        np.testing.assert_allclose(res.effects[layer], alone, atol=1e-5)
    np.testing.assert_allclose(res.clean, token_margins(model, tok, PROMPTS, answers), atol=1e-5)
    with _block_calls(model) as calls:
        ablation_effects_by_layer(model, tok, PROMPTS, answers, dirs, batch_size=len(PROMPTS))
    # Block 0 runs once (the clean pass); each later block once more per verification and
    # fan-out replay of every layer below it (layers 0 and 2 reach block 3; layer 3 none).
    assert calls == [1, 3, 3, 5]


@contextlib.contextmanager
def _block_calls(model):
    """How many times each decoder block runs inside the ``with`` block."""
    blocks = decoder_blocks(model)
    calls = [0] * len(blocks)

    def counter(i):
        def hook(_m, _a, _o):
            calls[i] += 1

        return hook

    with forward_hooks((b, counter(i)) for i, b in enumerate(blocks)):
        yield calls


# ---------------------------------------------------------------------------------------------
# Positions left out of the ablation (attention sinks)

SINK_PROMPTS = (
    "the cat is blue",
    "the sky [BOS] is not very green and the sea is red",
    "a dog",
    "the old stone [EOS]",  # the read position is a special token: it is still ablated
)


def _keep(tok, prompts):
    from crossprobe.models import content_positions, special_token_ids

    ids, mask = _encode(tok, prompts)
    return ids, mask, content_positions(ids, mask, special_token_ids(tok), "skip_first")


def test_content_positions_leave_out_the_first_token_and_special_tokens(tok):
    ids, mask, keep = _keep(tok, SINK_PROMPTS)
    special = set(tok.all_special_ids)
    last = last_token_index(mask)
    for b in range(len(SINK_PROMPTS)):
        for t in range(ids.shape[1]):
            want = bool(mask[b, t]) and t > 0 and int(ids[b, t]) not in special
            want = want or t == int(last[b])
            assert bool(keep[b, t]) == want, (b, t)
    assert not keep[:, 0].any()


def test_skip_first_leaves_left_out_positions_untouched(model, tok):
    ids, mask, keep = _keep(tok, SINK_PROMPTS)
    d = _directions(2)
    u = unit_directions(d)
    captured = {}

    def capture(module, args, out):
        captured["x"] = out if isinstance(out, torch.Tensor) else out[0]

    block = decoder_blocks(model)[0]
    with torch.inference_mode():
        with forward_hooks([(block, capture)]):
            model(input_ids=ids, attention_mask=mask)
        clean = captured["x"].clone()
        with (
            directional_ablation(model, 0, d, keep=keep),
            forward_hooks([(block, capture)]),
        ):
            model(input_ids=ids.repeat(2, 1), attention_mask=mask.repeat(2, 1))
    x = captured["x"].reshape(2, len(SINK_PROMPTS), ids.shape[1], HIDDEN)
    left_out = (~keep) & mask.bool()
    for k in range(2):
        assert torch.equal(x[k][left_out], clean[left_out])  # untouched, bit for bit
        proj = torch.einsum("btd,d->bt", x[k].float(), u[k])
        assert proj[keep].abs().max() < 1e-5 * x.abs().max()
        assert torch.einsum("btd,d->bt", clean.float(), u[k])[left_out].abs().min() > 0


@pytest.mark.parametrize("fanout", [True, False])
def test_skip_first_effects_match_a_reference(model, tok, fanout):
    """Each prompt alone, ablated at its own content positions by an independent hook."""
    from crossprobe.models import content_positions, special_token_ids

    answers = answer_ids(tok)
    d = _directions(2)
    u = unit_directions(d)
    got = ablation_effects(
        model, tok, SINK_PROMPTS, answers, 0, d, positions="skip_first", fanout=fanout
    )
    block = decoder_blocks(model)[0]
    for i, p in enumerate(SINK_PROMPTS):
        ids = tok(p, return_tensors="pt")["input_ids"]
        keep = content_positions(ids, torch.ones_like(ids), special_token_ids(tok), "skip_first")

        def hook(module, args, out, k=0, keep=keep):
            x = out if isinstance(out, torch.Tensor) else out[0]
            x64 = x.double()
            proj = (x64 @ u[k].double()) * keep[0].double()
            new = (x64 - proj[..., None] * u[k].double()).to(x.dtype)
            return new if isinstance(out, torch.Tensor) else (new, *out[1:])

        for k in range(2):
            with torch.inference_mode():
                clean = model(input_ids=ids).logits[0, -1].float()
                with forward_hooks([(block, lambda m, a, o, k=k: hook(m, a, o, k))]):
                    abl = model(input_ids=ids).logits[0, -1].float()
            want = float(abl[answers[0]] - abl[answers[1]]) - float(
                clean[answers[0]] - clean[answers[1]]
            )
            assert got[k, i] == pytest.approx(want, abs=1e-5)
    # `all` ablates every position: it differs from skip_first, and is the default.
    every = ablation_effects(model, tok, SINK_PROMPTS, answers, 0, d, positions="all")
    default = ablation_effects(model, tok, SINK_PROMPTS, answers, 0, d)
    np.testing.assert_array_equal(every, default)
    assert np.abs(every - got).max() > 1e-4


@pytest.mark.parametrize("fanout", [True, False])
def test_zero_direction_is_exactly_zero_in_bfloat16(tok, fanout):
    """The reference copy sits in the same pass as the ablated copies: in bfloat16 (whose matrix
    products depend on the batch on a GPU) a zero direction's Δm is still exactly 0."""
    model = tiny_llama().to(torch.bfloat16)
    answers = answer_ids(tok)
    d = np.concatenate([_directions(3), np.zeros((1, HIDDEN), np.float32)])
    res = ablation_effects_by_layer(
        model, tok, PROMPTS, answers, {0: d, 1: d}, fanout=fanout, batch_size=4
    )
    for layer in (0, 1):
        fx = res.effects[layer]
        assert np.all(fx[3] == 0.0)  # the noise floor, measured: exactly 0
        assert np.abs(fx[:3]).min(axis=1).max() > 0  # real directions move the margin


def test_the_unknown_token_is_content_not_a_sink(tok):
    from crossprobe.models import content_positions, special_token_ids

    assert tok.unk_token_id not in special_token_ids(tok)
    assert tok.bos_token_id in special_token_ids(tok)
    ids, mask = _encode(tok, ["the zebra is blue"])  # "zebra" is not in the vocabulary
    assert tok.unk_token_id in ids[0].tolist()
    keep = content_positions(ids, mask, special_token_ids(tok), "skip_first")
    assert keep[0, 1:].all() and not keep[0, 0]
